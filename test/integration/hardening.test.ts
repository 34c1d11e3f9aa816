// Hostile input and faults: any body gets a 200 or a 400 (never a 5xx), a flapping
// registry never causes a wrong swap and never blocks a pod, and SIGTERM lets the
// reviews in flight finish before the process exits.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { spawn } from "node:child_process";
import { connect as tlsConnect } from "node:tls";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Agent, request } from "undici";
import { compileConfig } from "../../src/config/config.js";
import { handleReview, type HandlerDeps } from "../../src/admission/handler.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack } from "../../src/registry/stack.js";
import { raceSignal } from "../../src/registry/resolver.js";
import { answer, forwardTo, hang, startFaultServer, type FaultServer } from "../support/faults.js";
import { freePort, waitFor } from "../support/ports.js";
import { pushImage, registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { decodePatch, review, startWebhook, type TestWebhook } from "../support/webhook.js";
import { webPod, REG } from "../support/pods.js";

const quiet = createLogger({ destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

// Bodies: raw strings, any JSON, and reviews whose fields have the wrong types or shapes.
const anyValue = fc.anything({ maxDepth: 3, withNullPrototype: false });
const reviewish = fc.record({
  apiVersion: fc.oneof(fc.constant("admission.k8s.io/v1"), anyValue),
  kind: fc.oneof(fc.constant("AdmissionReview"), anyValue),
  request: fc.oneof(anyValue, fc.record({
    uid: fc.oneof(fc.uuid(), anyValue),
    kind: fc.oneof(fc.constant({ group: "", version: "v1", kind: "Pod" }), anyValue),
    namespace: fc.oneof(fc.constant("default"), anyValue),
    operation: fc.oneof(fc.constantFrom("CREATE", "UPDATE", "DELETE"), anyValue),
    object: fc.oneof(anyValue, fc.record({
      metadata: fc.oneof(anyValue, fc.record({ annotations: fc.oneof(anyValue, fc.dictionary(fc.string(), fc.string())) })),
      spec: fc.oneof(anyValue, fc.record({
        containers: fc.oneof(anyValue, fc.array(fc.oneof(anyValue, fc.record({ name: fc.oneof(fc.string(), anyValue), image: fc.oneof(fc.string(), fc.constant(`${REG}/team/web:1.4.2`), anyValue) })))),
        nodeSelector: fc.oneof(anyValue, fc.dictionary(fc.string(), fc.string())),
        affinity: anyValue,
      }, { requiredKeys: [] })),
    }, { requiredKeys: [] })),
  }, { requiredKeys: [] })),
}, { requiredKeys: [] });
const body = fc.oneof(
  fc.string().map((s) => ({ raw: s })),
  fc.json().map((s) => ({ raw: s })),
  anyValue.map((v) => ({ raw: JSON.stringify(v) ?? "null" })),
  reviewish.map((v) => ({ raw: JSON.stringify(v) })),
);

describe("hostile input", () => {
  const config = compileConfig({ acceleration: { registries: [REG] }, registry: { requestTimeoutMs: 100 }, admission: { deadlineMs: 100 } });
  const metrics = new Metrics();
  const stack = createRegistryStack(config, metrics);
  const deps: HandlerDeps = { config, lookup: stack.resolver, logger: quiet, metrics };
  afterAll(async () => { await stack.close(); });

  it("the handler answers any parsed body with 200 (allowed) or 400 (with the reason), never anything else", async () => {
    await fc.assert(fc.asyncProperty(body, async ({ raw }) => {
      let parsed: unknown;
      try { parsed = JSON.parse(raw); } catch { return; } // the HTTP layer's case, below
      const r = await handleReview(parsed, deps);
      expect([200, 400]).toContain(r.status);
      if (r.status === 200) expect((r.body as { response: { allowed: boolean } }).response.allowed).toBe(true);
      else expect((r.body as { message: string }).message.length).toBeGreaterThan(0);
    }), { numRuns: 2000 });
    // Nothing reached the fail-open path: every 200 came from a decision, not from an error.
    const errors = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === "apparate_admission_reviews_total")!.values.filter((v) => v.labels.result === "error");
    expect(errors.reduce((a, v) => a + v.value, 0)).toBe(0);
  }, 60_000);

  it("a pod with many containers shares one deadline: one abort listener whatever the number of lookups (raceSignal fans out)", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const signals = new Set<AbortSignal>();
      const slow: HandlerDeps = { ...deps, lookup: { lookup: (_ref, _creds, signal) => { signals.add(signal); return raceSignal(new Promise((r) => setTimeout(() => r({ kind: "absent", reason: "not found" }), 20)), signal); } } };
      const containers = Array.from({ length: 200 }, (_, i) => ({ name: `c${i}`, image: `${REG}/team/app${i}:1.0` }));
      const r = await handleReview(review(webPod({ containers, initContainers: [] })), slow);
      expect(r.status).toBe(200);
      await new Promise((res) => setImmediate(res));
      expect(warnings).not.toContain("MaxListenersExceededWarning");
      expect(signals.size).toBe(1);
      // Negative control: a listener per lookup on one signal is what Node warns about.
      const ac = new AbortController();
      for (let i = 0; i < 20; i++) ac.signal.addEventListener("abort", () => undefined);
      await new Promise((res) => setImmediate(res));
      expect(warnings).toContain("MaxListenersExceededWarning");
    } finally {
      process.off("warning", onWarning);
    }
  });

  describe("over HTTPS", () => {
    let hook: TestWebhook;
    beforeAll(async () => { hook = await startWebhook({ acceleration: { registries: [REG] }, registry: { requestTimeoutMs: 100 }, admission: { deadlineMs: 100 } }); });
    afterAll(async () => { await hook?.stop(); });

    it("any body, valid JSON or not, gets a 200 or a 400, never a 5xx", async () => {
      await fc.assert(fc.asyncProperty(body, async ({ raw }) => {
        const r = await hook.post(undefined, raw);
        expect([200, 400]).toContain(r.status);
      }), { numRuns: 300 });
    }, 120_000);
  });
});

