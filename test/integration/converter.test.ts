// `apparate converter` end to end on loopback: a real Debian docker-registry whose
// notifications.endpoints point at the converter, the real conversion engine, the
// estargz oracle on the result, and the webhook's planner swapping the image.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkImage } from "../../src/cli/check-image.js";
import { compileConfig, type Config } from "../../src/config/config.js";
import { TOC_DIGEST_ANNOTATION } from "../../src/convert/estargz.js";
import { SOURCE_DIGEST_ANNOTATION } from "../../src/convert/image.js";
import { type ConvertImage, engineFor } from "../../src/converter/engine.js";
import { type ConverterHandle, startConverter } from "../../src/converter/main.js";
import { HttpRegistryReader } from "../../src/converter/registry-reader.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack, type RegistryStack } from "../../src/registry/stack.js";
import { buildOracle, oracleBuildable, verifyWithOracle } from "../support/estargz-oracle.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { getBlob, getManifest, pushTestImage } from "../support/oci-images.js";
import { freePort, waitFor } from "../support/ports.js";
import { registryAvailable, type RunningRegistry, startRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";

const SECRET = "distribution-shared-secret-1";
const HARBOR_SECRET = "harbor-shared-secret-2";
const V1 = "application/vnd.docker.distribution.events.v1+json";

const layer = (name: string) => gzipTar([{ name: "etc/", type: "5" }, { name: `etc/${name}`, data: `${name}\n` }, { name: "www/index.html", data: "hello\n" }]);

describe.skipIf((!registryAvailable || !oracleBuildable) && process.env.CI !== "true")("apparate converter with a real registry", () => {
  let dir: string;
  let reg: RunningRegistry;       // notifies the converter
  let quiet: RunningRegistry;     // sends nothing: scans and Harbor payloads
  let api: KubeApiStandIn;
  let port: number;
  let config: Config;
  let configFile: string;
  let stack: RegistryStack;
  let conv: ConverterHandle | undefined;
  const logLines: string[] = [];
  /** Engine calls by source key (registry/repo:tag@digest). */
  const calls = new Map<string, number>();

  const start = async (over: { convert?: ConvertImage } = {}) => {
    const base = engineFor(stack, config);
    const counted: ConvertImage = (req, signal) => {
      const k = `${req.registry}/${req.repository}:${req.tag}@${req.digest}`;
      calls.set(k, (calls.get(k) ?? 0) + 1);
      return (over.convert ?? base)(req, signal);
    };
    const logger = createLogger({ level: "debug", destination: new Writable({ write(c, _e, cb) { logLines.push(c.toString()); cb(); } }) });
    conv = await startConverter({ config, convert: counted, logger, port, host: "127.0.0.1", scanOnStart: false, kube: { kc: api.kubeConfig(), namespace: "apparate", podName: "converter-0" } });
    return conv;
  };
  const stop = async () => { await conv?.close(); conv = undefined; };
  const post = (source: string, body: string, headers: Record<string, string>) =>
    fetch(`http://127.0.0.1:${port}/events/${source}`, { method: "POST", headers, body });
  const accelerated = async (r: RunningRegistry, name: string, tag: string) => {
    let m: Awaited<ReturnType<typeof getManifest>> | undefined;
    await waitFor(async () => { m = await getManifest(r.url, name, `${tag}-apparate`); return m.status === 200; }, 30_000, `${name}:${tag}-apparate`);
    return m!;
  };

  beforeAll(async () => {
    buildOracle();
    dir = mkdtempSync(join(tmpdir(), "apparate-converter-"));
    port = await freePort();
    reg = await startRegistry({ notify: { url: `http://127.0.0.1:${port}/events/local`, headers: { Authorization: `Bearer ${SECRET}` } } });
    quiet = await startRegistry();
    api = new KubeApiStandIn();
    await api.start();
    writeFileSync(join(dir, "local"), `${SECRET}\n`);
    writeFileSync(join(dir, "harbor"), HARBOR_SECRET);
    const raw = {
      acceleration: { registries: [reg.host, quiet.host] },
      registry: { plainHttp: [reg.host, quiet.host], requestTimeoutMs: 5000 },
      converter: {
        concurrency: 2, maxAttempts: 2, retryBackoffSeconds: 0.1, rescanIntervalSeconds: 0,
        sources: [
          { name: "local", kind: "distribution", secretFile: join(dir, "local") },
          { name: "harbor", kind: "harbor", secretFile: join(dir, "harbor"), registry: quiet.host },
        ],
        scan: [{ registry: quiet.host }],
      },
    };
    config = compileConfig(raw);
    configFile = join(dir, "config.json");
    writeFileSync(configFile, JSON.stringify(raw));
    stack = createRegistryStack(config, new Metrics());
  }, 300_000);

  afterAll(async () => {
    await stop();
    await stack?.destroy();
    await reg?.stop();
    await quiet?.stop();
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a push notifies the converter; the -apparate image appears as verified eStargz, and the webhook swaps to it", async () => {
    await start();
    const digest = await pushTestImage(reg.url, "team/web", "v1", [{ layers: [{ blob: layer("web") }] }]);
    const m = await accelerated(reg, "team/web", "v1");
    expect(m.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(m.json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digest);
    for (const l of m.json.layers) {
      const path = join(dir, `${l.digest.slice(7, 19)}.blob`);
      writeFileSync(path, await getBlob(reg.url, "team/web", l.digest));
      await verifyWithOracle(path, l.annotations[TOC_DIGEST_ANNOTATION]);
    }
    // The webhook's own planner with a real registry lookup now swaps the image.
    const out = new PassThrough();
    let text = "";
    out.on("data", (d: Buffer) => { text += d.toString(); });
    const code = await checkImage([`${reg.host}/team/web:v1`, "--config", configFile, "--lookups", "registry", "--json"], out);
    expect(code).toBe(0);
    expect(JSON.parse(text).decision.image).toBe(`${reg.host}/team/web:v1-apparate`);
    expect(calls.get(`${reg.host}/team/web:v1@${digest}`)).toBe(1);
    // The conversion ends after the tag: the X -> Y link is recorded last (issue 27).
    await conv!.converter.queue.idle();
    const listed = await (await fetch(`${conv!.url}/conversions`)).json() as { recent: Array<{ source: string; state: string; trigger: string }> };
    expect(listed.recent).toContainEqual(expect.objectContaining({ source: `${reg.host}/team/web:v1`, state: "converted", trigger: "event" }));
  });

  it("duplicate and replayed events convert once", async () => {
    const digest = await pushTestImage(reg.url, "team/dup", "v1", [{ layers: [{ blob: layer("dup") }] }]);
    const envelope = JSON.stringify({ events: [{ id: "replay", action: "push", target: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest, repository: "team/dup", tag: "v1" }, request: { host: reg.host } }] });
    const headers = { "content-type": V1, authorization: `Bearer ${SECRET}` };
    const answers = await Promise.all(Array.from({ length: 5 }, () => post("local", envelope, headers)));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
    await accelerated(reg, "team/dup", "v1");
    await conv!.converter.queue.idle();
    // Replayed after it finished (a registry retrying a delivery).
    expect((await post("local", envelope, headers)).status).toBe(202);
    await conv!.converter.queue.idle();
    expect(calls.get(`${reg.host}/team/dup:v1@${digest}`)).toBe(1);
  });

  it("a wrong secret is 401 and a malformed payload 400, and neither queues anything", async () => {
    const before = conv!.converter.queue.depth + conv!.converter.queue.active;
    const wrong = await post("local", "{\"events\":[]}", { "content-type": V1, authorization: "Bearer nope" });
    expect(wrong.status).toBe(401);
    const harborWithLocalSecret = await post("harbor", "{}", { "content-type": "application/json", authorization: SECRET });
    expect(harborWithLocalSecret.status).toBe(401);
    const bad = await post("local", "{\"events\": {}}", { "content-type": V1, authorization: `Bearer ${SECRET}` });
    expect(bad.status).toBe(400);
    expect((await bad.json() as { message: string }).message).toMatch(/"events" must be an array/);
    expect(conv!.converter.queue.depth + conv!.converter.queue.active).toBe(before);
  });

  it("Harbor payloads, Default and CloudEvents (structured and binary), from a test client: each converts its image", async () => {
    const d1 = await pushTestImage(quiet.url, "test-webhook/debian", "latest", [{ layers: [{ blob: layer("h1") }] }]);
    const d2 = await pushTestImage(quiet.url, "test-webhook/debian", "ce", [{ layers: [{ blob: layer("h2") }] }]);
    const d3 = await pushTestImage(quiet.url, "test-webhook/debian", "bin", [{ layers: [{ blob: layer("h3") }] }]);
    const data = (digest: string, tag: string) => ({
      resources: [{ digest, tag, resource_url: `hub.harbor.com/test-webhook/debian:${tag}` }],
      repository: { date_created: 1586922308, name: "debian", namespace: "test-webhook", repo_full_name: "test-webhook/debian", repo_type: "private" },
    });
    const auth = { authorization: HARBOR_SECRET };
    const r1 = await post("harbor", JSON.stringify({ type: "PUSH_ARTIFACT", occur_at: 1586922308, operator: "admin", event_data: data(d1, "latest") }), { ...auth, "content-type": "application/json" });
    const r2 = await post("harbor", JSON.stringify({ specversion: "1.0", id: "e2", source: "/projects/2/webhook/policies/15", type: "harbor.artifact.pushed", datacontenttype: "application/json", time: "2023-04-03T06:04:46Z", data: data(d2, "ce"), operator: "admin" }), { ...auth, "content-type": "application/cloudevents+json" });
    const r3 = await post("harbor", JSON.stringify(data(d3, "bin")), { ...auth, "content-type": "application/json", "ce-specversion": "1.0", "ce-type": "harbor.artifact.pushed", "ce-id": "e3", "ce-source": "/projects/2/webhook/policies/15" });
    expect([r1.status, r2.status, r3.status]).toEqual([202, 202, 202]);
    for (const [tag, d] of [["latest", d1], ["ce", d2], ["bin", d3]] as const) {
      expect((await accelerated(quiet, "test-webhook/debian", tag)).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(d);
    }
  });

  it("a notification lost while the converter was down is caught by the next scan; a moved tag is found stale", async () => {
    await stop();
    const digest = await pushTestImage(quiet.url, "team/lost", "v1", [{ layers: [{ blob: layer("lost") }] }]);
    await start();
    expect((await getManifest(quiet.url, "team/lost", "v1-apparate")).status).toBe(404);
    await conv!.rescan();
    expect((await accelerated(quiet, "team/lost", "v1")).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digest);
    await conv!.converter.queue.idle();
    // The tag moves; the old -apparate records the old digest: stale.
    const moved = await pushTestImage(quiet.url, "team/lost", "v1", [{ layers: [{ blob: layer("lost-2") }] }]);
    await conv!.rescan();
    await conv!.converter.queue.idle();
    expect((await getManifest(quiet.url, "team/lost", "v1-apparate")).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(moved);
    const scans = (await (await fetch(`${conv!.url}/conversions`)).json() as { scans: Array<{ registry: string; findings: Array<{ reason: string }> }> }).scans;
    expect(scans.find((s) => s.registry === quiet.host)!.findings.map((f) => f.reason)).toEqual(["stale"]);
  });

  it("a converter stopped mid-conversion leaves no -apparate tag, and the next one finishes the work after its rescan", async () => {
    const { randomBytes } = await import("node:crypto");
    const big = gzipTar([{ name: "big.bin", data: randomBytes(32 << 20) }]);
    const digest = await pushTestImage(quiet.url, "team/killed", "v1", [{ layers: [{ blob: big }] }]);
    if (!conv) await start();
    await conv!.rescan();
    await waitFor(async () => conv!.converter.conversions().recent.some((r) => r.source.endsWith("team/killed:v1") && r.state === "running"), 30_000, "the conversion to start");
    await stop();
    expect((await getManifest(quiet.url, "team/killed", "v1-apparate")).status).toBe(404);
    await start();
    await conv!.rescan();
    expect((await accelerated(quiet, "team/killed", "v1")).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digest);
  }, 120_000);

  it("tags/list pagination follows the real registry's Link header", async () => {
    for (const t of ["p1", "p2", "p3", "p4", "p5"]) await pushTestImage(quiet.url, "team/paged", t, [{ layers: [{ blob: layer(t) }] }]);
    const reader = new HttpRegistryReader({
      send: (domain, scope, req, signal) => stack.client.authorizedRequest(domain, scope, undefined, req, signal),
      origin: (r) => stack.client.origin(r), pageSize: 2,
    });
    const signal = new AbortController().signal;
    expect((await reader.tags(quiet.host, "team/paged", signal)).sort()).toEqual(["p1", "p2", "p3", "p4", "p5"]);
    expect(await reader.repositories(quiet.host, signal)).toEqual(expect.arrayContaining(["team/lost", "team/paged", "test-webhook/debian"]));
  });

  it("a conversion that can never succeed is reported at once, not retried: /conversions, the metric, a Kubernetes Event; no secret in any log line", async () => {
    // A layer that is neither gzip nor tar: the engine fails on it every time (test/integration/converter-failures.test.ts has the transient kinds).
    const digest = await pushTestImage(reg.url, "team/broken", "v1", [{ layers: [{ blob: Buffer.from("not gzip at all"), diffID: `sha256:${"0".repeat(64)}` }] }]);
    await waitFor(async () => (await (await fetch(`${conv!.url}/conversions`)).json() as { failures: unknown[] }).failures.length > 0, 30_000, "the failure");
    const listed = await (await fetch(`${conv!.url}/conversions`)).json() as { failures: Array<{ source: string; digest: string; attempts: number; error: string }> };
    expect(listed.failures[0]).toMatchObject({ source: `${reg.host}/team/broken:v1`, digest, attempts: 1, permanent: true });
    expect((await getManifest(reg.url, "team/broken", "v1-apparate")).status).toBe(404);
    const metrics = await (await fetch(`${conv!.url}/metrics`)).text();
    expect(metrics).toMatch(/apparate_conversions_total\{result="failed"\} 1/);
    expect(metrics).toMatch(/apparate_conversions_total\{result="converted"\} \d+/);
    expect(metrics).toMatch(/apparate_conversion_queue_depth 0/);
    const failed = () => api.list("events").filter((e) => e.reason === "ConversionFailed");
    await waitFor(async () => failed().length > 0, 10_000, "the Event");
    // Exactly one: the conversion interrupted by the earlier shutdown is not a failure.
    expect(failed()).toHaveLength(1);
    const ev = failed()[0]!;
    expect(ev).toMatchObject({ type: "Warning", involvedObject: { kind: "Pod", name: "converter-0", namespace: "apparate" } });
    expect(ev.message).toContain(`${reg.host}/team/broken:v1`);
    const all = logLines.join("");
    expect(all).toContain("conversion failed");
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(HARBOR_SECRET);
  });
});
