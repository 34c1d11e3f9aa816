// Permanent and transient conversion failures, in process, against a real registry behind
// a loopback front that can misbehave on the layer's blob (answer 503, cut the body, send
// other bytes). A source that can never convert (its layer refused, its config lying
// about diff_ids) is tried once and recorded failed for good with the reason, one Event,
// counted permanent, and not run again by a replayed event or a rescan. A failure on the
// way (5xx, a cut stream, a mirror serving wrong bytes for a while) is retried with
// backoff and converts.
import { request as httpRequest } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { compileConfig, type Config } from "../../src/config/config.js";
import { SOURCE_DIGEST_ANNOTATION } from "../../src/convert/image.js";
import { type ConvertImage, engineFor } from "../../src/converter/engine.js";
import { type ConverterHandle, startConverter } from "../../src/converter/main.js";
import type { ConversionRecord } from "../../src/converter/service.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack, type RegistryStack } from "../../src/registry/stack.js";
import { type FaultServer, type Handler, startFaultServer } from "../support/faults.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { getManifest, pushTestImage } from "../support/oci-images.js";
import { freePort, waitFor } from "../support/ports.js";
import { registryAvailable, type RunningRegistry, startRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";

const SECRET = "distribution-shared-secret-failures";
const layer = (name: string) => gzipTar([{ name: "etc/", type: "5" }, { name: `etc/${name}`, data: `${name}\n`.repeat(2000) }]);

describe.skipIf(!registryAvailable && process.env.CI !== "true")("conversion failures: permanent ones recorded once, transient ones retried", () => {
  let dir: string;
  let reg: RunningRegistry;
  let front: FaultServer;
  let api: KubeApiStandIn;
  let stack: RegistryStack;
  let config: Config;
  let conv: ConverterHandle | undefined;
  const calls = new Map<string, number>();
  const logLines: string[] = [];

  /** The front forwards everything; `onBlob` decides for GETs of one blob digest, by how many came before. */
  let blobFault: { digest: string; handle: (n: number) => Handler | undefined; seen: number } | undefined;
  const frontHandler: Handler = (req, res) => {
    const f = blobFault;
    if (f && req.method === "GET" && req.url?.endsWith(`/blobs/${f.digest}`)) {
      const h = f.handle(f.seen++);
      if (h) return h(req, res);
    }
    return forward(req, res);
  };
  /** To the registry, keeping the Host header: its upload Locations name the front. */
  const forward: Handler = (req, res) => {
    const up = httpRequest({ host: "127.0.0.1", port: Number(reg.host.split(":")[1]), path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on("error", () => res.writeHead(502).end());
    req.pipe(up);
  };

  /** The real blob from the registry, whole. */
  const realBlob = (path: string) => new Promise<Buffer>((resolve, reject) => {
    const up = httpRequest({ host: "127.0.0.1", port: Number(reg.host.split(":")[1]), path, method: "GET" }, (ur) => {
      const parts: Buffer[] = [];
      ur.on("data", (c: Buffer) => parts.push(c));
      ur.on("end", () => resolve(Buffer.concat(parts)));
      ur.on("error", reject);
    });
    up.on("error", reject);
    up.end();
  });
  /** The blob with its bytes altered by `edit`, under the right length. */
  const altered = (edit: (b: Buffer) => Buffer): Handler => (req, res) => {
    void realBlob(req.url!).then((b) => {
      const body = edit(b);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(body.length) });
      res.end(body);
    });
  };
  /** The blob's length announced, half of it sent, then the connection cut. */
  const cut: Handler = (req, res) => {
    void realBlob(req.url!).then((b) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(b.length) });
      res.write(b.subarray(0, b.length >> 1));
      setTimeout(() => res.socket?.destroy(), 50);
    });
  };
  const unavailable: Handler = (_req, res) => { res.writeHead(503, { "content-type": "text/plain" }).end("try later"); };

  const start = async () => {
    await conv?.close();
    const base = engineFor(stack, config);
    const counted: ConvertImage = (req, signal) => {
      const k = `${req.repository}:${req.tag}@${req.digest}`;
      calls.set(k, (calls.get(k) ?? 0) + 1);
      return base(req, signal);
    };
    const logger = createLogger({ level: "debug", destination: new Writable({ write(c, _e, cb) { logLines.push(c.toString()); cb(); } }) });
    conv = await startConverter({ config, convert: counted, logger, port: await freePort(), host: "127.0.0.1", scanOnStart: false, kube: { kc: api.kubeConfig(), namespace: "apparate", podName: "converter-0" } });
    return conv;
  };
  const record = (repo: string) => conv!.converter.conversions().recent.find((r) => r.source === `${front.host}/${repo}:v1`);
  const finished = async (repo: string): Promise<ConversionRecord> => {
    await waitFor(async () => ["converted", "up-to-date", "failed"].includes(record(repo)?.state ?? ""), 30_000, `${repo} to finish`);
    await conv!.converter.queue.idle();
    return record(repo)!;
  };
  const submit = (repo: string, digest: string) => conv!.converter.submitPush({ registry: front.host, repository: repo, tag: "v1", digest }, "test");
  const metric = async (re: RegExp) => Number(re.exec(await (await fetch(`${conv!.url}/metrics`)).text())?.[1] ?? 0);
  const events = (repo: string) => api.list("events").filter((e) => e.reason === "ConversionFailed" && e.message.includes(`/${repo}:v1`));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "apparate-converter-failures-"));
    writeFileSync(join(dir, "local"), SECRET);
    reg = await startRegistry();
    front = await startFaultServer(frontHandler);
    api = new KubeApiStandIn();
    await api.start();
    config = compileConfig({
      acceleration: { registries: [front.host] },
      registry: { plainHttp: [front.host], requestTimeoutMs: 5000 },
      converter: {
        concurrency: 1, maxAttempts: 3, retryBackoffSeconds: 0.1, retryBackoffMaxSeconds: 0.2, rescanIntervalSeconds: 0,
        sources: [{ name: "local", kind: "distribution", secretFile: join(dir, "local") }],
        scan: [{ registry: front.host }],
      },
    });
    stack = createRegistryStack(config, new Metrics());
  }, 60_000);

  afterEach(async () => { blobFault = undefined; await conv?.close(); conv = undefined; });
  afterAll(async () => {
    await conv?.close();
    await stack?.destroy();
    await front?.stop();
    await reg?.stop();
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Real inputs a registry will happily store: each fails the same way every time.
  const permanent: Array<[string, () => { blob: Buffer; diffID?: string }, RegExp]> = [
    ["a GNU sparse file in the layer", () => ({ blob: gzipTar([{ name: "etc/", type: "5" }, { name: "var/lib/sparse.img", type: "S", data: "x".repeat(600) }]) }),
      /linux\/amd64 layer 1\/1 \(sha256:[0-9a-f]{64}\): entry "var\/lib\/sparse.img" is a sparse file/],
    ["a layer that is neither gzip nor tar", () => ({ blob: Buffer.from("not gzip at all, not a tar either".repeat(20)), diffID: `sha256:${"0".repeat(64)}` }),
      /tar header checksum mismatch at offset 0/],
    ["a config whose diff_id is not the layer's", () => ({ blob: layer("liar"), diffID: `sha256:${"1".repeat(64)}` }),
      /uncompressed digest sha256:[0-9a-f]{64} differs from the config's diff_id sha256:1{64}/],
  ];

  it.each(permanent)("%s: tried once, recorded failed for good with the reason, one Event, counted permanent; a replay and a rescan do not run it again", async (_name, make, reason) => {
    await start();
    const repo = `perm/${_name.replace(/[^a-z]+/g, "-").replace(/^-|-$/g, "")}`;
    const { blob, diffID } = make();
    const digest = await pushTestImage(reg.url, repo, "v1", [{ layers: [{ blob, ...(diffID ? { diffID } : {}) }] }]);
    expect(submit(repo, digest).outcome).toBe("queued");
    const rec = await finished(repo);
    expect(rec).toMatchObject({ state: "failed", attempts: 1, permanent: true });
    expect(rec.error, rec.error).toMatch(reason);
    expect(calls.get(`${repo}:v1@${digest}`)).toBe(1);
    expect(await metric(/apparate_conversion_failures_total\{kind="permanent"\} (\d+)/)).toBe(1);
    expect(await metric(/apparate_conversion_failures_total\{kind="transient"\} (\d+)/)).toBe(0);
    await waitFor(async () => events(repo).length > 0, 10_000, "the Event");
    expect(events(repo)[0]!.message).toMatch(/failed for good, not retried \(retrying cannot help\)/);
    // The registry replays the event; the hourly rescan finds the -apparate tag missing.
    expect(submit(repo, digest)).toEqual({ outcome: "duplicate", reason: "failed for good recently (retrying cannot help)" });
    await conv!.rescan();
    await conv!.converter.queue.idle();
    expect(calls.get(`${repo}:v1@${digest}`)).toBe(1);
    expect(events(repo)).toHaveLength(1);
    expect((await getManifest(reg.url, repo, "v1-apparate")).status).toBe(404);
  }, 60_000);

  // Failures on the way: the same source converts on a later attempt.
  const transient: Array<[string, (n: number) => Handler | undefined, number]> = [
    ["the registry answers 503 for the layer once", (n) => (n === 0 ? unavailable : undefined), 2],
    ["the layer's connection is cut halfway once (the gzip stream ends early)", (n) => (n === 0 ? cut : undefined), 2],
    // The bytes fail to parse, and the blob read again does not match its digest either:
    // not the blob's fault, so not permanent.
    ["a mirror serves the layer with bytes flipped, twice", (n) => (n < 2 ? altered((b) => { const c = Buffer.from(b); for (let i = 10; i < c.length - 8; i += 97) c[i]! ^= 0xff; return c; }) : undefined), 2],
  ];

  it.each(transient)("%s: retried with backoff and converted", async (_name, handle, attempts) => {
    await start();
    const repo = `flaky/${_name.replace(/[^a-z0-9]+/g, "-").slice(0, 40).replace(/^-|-$/g, "")}`;
    const blob = layer(repo);
    const digest = await pushTestImage(reg.url, repo, "v1", [{ layers: [{ blob }] }]);
    const layerDigest = (await getManifest(reg.url, repo, digest)).json.layers[0].digest as string;
    blobFault = { digest: layerDigest, handle, seen: 0 };
    expect(submit(repo, digest).outcome).toBe("queued");
    const rec = await finished(repo);
    expect(rec, JSON.stringify(rec)).toMatchObject({ state: "converted", attempts });
    expect(rec.permanent).toBeUndefined();
    expect((await getManifest(reg.url, repo, "v1-apparate")).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digest);
    expect(await metric(/apparate_conversion_failures_total\{kind="transient"\} (\d+)/)).toBe(attempts - 1);
    expect(await metric(/apparate_conversion_failures_total\{kind="permanent"\} (\d+)/)).toBe(0);
    expect(events(repo)).toHaveLength(0);
  }, 60_000);

  it("negative control: a transient failure that persists ends after maxAttempts, not marked permanent, and a replay runs it again", async () => {
    await start();
    const repo = "flaky/always-503";
    const digest = await pushTestImage(reg.url, repo, "v1", [{ layers: [{ blob: layer(repo) }] }]);
    blobFault = { digest: (await getManifest(reg.url, repo, digest)).json.layers[0].digest as string, handle: () => unavailable, seen: 0 };
    submit(repo, digest);
    const rec = await finished(repo);
    expect(rec).toMatchObject({ state: "failed", attempts: 3 });
    expect(rec.permanent).toBeUndefined();
    expect(rec.error).toMatch(/503/);
    await waitFor(async () => events(repo).length > 0, 10_000, "the Event");
    expect(events(repo)[0]!.message).toMatch(/failed after 3 attempt\(s\)/);
    expect(await metric(/apparate_conversion_failures_total\{kind="transient"\} (\d+)/)).toBe(3);
    blobFault = undefined;
    expect(submit(repo, digest).outcome).toBe("queued");
    expect((await finished(repo)).state).toBe("converted");
  }, 60_000);
});
