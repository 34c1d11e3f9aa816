// Fairness on the admission port (issue 25 item 1): a hostile in-cluster client cannot
// starve the API server. Distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) are
// distinct clients; the legitimate client is 127.0.0.1. Bounded in count and time.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { Agent, request } from "undici";
import { review, startWebhook, type TestWebhook } from "../support/webhook.js";
import { webPod } from "../support/pods.js";

const DEADLINE = 1000;

/** A legitimate client: `n` reviews, each on a new connection (as an API server opening its pool). */
async function legitimate(hook: TestWebhook, n: number, gapMs = 50): Promise<{ ms: number[]; errors: string[] }> {
  const ms: number[] = [];
  const errors: string[] = [];
  const body = JSON.stringify(review(webPod({ containers: [{ name: "app", image: "busybox:1.36" }], initContainers: [] })));
  for (let i = 0; i < n; i++) {
    const dispatcher = new Agent({ localAddress: "127.0.0.1", connect: { ca: hook.ca } });
    const t0 = performance.now();
    try {
      const res = await request(`${hook.url}/mutate`, { method: "POST", dispatcher, headers: { "content-type": "application/json" }, body, headersTimeout: 10_000 });
      const json = await res.body.json() as any;
      if (res.statusCode !== 200 || json.response.allowed !== true) errors.push(`status ${res.statusCode}`);
      ms.push(performance.now() - t0);
    } catch (err) {
      errors.push((err as { code?: string }).code ?? String(err));
    } finally {
      await dispatcher.destroy();
    }
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return { ms, errors };
}

describe("a legitimate client stays under the deadline while another client attacks", () => {
  let hook: TestWebhook;
  beforeEach(async () => {
    hook = await startWebhook({ acceleration: { registries: [] }, admission: { deadlineMs: DEADLINE } });
    const addr = hook.app.server.address();
    expect(typeof addr === "object" && addr && addr.address).toBe("127.0.0.1");
  });
  afterEach(async () => { hook.app.server.closeAllConnections(); await hook?.stop(); });
  const port = () => Number(new URL(hook.url).port);

  it("1,000 idle TLS connections held from 127.0.0.2: every review from 127.0.0.1 is answered, within the deadline", async () => {
    const held: TLSSocket[] = [];
    const open = () => new Promise<void>((resolve) => {
      const s = tlsConnect({ socket: netConnect({ host: "127.0.0.1", port: port(), localAddress: "127.0.0.2" }), ca: hook.ca, servername: "localhost" });
      held.push(s);
      s.once("secureConnect", () => resolve());
      s.once("error", () => resolve());
      s.once("close", () => resolve());
    });
    try {
      for (let i = 0; i < 1000; i += 50) await Promise.all(Array.from({ length: 50 }, open));
      const r = await legitimate(hook, 20);
      expect(r.errors).toEqual([]);
      expect(Math.max(...r.ms)).toBeLessThan(DEADLINE);
    } finally {
      for (const s of held) s.destroy();
    }
  }, 60_000);

  it("1,000 kept-alive connections from 127.0.0.2 (one review each, then idle): every review from 127.0.0.1 is answered, within the deadline", async () => {
    const attacker = new Agent({ localAddress: "127.0.0.2", connect: { ca: hook.ca }, connections: 1000, keepAliveTimeout: 120_000 });
    const body = JSON.stringify(review(webPod({ containers: [{ name: "app", image: "busybox:1.36" }], initContainers: [] })));
    try {
      await Promise.all(Array.from({ length: 1000 }, () => request(`${hook.url}/mutate`, { method: "POST", dispatcher: attacker, headers: { "content-type": "application/json" }, body })
        .then((r) => r.body.dump(), () => undefined)));
      const r = await legitimate(hook, 20);
      expect(r.errors).toEqual([]);
      expect(Math.max(...r.ms)).toBeLessThan(DEADLINE);
    } finally {
      await attacker.destroy();
    }
  }, 60_000);

  it("4 clients (127.0.0.3-6) posting 2 MiB pods back to back: every review from 127.0.0.1 within the deadline", async () => {
    const containers = Array.from({ length: 48_000 }, (_, i) => ({ name: `c${i}`, image: `busybox:1.${i}` }));
    const big = JSON.stringify(review(webPod({ containers, initContainers: [] })));
    expect(big.length).toBeGreaterThan(2 * 1024 * 1024 - 200_000);
    expect(big.length).toBeLessThan(3 * 1024 * 1024);
    let flooding = true;
    let posted = 0;
    const flood = async (address: string) => {
      const d = new Agent({ localAddress: address, connect: { ca: hook.ca } });
      while (flooding) {
        try {
          const res = await request(`${hook.url}/mutate`, { method: "POST", dispatcher: d, headers: { "content-type": "application/json" }, body: big });
          await res.body.dump();
          posted++;
        } catch { /* keep flooding */ }
      }
      await d.destroy();
    };
    const floods = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"].map(flood);
    try {
      await new Promise((r) => setTimeout(r, 500));
      const r = await legitimate(hook, 30, 100);
      expect(r.errors).toEqual([]);
      expect(Math.max(...r.ms)).toBeLessThan(DEADLINE);
      expect(posted).toBeGreaterThan(4);
    } finally {
      flooding = false;
      await Promise.all(floods);
    }
  }, 90_000);

  it("negative control: without an attacker, the same client's reviews are answered well within the deadline", async () => {
    const r = await legitimate(hook, 20);
    expect(r.errors).toEqual([]);
    expect(Math.max(...r.ms)).toBeLessThan(DEADLINE / 2);
  }, 30_000);
});

/** A TLS connection from `localAddress`: resolves the socket once the handshake is done, undefined when the server closed it first. */
function openTls(port: number, ca: string, localAddress: string): Promise<TLSSocket | undefined> {
  return new Promise((resolve) => {
    const s = tlsConnect({ socket: netConnect({ host: "127.0.0.1", port, localAddress }), ca, servername: "localhost" });
    s.once("secureConnect", () => resolve(s));
    s.once("error", () => { s.destroy(); resolve(undefined); });
    s.once("close", () => resolve(undefined));
  });
}

/** One review written on an open connection; the answer's status, allowed flag and time. */
function reviewOn(s: TLSSocket, body: string): Promise<{ status: number; allowed: boolean; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      s.off("data", onData);
      const json = JSON.parse(buf.subarray(end + 4, end + 4 + len).toString());
      resolve({ status: Number(head.split(" ")[1]), allowed: json?.response?.allowed === true, ms: performance.now() - t0 });
    };
    s.on("data", onData);
    s.once("error", reject);
    s.once("close", () => reject(new Error("closed before the answer")));
    s.write(`POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });
}

describe("admission.trustedSources: the API server's address is never refused while other clients hold their quota", () => {
  // 40 connections in all, 10 per address: 127.0.0.2-5 hold 10 each (every untrusted
  // connection there is); the API server (127.0.0.1) then opens 20 at once, twice its
  // own per-address quota, as a busy API server with 20 concurrent reviews does.
  const ATTACKERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
  let hook: TestWebhook | undefined;
  afterEach(async () => { hook?.app.server.closeAllConnections(); await hook?.stop(); hook = undefined; });

  it.each([
    ["listed in admission.trustedSources: all 20 connections open and every review is answered within the deadline", ["127.0.0.1/32"], 20],
    ["negative control, not listed: the same 20 connections are refused (the global limit is full)", [], 0],
  ])("%s", async (_name, trustedSources, answered) => {
    hook = await startWebhook({ acceleration: { registries: [] }, admission: { deadlineMs: DEADLINE, maxConnections: 40, maxConnectionsPerSource: 10, trustedSources } });
    const port = Number(new URL(hook.url).port);
    const ca = hook.ca;
    const held: TLSSocket[] = [];
    try {
      for (const a of ATTACKERS) {
        const got = await Promise.all(Array.from({ length: 12 }, () => openTls(port, ca, a)));
        const open = got.filter((s): s is TLSSocket => s !== undefined);
        held.push(...open);
        // Each attacker holds exactly its quota: the 11th and 12th were refused.
        expect(open.length).toBe(10);
      }
      const api = (await Promise.all(Array.from({ length: 20 }, () => openTls(port, ca, "127.0.0.1")))).filter((s): s is TLSSocket => s !== undefined);
      held.push(...api);
      expect(api.length).toBe(answered);
      const body = JSON.stringify(review(webPod({ containers: [{ name: "app", image: "busybox:1.36" }], initContainers: [] })));
      const answers = await Promise.all(api.map((s) => reviewOn(s, body)));
      expect(answers.filter((a) => a.status === 200 && a.allowed).length).toBe(answered);
      if (answered) expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(DEADLINE);
    } finally {
      for (const s of held) s.destroy();
    }
  }, 60_000);
});
