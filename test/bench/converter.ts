// Push-triggered conversion: (1) push-to-available latency of `-apparate` for a 50 MiB
// image against the engine's own conversion time of an image of the same size, in the
// same run; (2) 20 pushes at once: every one converted exactly once, never more at once
// than the configured concurrency. A real docker-registry notifies the converter.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { compileConfig } from "../../src/config/config.js";
import { type ConvertImage, engineFor } from "../../src/converter/engine.js";
import { startConverter } from "../../src/converter/main.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack } from "../../src/registry/stack.js";
import { getManifest, putBlob, putManifest } from "../support/oci-images.js";
import { freePort } from "../support/ports.js";
import { startRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";

const SECRET = "bench-secret";

/** Uploads blobs and config; returns a function that PUTs the manifest (the moment of the push). */
async function stage(url: string, name: string, tag: string, bytes: number): Promise<() => Promise<string>> {
  const { createHash } = await import("node:crypto");
  const plain = randomBytes(bytes);
  const blob = gzipTar([{ name: "data.bin", data: plain }]);
  const { gunzipSync } = await import("node:zlib");
  const diff = `sha256:${createHash("sha256").update(gunzipSync(blob)).digest("hex")}`;
  const layer = await putBlob(url, name, blob);
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [diff] } }));
  const cfg = await putBlob(url, name, config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: cfg, size: config.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: layer, size: blob.length }],
  }));
  return () => putManifest(url, name, tag, "application/vnd.oci.image.manifest.v1+json", manifest);
}

async function waitAccelerated(url: string, name: string, tag: string, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if ((await getManifest(url, name, `${tag}-apparate`)).status === 200) return performance.now();
    if (Date.now() > end) throw new Error(`${name}:${tag}-apparate did not appear`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface ConverterBenchResult {
  imageMiB: number;
  engineSeconds: number;
  pushToAvailableSeconds: number;
  overheadSeconds: number;
  burst: { pushes: number; concurrency: number; converted: number; engineCalls: number; maxRunning: number; seconds: number };
}

export async function converterBench(): Promise<ConverterBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "apparate-bench-converter-"));
  const port = await freePort();
  const reg = await startRegistry({ notify: { url: `http://127.0.0.1:${port}/events/local`, headers: { Authorization: SECRET } } });
  writeFileSync(join(dir, "secret"), SECRET);
  const concurrency = 2;
  const config = compileConfig({
    acceleration: { registries: [reg.host] }, registry: { plainHttp: [reg.host], requestTimeoutMs: 10_000 },
    converter: { concurrency, maxQueued: 100, rescanIntervalSeconds: 0, sources: [{ name: "local", kind: "distribution", secretFile: join(dir, "secret") }] },
  });
  const stack = createRegistryStack(config, new Metrics());
  const engine = engineFor(stack, config);
  const calls = new Map<string, number>();
  let running = 0;
  let maxRunning = 0;
  const counted: ConvertImage = async (req, signal) => {
    const k = `${req.repository}:${req.tag}@${req.digest}`;
    calls.set(k, (calls.get(k) ?? 0) + 1);
    running++; maxRunning = Math.max(maxRunning, running);
    try { return await engine(req, signal); } finally { running--; }
  };
  const logger = createLogger({ destination: pino.destination({ dest: "/dev/null", sync: true }) });
  const conv = await startConverter({ config, convert: counted, logger, port, host: "127.0.0.1", scanOnStart: false });
  try {
    const MiB = 50;
    // The engine alone, on an image of the same size (its own random content).
    const pushDirect = await stage(reg.url, "bench/direct", "v1", MiB << 20);
    const directDigest = await pushDirect();
    await conv.converter.queue.idle(); // the registry's notification of this push converts it too: let it finish
    const directTarget = { domain: reg.host, path: "bench/direct", tag: "v2" };
    const t0 = performance.now();
    const { convertImage } = await import("../../src/convert/image.js");
    await convertImage({ client: stack.client, source: { domain: reg.host, path: "bench/direct", tag: "v1", digest: directDigest }, target: directTarget, tagSuffix: "-apparate", credentials: () => undefined });
    const engineSeconds = (performance.now() - t0) / 1000;

    // Push to available: from the manifest PUT (the push completing) to the -apparate tag answering.
    const push = await stage(reg.url, "bench/pushed", "v1", MiB << 20);
    const p0 = performance.now();
    await push();
    const p1 = await waitAccelerated(reg.url, "bench/pushed", "v1", 120_000);
    const pushToAvailableSeconds = (p1 - p0) / 1000;

    // 20 pushes at once.
    calls.clear();
    maxRunning = 0;
    const N = 20;
    const staged = await Promise.all(Array.from({ length: N }, (_, i) => stage(reg.url, `bench/burst${i}`, "v1", 1 << 20)));
    const b0 = performance.now();
    await Promise.all(staged.map((s) => s()));
    await Promise.all(Array.from({ length: N }, (_, i) => waitAccelerated(reg.url, `bench/burst${i}`, "v1", 120_000)));
    await conv.converter.queue.idle();
    const seconds = (performance.now() - b0) / 1000;
    const engineCalls = [...calls.values()].reduce((a, b) => a + b, 0);
    return {
      imageMiB: MiB, engineSeconds, pushToAvailableSeconds, overheadSeconds: pushToAvailableSeconds - engineSeconds,
      burst: { pushes: N, concurrency, converted: calls.size, engineCalls, maxRunning, seconds },
    };
  } finally {
    await conv.close();
    await stack.destroy();
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// Standalone: node --import tsx test/bench/converter.ts
if (process.argv[1]?.endsWith("converter.ts")) {
  converterBench().then((r) => { console.log(JSON.stringify(r, null, 2)); process.exit(0); }, (err) => { console.error(err); process.exit(1); });
}
