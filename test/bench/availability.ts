// A legitimate client's latency while another client attacks the admission port
// (issue 25 item 5; DESIGN "availability"). The webhook runs as `apparate serve`
// builds it (test/bench/admission-server.ts) in its own process, with the default
// config (admission.deadlineMs 2000, maxConnections and the per-address limits);
// the victim is the open-loop load client (test/bench/load-client.ts, its own
// process, from 127.0.0.1, kept-alive connections opened during the attack) at a
// fixed rate; the attackers run in this process from other loopback addresses:
//   - 1,000 idle TLS connections held from 127.0.0.2;
//   - 1,000 kept-alive connections from 127.0.0.2, one review each, then idle;
//   - 4 clients (127.0.0.3-6) posting 2 MiB pods back to back.
// Each attack against the same victim load with no attack, in the same run.
import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { createCA, issueServing } from "../../src/tls/certificates.js";
import { webPod } from "../support/pods.js";
import { review } from "../support/webhook.js";
import type { ServerArgs } from "./admission-server.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));

export interface VictimRound { attack: string; requests: number; errors: number; p50: number; p99: number; max: number; attackerRequests?: number; attackerConnectionsOpen?: number }
export interface Availability { rate: number; seconds: number; deadlineMs: number; rounds: VictimRound[] }

export const AVAILABILITY_METHOD = "Availability: the webhook (default config: admission.deadlineMs 2000, per-address connection and in-flight limits) in its own process; the victim is the load client in its own process from 127.0.0.1, open loop at a fixed rate over kept-alive connections opened while the attack runs, after a 1 s warm-up; the attackers run in the bench process from 127.0.0.2 (1,000 idle TLS connections; or 1,000 kept-alive connections, one review each) or 127.0.0.3-6 (4 clients posting a 48,000-container, ~2.2 MiB pod back to back). Each attack is compared with the same victim load without attack in the same run.";

function startWebhook(args: ServerArgs): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const child = fork(join(HERE, "admission-server.ts"), [JSON.stringify(args)], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`webhook exited (${code})`)));
    child.on("message", (m: { port?: number }) => {
      if (!m.port) return;
      resolve({
        url: `https://127.0.0.1:${m.port}/mutate`, child,
        stop: async () => { const done = new Promise((r) => child.once("exit", r)); child.send({ cmd: "stop" }); await done; },
      });
    });
  });
}