describe.skipIf(!registryAvailable)("faults", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
    await pushImage(reg.url, "team/web", "1.0-apparate", "oci-index");
  }, 30_000);
  afterAll(async () => { await reg?.stop(); });

  it("a flapping registry: every pod is allowed, none is swapped to a variant nobody confirmed, and acceleration returns with the registry", async () => {
    const flap: FaultServer = await startFaultServer(forwardTo(reg.host));
    const hook = await startWebhook({
      acceleration: { registries: [flap.host] },
      registry: { plainHttp: [flap.host], requestTimeoutMs: 200, unknownBackoffSeconds: 0, positiveTtlSeconds: 0, negativeTtlSeconds: 0, breakerFailures: 3, breakerCooldownSeconds: 1 },
      admission: { deadlineMs: 300 },
    });
    try {
      const pod = () => webPod({ containers: [{ name: "web", image: `${flap.host}/team/web:1.0` }, { name: "absent", image: `${flap.host}/team/absent:1.0` }], initContainers: [] });
      const modes = [forwardTo(reg.host), answer(500), hang, answer(503), forwardTo(reg.host)];
      const seen = new Set<string>();
      for (let i = 0; i < 40; i++) {
        flap.setHandler(modes[i % modes.length]!);
        const r = await hook.post(review(pod()));
        expect(r.status).toBe(200);
        expect(r.json.response.allowed).toBe(true);
        const images = decodePatch(r.json).filter((op: any) => op.path.endsWith("/image")).map((op: any) => op.value as string);
        // Only the variant that exists may ever be used; the absent one never.
        for (const img of images) expect(img).toBe(`${flap.host}/team/web:1.0-apparate`);
        seen.add(images.length > 0 ? "accelerated" : "unchanged");
      }
      expect(seen).toEqual(new Set(["accelerated", "unchanged"]));
      // The registry settles: after the breaker's cool-down, pods are accelerated again.
      flap.setHandler(forwardTo(reg.host));
      await waitFor(async () => decodePatch((await hook.post(review(pod()))).json).some((op: any) => op.value === `${flap.host}/team/web:1.0-apparate`), 5000, "acceleration after recovery");
    } finally {
      await hook.stop();
      await flap.stop();
    }
  }, 60_000);

  it("SIGTERM: the review in flight is answered, new connections are refused, the process exits 0", async () => {
    const hung = await startFaultServer(hang);
    const dir = mkdtempSync(join(tmpdir(), "apparate-sigterm-"));
    const [port, metricsPort] = [await freePort(), await freePort()];
    const cfg = join(dir, "config.json");
    writeFileSync(cfg, JSON.stringify({ acceleration: { registries: [hung.host] }, registry: { plainHttp: [hung.host], requestTimeoutMs: 5000 }, admission: { deadlineMs: 1500 } }));
    const caFile = join(dir, "ca.pem");
    const proc = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", "serve", "--config", cfg, "--port", String(port), "--metrics-port", String(metricsPort), "--host", "127.0.0.1", "--self-signed-ca-out", caFile], { stdio: ["ignore", "pipe", "pipe"] });
    let logs = "";
    proc.stdout.on("data", (d) => { logs += d; });
    proc.stderr.on("data", (d) => { logs += d; });
    const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
    try {
      await waitFor(async () => logs.includes("apparate webhook listening"), 20_000, "webhook start");
      const dispatcher = new Agent({ connect: { ca: readFileSync(caFile, "utf8") } });
      const t0 = Date.now();
      const inflight = request(`https://127.0.0.1:${port}/mutate`, {
        method: "POST", dispatcher, headers: { "content-type": "application/json" },
        body: JSON.stringify(review(webPod({ containers: [{ name: "web", image: `${hung.host}/team/web:1.0` }], initContainers: [] }))),
      }).then(async (r) => ({ status: r.statusCode, json: await r.body.json() as any }));
      await new Promise((r) => setTimeout(r, 300));
      proc.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 200));
      const fresh = new Agent({ connect: { ca: readFileSync(caFile, "utf8") } });
      await expect(request(`https://127.0.0.1:${port}/healthz`, { dispatcher: fresh })).rejects.toThrow();
      const r = await inflight;
      expect(r.status).toBe(200);
      expect(r.json.response.allowed).toBe(true);
      expect(r.json.response.warnings.join("\n")).toMatch(/could not check/);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
      expect(await exited).toBe(0);
      expect(logs).toMatch(/draining in-flight reviews/);
    } finally {
      proc.kill("SIGKILL");
      await hung.stop();
    }
  }, 40_000);
});

