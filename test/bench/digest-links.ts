// Admission cost of digest-pinned images (acceleration.digestPinned) with their conversion
// links cached, side by side with the same images by tag, tag answers cached: the real
// handler in-process (no HTTP), the real registry stack against Debian's docker-registry
// on loopback for the first lookups (links recorded by `apparate convert`), then only
// cache hits. Alternating rounds, medians; pods are new each review (name, uid), without
// the plan memo (every review looks its images up) and with it.
//   npm run bench digest-links   (bench/results.json digestLinks), or alone:
//   node --import tsx test/bench/digest-links.ts   (prints the figures only)
import { pathToFileURL } from "node:url";
import { Writable } from "node:stream";
import { pino } from "pino";
import { type Answer, handleReview, type HandlerDeps } from "../../src/admission/handler.js";
import { PlanMemo } from "../../src/admission/plan-memo.js";
import { main as cli } from "../../src/cli/main.js";
import { compileConfig } from "../../src/config/config.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack } from "../../src/registry/stack.js";
import { pushTestImage } from "../support/oci-images.js";
import { startRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";
import { decodePatch, review } from "../support/webhook.js";

const IMAGES = 4;
const quiet = new Writable({ write(_c, _e, cb) { cb(); } });

export interface DigestLinksRound { tagsUs: number; digestLinksUs: number; ratio: number; tagRounds: number[]; digestRounds: number[] }
export interface DigestLinksResult { images: number; date: string; withoutPlanMemo: DigestLinksRound; withPlanMemo: DigestLinksRound; linkCacheEntries: number }

export async function digestLinksBench(): Promise<DigestLinksResult> {
  const reg = await startRegistry();
  try {
    const digests: string[] = [];
    for (let i = 0; i < IMAGES; i++) {
      digests.push(await pushTestImage(reg.url, `bench/app${i}`, "1.0", [{ layers: [{ blob: gzipTar([{ name: `f${i}`, data: `${i}\n` }]) }] }]));
      if (await cli(["convert", `${reg.host}/bench/app${i}:1.0`, "--plain-http"], quiet, quiet) !== 0) throw new Error("convert failed");
    }
    const config = compileConfig({ namespaces: ["default"], acceleration: { registries: [reg.host], digestPinned: true, placement: { mode: "none" } }, registry: { plainHttp: [reg.host] } });
    const stack = createRegistryStack(config, new Metrics());
    const logger = createLogger({ destination: pino.destination({ dest: "/dev/null", sync: true }) });
    const deps = (memo: boolean): HandlerDeps => ({ config, lookup: stack.lookup, logger, metrics: new Metrics(), ...(memo ? { planMemo: new PlanMemo<Answer>() } : {}) });
    const pod = (images: string[]): PodLike => ({ apiVersion: "v1", kind: "Pod", metadata: { name: "web", namespace: "default", labels: { app: "web" } }, spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) } });
    const tagged = pod(digests.map((_, i) => `${reg.host}/bench/app${i}:1.0`));
    const pinned = pod(digests.map((d, i) => `${reg.host}/bench/app${i}:1.0@${d}`));
    const bodies = (p: PodLike) => Array.from({ length: 1000 }, (_, i) => JSON.parse(JSON.stringify(review({ ...p, metadata: { ...p.metadata, name: `web-${i}` } }, { uid: `uid-${i}` }))));
    const tagBodies = bodies(tagged), pinBodies = bodies(pinned);
    // Warm: the first review asks the registry; every later one is answered from the caches.
    for (const [b, want] of [[tagBodies, "-apparate"], [pinBodies, "-apparate@sha256:"]] as const) {
      const r = await handleReview(b[0], deps(false));
      const ops = decodePatch(r.body).filter((o: { path: string }) => o.path.endsWith("/image"));
      if (ops.length !== IMAGES || !ops.every((o: { value: string }) => o.value.includes(want))) throw new Error(`warm-up did not accelerate: ${JSON.stringify(ops)}`);
    }
    const round = async (d: HandlerDeps, b: unknown[], n: number) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await handleReview(b[i % b.length], d);
      return ((performance.now() - t0) * 1000) / n;
    };
    const med = (xs: number[]) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const out: Record<string, unknown> = { images: IMAGES, date: new Date().toISOString() };
    for (const memo of [false, true]) {
      const dt = deps(memo), dp = deps(memo);
      await round(dt, tagBodies, 10_000); await round(dp, pinBodies, 10_000);
      const t: number[] = [], p: number[] = [];
      for (let i = 0; i < 7; i++) { t.push(await round(dt, tagBodies, 20_000)); p.push(await round(dp, pinBodies, 20_000)); }
      out[memo ? "withPlanMemo" : "withoutPlanMemo"] = { tagsUs: +med(t).toFixed(2), digestLinksUs: +med(p).toFixed(2), ratio: +(med(p) / med(t)).toFixed(3), tagRounds: t.map((x) => +x.toFixed(2)), digestRounds: p.map((x) => +x.toFixed(2)) };
    }
    out.linkCacheEntries = stack.links.cacheSize;
    await stack.destroy();
    return out as unknown as DigestLinksResult;
  } finally { await reg.stop(); }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const out = await digestLinksBench();
  console.log(JSON.stringify(out, null, 2));
}