async function victim(url: string, caFile: string, bodyFile: string, rate: number, seconds: number): Promise<Omit<VictimRound, "attack">> {
  const c = fork(join(HERE, "load-client.ts"), [JSON.stringify({ url, ca: caFile, body: bodyFile, mode: "rate", seconds, concurrency: 16, rate, warmupSeconds: 1 })], {
    execArgv: ["--import", "tsx"], stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  let out = "";
  c.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
  const code = await new Promise<number | null>((r) => c.once("exit", r));
  if (code !== 0) throw new Error(`victim load client exited ${code}`);
  const r = JSON.parse(out) as { requests: number; errors: number; p50: number; p99: number; max: number };
  return { requests: r.requests, errors: r.errors, p50: r.p50, p99: r.p99, max: r.max };
}

interface Attack { name: string; start(url: string, ca: string): Promise<{ stop(): Promise<{ attackerRequests?: number; attackerConnectionsOpen?: number }> }> }

const port = (url: string) => Number(new URL(url).port);

const ATTACKS: Attack[] = [
  { name: "none", start: async () => ({ stop: async () => ({}) }) },
  {
    name: "1,000 idle TLS connections held from one address",
    start: async (url, ca) => {
      const held: TLSSocket[] = [];
      const open = () => new Promise<void>((resolve) => {
        const s = tlsConnect({ socket: netConnect({ host: "127.0.0.1", port: port(url), localAddress: "127.0.0.2" }), ca, servername: "localhost" });
        held.push(s);
        s.once("secureConnect", () => resolve());
        s.once("error", () => resolve());
        s.once("close", () => resolve());
      });
      for (let i = 0; i < 1000; i += 50) await Promise.all(Array.from({ length: 50 }, open));
      return { stop: async () => { const openNow = held.filter((s) => !s.destroyed && s.readyState === "open").length; for (const s of held) s.destroy(); return { attackerConnectionsOpen: openNow }; } };
    },
  },
  {
    name: "1,000 kept-alive connections from one address",
    start: async (url, ca) => {
      const attacker = new Agent({ localAddress: "127.0.0.2", connect: { ca }, connections: 1000, keepAliveTimeout: 120_000 });
      const body = JSON.stringify(review(webPod({ containers: [{ name: "app", image: "busybox:1.36" }], initContainers: [] })));
      let ok = 0;
      await Promise.all(Array.from({ length: 1000 }, () => request(url, { method: "POST", dispatcher: attacker, headers: { "content-type": "application/json" }, body })
        .then(async (r) => { await r.body.dump(); ok++; }, () => undefined)));
      return { stop: async () => { await attacker.destroy(); return { attackerRequests: ok }; } };
    },
  },
  {
    name: "4 clients posting 2 MiB pods back to back",
    start: async (url, ca) => {
      const containers = Array.from({ length: 48_000 }, (_, i) => ({ name: `c${i}`, image: `busybox:1.${i}` }));
      const big = JSON.stringify(review(webPod({ containers, initContainers: [] })));
      let flooding = true;
      let posted = 0;
      const flood = async (address: string) => {
        const d = new Agent({ localAddress: address, connect: { ca } });
        while (flooding) {
          try {
            const res = await request(url, { method: "POST", dispatcher: d, headers: { "content-type": "application/json" }, body: big });
            await res.body.dump();
            posted++;
          } catch { /* keep flooding */ }
        }
        await d.destroy();
      };
      const floods = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"].map(flood);
      await new Promise((r) => setTimeout(r, 500));
      return { stop: async () => { flooding = false; await Promise.all(floods); return { attackerRequests: posted }; } };
    },
  },
];

export async function availabilityBench(opts: { rate?: number; seconds?: number } = {}): Promise<Availability> {
  const rate = opts.rate ?? 100;
  const seconds = opts.seconds ?? 5;
  const dir = mkdtempSync(join(tmpdir(), "apparate-availability-"));
  const ca = createCA("bench CA", 1);
  const tls = issueServing(ca, ["localhost"], 1, Date.now(), ["127.0.0.1"]);
  const caFile = join(dir, "ca.pem");
  writeFileSync(caFile, ca.cert);
  const bodyFile = join(dir, "review.json");
  writeFileSync(bodyFile, JSON.stringify(review(webPod({ containers: [{ name: "app", image: "busybox:1.36" }], initContainers: [] }))));
  const config = { acceleration: { registries: [] } };
  const rounds: VictimRound[] = [];
  for (const attack of ATTACKS) {
    // A fresh webhook per attack: no connection of an earlier attack lingers.
    const hook = await startWebhook({ kind: "webhook", tls, config });
    try {
      const a = await attack.start(hook.url, ca.cert);
      let v: Omit<VictimRound, "attack"> | undefined;
      let extra: Awaited<ReturnType<typeof a.stop>> = {};
      try {
        v = await victim(hook.url, caFile, bodyFile, rate, seconds);
      } finally {
        extra = await a.stop();
      }
      rounds.push({ attack: attack.name, ...v, ...extra });
      console.log(`victim at ${rate}/s while ${attack.name}: p50 ${v.p50.toFixed(2)} ms, p99 ${v.p99.toFixed(2)} ms, max ${v.max.toFixed(1)} ms, ${v.errors} errors of ${v.requests + v.errors}`);
    } finally {
      await hook.stop();
    }
  }
  return { rate, seconds, deadlineMs: 2000, rounds };
}