describe("connections: idle and slow ones are closed, kept-alive ones are kept", () => {
  let hook: TestWebhook;
  beforeAll(async () => {
    hook = await startWebhook({ acceleration: { registries: [REG] }, admission: { deadlineMs: 100, idleTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 5000 } });
  });
  afterAll(async () => { await hook?.stop(); });
  const port = () => Number(new URL(hook.url).port);
  const closedAfter = (s: import("node:net").Socket) => new Promise<number>((r) => { const t0 = performance.now(); s.on("close", () => r(performance.now() - t0)); s.on("error", () => undefined); });

  it("a TLS connection that sends nothing is closed after admission.idleTimeoutMs", async () => {
    const s = tlsConnect({ host: "127.0.0.1", port: port(), ca: hook.ca, servername: "localhost" });
    await new Promise((r) => s.once("secureConnect", r));
    const ms = await closedAfter(s);
    expect(ms).toBeGreaterThan(800);
    expect(ms).toBeLessThan(3000);
  });

  it("a body sent at 1 byte per 200 ms is cut off by admission.requestTimeoutMs", async () => {
    const s = tlsConnect({ host: "127.0.0.1", port: port(), ca: hook.ca, servername: "localhost" });
    await new Promise((r) => s.once("secureConnect", r));
    s.write("POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n");
    const drip = setInterval(() => { if (!s.destroyed) s.write(" "); }, 200);
    const ms = await closedAfter(s);
    clearInterval(drip);
    expect(ms).toBeGreaterThan(1500);
    expect(ms).toBeLessThan(5000);
  });

  it("a kept-alive connection outlives the idle timeout between requests (the API server's pool is kept)", async () => {
    const dispatcher = new Agent({ connect: { ca: hook.ca }, keepAliveTimeout: 30_000, connections: 1 });
    const post = async () => (await request(`${hook.url}/mutate`, { method: "POST", dispatcher, headers: { "content-type": "application/json" }, body: JSON.stringify(review(webPod())) })).body.dump();
    let connects = 0;
    dispatcher.on("connect", () => { connects++; });
    await post();
    await new Promise((r) => setTimeout(r, 2500));
    await post();
    expect(connects).toBe(1);
    await dispatcher.close();
  });
});
