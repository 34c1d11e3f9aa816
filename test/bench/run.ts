// npm run bench: every benchmark in one run, each against a baseline measured in
// the same run, figures written to bench/results.json and bench/results.md.
import { execFileSync } from "node:child_process";
import { setMaxListeners } from "node:events";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { pino } from "pino";
import { compileConfig } from "../../src/config/config.js";
import { handleReview, type HandlerDeps } from "../../src/admission/handler.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack } from "../../src/registry/stack.js";
import { TagResolver } from "../../src/registry/resolver.js";
import type { RegistryClient } from "../../src/registry/client.js";
import { parseReference } from "../../src/image/reference.js";
import { ImageCacheIndex, type ImageCacheSpec } from "../../src/imagecache/policy.js";
import { pushImage, startRegistry } from "../support/registry.js";
import { hang, startFaultServer } from "../support/faults.js";
import { review } from "../support/webhook.js";
import { lazyLoadingBench, realisticLazyBench } from "./lazy.js";
import { converterBench } from "./converter.js";
import { convertBench, manyFilesBench } from "./convert.js";
import { admissionCost, METHOD as ADMISSION_COST_METHOD } from "./admission-cost.js";
import { benchPod } from "./bench-pod.js";
import { OBSERVER_METHOD, observerMemoryBench } from "./observer.js";
import { LOOKUP_MEMORY_METHOD, lookupMemoryBench } from "./lookup-memory.js";
import { AVAILABILITY_METHOD, availabilityBench } from "./availability.js";
import { digestLinksBench } from "./digest-links.js";

// As in production (pino's synchronous sonic-boom at info level), into /dev/null.
const quietLogger = createLogger({ destination: pino.destination({ dest: "/dev/null", sync: true }) });
const results: Record<string, unknown> = {};
const rows: Array<[string, string, string, string]> = [];
/** Method paragraphs of the cases that ran (added to results.md). */
const methods: string[] = [];
const row = (name: string, value: string, baseline: string, target: string) => { rows.push([name, value, baseline, target]); console.log(`${name}: ${value} (baseline ${baseline}; target ${target})`); };

async function counter(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (metric?.values ?? []).filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, string>)[k] === val)).reduce((a, v) => a + v.value, 0);
}



// With two CPUs or more, this process is pinned to CPU 0 while the admission figures are
// taken (admission-cost.ts pins its servers there and the load client to CPU 1).
const PIN = cpus().length >= 2 && (() => { try { execFileSync("taskset", ["-p", "-c", "0", String(process.pid)], { stdio: "ignore" }); return true; } catch { return false; } })();
function unpin(): void {
  if (PIN) execFileSync("taskset", ["-p", "-c", `0-${cpus().length - 1}`, String(process.pid)], { stdio: "ignore" });
}

async function admissionBench() {
  const reg = await startRegistry();
  try {
    for (const n of ["migrate", "web", "worker"]) await pushImage(reg.url, `shop/${n}`, "2.3.1-apparate", "oci-index");
    const config = compileConfig({ acceleration: { registries: [reg.host] }, registry: { plainHttp: [reg.host] }, rewrite: { registries: { "docker.io": "mirror.ccs.tencentyun.com" } } });
    const metrics = new Metrics();
    const stack = createRegistryStack(config, metrics);
    const deps: HandlerDeps = { config, lookup: stack.resolver, logger: quietLogger, metrics };
    const warm = await handleReview(review(benchPod(reg.host)), deps);
    if (warm.status !== 200) throw new Error("warm-up failed");
    // The handler alone, in-process, on the same review: what apparate adds before HTTP and TLS.
    const reviewText = JSON.stringify(review(benchPod(reg.host)));
    const parsedBodies = Array.from({ length: 1000 }, () => JSON.parse(reviewText));
    for (let i = 0; i < 20_000; i++) await handleReview(parsedBodies[i % 1000], deps);
    const H = 100_000;
    const h0 = performance.now();
    for (let i = 0; i < H; i++) await handleReview(parsedBodies[i % 1000], deps);
    const handlerUs = ((performance.now() - h0) * 1000) / H;
    await stack.close();
    results.admission = { ...(results.admission as object), handlerUsInProcess: handlerUs };
    row("admission handler alone, in-process (no HTTP, no TLS)", `${handlerUs.toFixed(1)} µs/review`, "—", "—");

    // A burst of 1,000 same-image pods against a cold cache: registry requests.
    const bm = new Metrics();
    const bstack = createRegistryStack(config, bm);
    const bdeps: HandlerDeps = { config, lookup: bstack.resolver, logger: quietLogger, metrics: bm };
    const pod = benchPod(reg.host);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => handleReview(review(pod, { uid: `burst-${i}` }), bdeps)));
    const reqs = await counter(bm, "apparate_registry_requests_total", { kind: "manifest" });
    await bstack.close();
    results.registryBurst = { pods: 1000, distinctImagesChecked: 3, registryRequests: reqs, perImage: reqs / 3 };
    row("registry requests, burst of 1,000 same-image pods", `${reqs / 3} per image (${reqs} for 3 images)`, "1,000 per image without coalescing", "1 per image");
  } finally {
    await reg.stop();
  }
}

async function hangingRegistryBench() {
  const hung = await startFaultServer(hang);
  try {
    const budget = 500;
    const config = compileConfig({ acceleration: { registries: [hung.host] }, registry: { plainHttp: [hung.host], requestTimeoutMs: 5000, unknownBackoffSeconds: 0, breakerFailures: 1000 }, admission: { deadlineMs: budget } });
    const metrics = new Metrics();
    const stack = createRegistryStack(config, metrics);
    const deps: HandlerDeps = { config, lookup: stack.resolver, logger: quietLogger, metrics };
    const lat: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await handleReview(review(benchPod(hung.host, `-${i}`)), deps);
      lat.push(performance.now() - t0);
    }
    await stack.close();
    const worst = Math.max(...lat);
    results.hangingRegistry = { budgetMs: budget, worstMs: worst, meanMs: lat.reduce((a, b) => a + b, 0) / lat.length };
    row("worst admission latency, registry hangs", `${worst.toFixed(1)} ms`, `budget ${budget} ms`, "budget + a few ms");
  } finally {
    await hung.stop();
  }
}

function imageCacheBench() {
  const names = Array.from({ length: 2000 }, (_, i) => `registry.example.com/team${i % 50}/app${i}`);
  const tags = ["1.0", "1.1", "2.0", "latest"];
  let seed = 42;
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
  const caches: ImageCacheSpec[] = [];
  for (let i = 0; i < 10_000; i++) {
    const n = 1 + Math.floor(rnd() * 8);
    const images = Array.from({ length: n }, () => `${names[Math.floor(rnd() * names.length)]}:${tags[Math.floor(rnd() * tags.length)]}`);
    caches.push({ name: `imc-${i}`, images, created: Date.now() - Math.floor(rnd() * 1e9), size: 20 + Math.floor(rnd() * 80), retentionDays: 0, imcId: `imc-${i.toString(36)}`, phase: "Ready" });
  }
  const index = new ImageCacheIndex();
  for (const c of caches) index.upsert(c);
  // Pods of 5 images: half taken from a cache's list (a likely hit), half random.
  const pods = Array.from({ length: 1000 }, (_, i) => {
    const base = caches[i * 7]!.images.slice(0, 5);
    while (base.length < 5) base.push(`${names[Math.floor(rnd() * names.length)]}:${tags[Math.floor(rnd() * tags.length)]}`);
    return base;
  });
  const opts = { readyPhase: "Ready", matchMode: "all" as const, latestTag: "match" as const, now: Date.now() };
  for (let i = 0; i < 20_000; i++) index.match(pods[i % pods.length]!, opts);
  const N = 200_000;
  let hits = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) if (index.match(pods[i % pods.length]!, opts).kind === "matched") hits++;
  const us = ((performance.now() - t0) * 1000) / N;
  // Baseline: the obvious scan over every cache.
  const scan = (imgs: string[]) => caches.filter((c) => imgs.every((x) => c.images.includes(x)));
  const M = 500;
  const t1 = performance.now();
  for (let i = 0; i < M; i++) scan(pods[i % pods.length]!);
  const scanUs = ((performance.now() - t1) * 1000) / M;
  results.imageCacheMatch = { caches: 10_000, podImages: 5, usPerMatch: us, hitRate: hits / N, linearScanUsPerMatch: scanUs };
  row("image-cache match, 10,000 caches, 5-image pod", `${us.toFixed(2)} µs/match`, `${scanUs.toFixed(0)} µs/match (linear scan)`, "≤ 50 µs");
  return index;
}

async function memoryBench() {
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.memoryUsage().rss;
  const index = imageCacheBenchIndex();
  const fake = { checkManifest: async () => ({ result: { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json", digest: "sha256:" + "a".repeat(64) }, registryFault: false }) } as unknown as RegistryClient;
  const resolver = new TagResolver(fake, { positiveTtlMs: 600_000, negativeTtlMs: 30_000, unknownBackoffMs: 5000, jitter: 0.1, maxEntries: 100_000, breakerFailures: 5, breakerCooldownMs: 30_000 });
  const sig = new AbortController().signal;
  setMaxListeners(0, sig);
  for (let i = 0; i < 100_000; i += 1000) {
    await Promise.all(Array.from({ length: 1000 }, (_, j) => resolver.lookup(parseReference(`registry.example.com/team${(i + j) % 97}/app${i + j}:v${(i + j) % 13}-apparate`), [], sig)));
  }
  (globalThis as { gc?: () => void }).gc?.();
  const after = process.memoryUsage().rss;
  results.memory = { imageCaches: index.size, cachedLookups: resolver.cacheSize, rssBeforeMiB: before / 2 ** 20, rssAfterMiB: after / 2 ** 20, deltaMiB: (after - before) / 2 ** 20 };
  row("resident memory, 10,000 image caches + 100,000 cached lookups", `+${((after - before) / 2 ** 20).toFixed(0)} MiB (RSS ${(after / 2 ** 20).toFixed(0)} MiB)`, `RSS ${(before / 2 ** 20).toFixed(0)} MiB before`, "bounded (LRU 100,000)");
}

let memoIndex: ImageCacheIndex | undefined;
function imageCacheBenchIndex(): ImageCacheIndex {
  memoIndex ??= imageCacheBench();
  return memoIndex;
}

async function main() {
  const only = process.argv.slice(2);
  const want = (n: string) => only.length === 0 || only.includes(n);
  if (want("admission")) {
    // Fair admission cost (issue 19): child-process servers, fixed rate, same-response baseline.
    const cost = await admissionCost();
    results.admission = { ...(results.admission as object), ...cost.json };
    rows.push(...cost.rows);
    await admissionBench();
  }
  unpin();
  if (want("hang")) await hangingRegistryBench();
  if (want("imagecache")) imageCacheBenchIndex();
  if (want("memory")) await memoryBench();
  if (want("lookup-memory")) {
    const r = await lookupMemoryBench();
    results.lookupMemory = r;
    methods.push(LOOKUP_MEMORY_METHOD);
    for (const x of r.rows) row(`lookup cache: RSS after ${x.lookups.toLocaleString("en")} distinct images (--max-old-space-size=256)`, `${x.rssMiB.toFixed(0)} MiB RSS, heap ${x.heapMiB.toFixed(0)} MiB, ${x.cached.toLocaleString("en")} cached`, `${r.before.rssMiB.toFixed(0)} MiB RSS before (heap ${r.before.heapMiB.toFixed(0)} MiB)`, `within the 512 Mi limit with headroom: ${x.rssMiB <= 384 ? "✓" : "✗"} (LRU ${r.maxEntries.toLocaleString("en")})`);
  }
  if (want("observer")) {
    const r = await observerMemoryBench();
    results.observerMemory = r;
    methods.push(OBSERVER_METHOD);
    for (const x of r) row(`observer at ${x.pods.toLocaleString("en")} pods, ${x.nodes.toLocaleString("en")} nodes, ${x.state === "starting" ? "every pod starting (all kept)" : "every pod Ready before the watermark"}: Lease holder`, `heap ${x.holder.heapMiB.toFixed(1)} MiB (+${(x.holder.heapMiB - x.holder.heapBeforeMiB).toFixed(1)}, ${x.holder.heapBytesPerPod.toFixed(0)} B/pod), RSS ${x.holder.rssMiB.toFixed(0)} MiB; ${x.podsKept.toLocaleString("en")} pods kept, synced in ${x.syncSeconds.toFixed(1)} s`, `the other replica: heap ${x.other.heapMiB.toFixed(1)} MiB, RSS ${x.other.rssMiB.toFixed(0)} MiB, ${x.other.podsKept} pods kept; full informers ~6.9 KiB/pod (issue 25)`, `under the 256 MiB heap and 512 Mi limit: ${x.holder.heapMiB < 256 && x.holder.rssMiB < 512 ? "✓" : "✗"}`);
  }
  if (want("availability")) {
    const r = await availabilityBench();
    results.availability = r;
    methods.push(AVAILABILITY_METHOD);
    const none = r.rounds.find((x) => x.attack === "none")!;
    for (const x of r.rounds.filter((y) => y.attack !== "none")) row(`victim at ${r.rate} reviews/s while ${x.attack}`, `p50 ${x.p50.toFixed(2)} ms, p99 ${x.p99.toFixed(2)} ms, max ${x.max.toFixed(1)} ms, ${x.errors} errors of ${x.requests + x.errors}`, `no attack: p99 ${none.p99.toFixed(2)} ms, max ${none.max.toFixed(1)} ms, ${none.errors} errors`, `p99 within the ${r.deadlineMs} ms deadline, no error: ${x.p99 < r.deadlineMs && x.errors === 0 ? "✓" : "✗"}`);
  }
  if (want("digest-links")) {
    const r = await digestLinksBench();
    results.digestLinks = r;
    for (const [k, x] of [["without the plan memo", r.withoutPlanMemo], ["with the plan memo", r.withPlanMemo]] as const) {
      row(`admission, ${r.images} digest-pinned images, links cached (${k}), in-process`, `${x.digestLinksUs.toFixed(1)} µs/review`, `${x.tagsUs.toFixed(1)} µs/review, the same images by tag`, `about the cost of tags: ${x.ratio.toFixed(2)}× ${x.ratio <= 1.5 ? "✓" : "✗"}`);
    }
  }
  if (want("lazy")) {
    try {
      const lazy = await lazyLoadingBench();
      results.lazyLoading = lazy;
      row("lazy loading: pull to first exec", `${lazy.apparate.seconds.toFixed(2)} s (-apparate)`, `${lazy.original.seconds.toFixed(2)} s (original)`, `≥ 5× faster: ${lazy.speedup.toFixed(1)}×`);
      row("lazy loading: bytes fetched", `${(lazy.apparate.bytesFetched / 2 ** 20).toFixed(2)} MiB (-apparate)`, `${(lazy.original.bytesFetched / 2 ** 20).toFixed(2)} MiB (original); bytes read ${(lazy.bytesRead / 2 ** 20).toFixed(2)} MiB`, `within 2× of bytes read: ${(lazy.apparate.bytesFetched / lazy.bytesRead).toFixed(2)}×`);
    } catch (err) {
      results.lazyLoading = { skipped: String(err) };
      console.log(`lazy loading benchmark skipped: ${String(err)}`);
    }
  }
  if (want("lazy") || want("lazy-realistic")) {
    try {
      const r = await realisticLazyBench();
      results.lazyLoadingRealistic = r;
      const m = r.median;
      row(`lazy loading, python3 from ${r.image.packages} Debian packages (${r.image.compressedMiB.toFixed(0)} MiB): pull to first output`, `${m.apparatePrefetch.toFixed(2)} s apparate --prefetch, ${m.apparate.toFixed(2)} s apparate`, `${m.ctrRemoteOptimized.toFixed(2)} s ctr-remote optimize, ${m.ctrRemote.toFixed(2)} s ctr-remote, ${m.fullPull.toFixed(2)} s full pull`, `prefetch ≤ ctr-remote optimize: ${r.prefetchVsCtrRemoteOptimized <= 1 ? "✓" : "✗"} (${r.prefetchVsCtrRemoteOptimized.toFixed(2)}×); ${r.fullPullOverApparatePrefetch.toFixed(1)}× faster than a full pull`);
      const c = r.conversionSeconds;
      const theirs = c.ctrRemotePull + c.ctrRemote + c.ctrRemotePush;
      row("convert python3 image: wall time", `${c.apparate.toFixed(1)} s apparate, registry to registry (${c.apparatePrefetch.toFixed(1)} s with --prefetch)`, `${theirs.toFixed(1)} s ctr-remote pull ${c.ctrRemotePull.toFixed(1)} + convert ${c.ctrRemote.toFixed(1)} + push ${c.ctrRemotePush.toFixed(1)}; optimize ${c.ctrRemoteOptimize.toFixed(1)} s`, `≤ ctr-remote: ${c.apparate <= theirs ? "✓" : "✗"}`);
    } catch (err) {
      results.lazyLoadingRealistic = { skipped: String(err) };
      console.log(`realistic lazy loading benchmark skipped: ${String(err)}`);
    }
  }
  if (want("convert") || want("convert-files")) {
    try {
      const rows = await manyFilesBench([100_000, 1_000_000]);
      results.conversionManyFiles = rows;
      for (const r of rows) {
        const theirs = `${r.ctrRemote.convertSeconds.toFixed(1)} s, ${r.ctrRemote.peakRssMiB.toFixed(0)} MiB peak RSS (ctr-remote convert)`;
        row(`convert: one layer of ${r.files.toLocaleString("en")} files`, `${r.apparate.seconds.toFixed(1)} s, ${r.apparate.peakRssMiB.toFixed(0)} MiB peak RSS`, theirs, `RSS ≤ 256 MiB: ${r.apparate.peakRssMiB <= 256 ? "✓" : "✗"}`);
      }
    } catch (err) {
      results.conversionManyFiles = { skipped: String(err) };
      console.log(`many-files conversion benchmark skipped: ${String(err)}`);
    }
  }
  if (want("convert")) {
    try {
      const c = await convertBench();
      results.conversion = c;
      row(`convert: ${c.image.compressedMiB.toFixed(0)} MiB image, ${c.image.layers} layers, wall time`, `${c.apparate.seconds.toFixed(1)} s (apparate convert, registry to registry)`, `${c.ctrRemote.seconds.toFixed(1)} s ctr-remote pull+convert+push (convert alone ${c.ctrRemote.convertSeconds.toFixed(1)} s)`, `≤ ctr-remote: ${c.apparate.seconds <= c.ctrRemote.seconds ? "✓" : "✗"}`);
      row("convert: output size", `${c.apparate.outputMiB.toFixed(1)} MiB`, `${c.ctrRemote.outputMiB.toFixed(1)} MiB (ctr-remote)`, `within 5 %: ${c.sizeDifferencePercent.toFixed(2)} % ${Math.abs(c.sizeDifferencePercent) <= 5 ? "✓" : "✗"}`);
      row(`convert: peak RSS, ${c.oneGiBLayer.uncompressedMiB} MiB layer`, `${c.oneGiBLayer.peakRssMiB.toFixed(0)} MiB (${c.oneGiBLayer.seconds.toFixed(1)} s)`, `${c.ctrRemote.peakRssMiB.toFixed(0)} MiB ctr-remote convert on the image above`, `≤ 150 MiB: ${c.oneGiBLayer.peakRssMiB <= 150 ? "✓" : "✗"}`);
    } catch (err) {
      results.conversion = { skipped: String(err) };
      console.log(`conversion benchmark skipped: ${String(err)}`);
    }
  }
  if (want("converter")) {
    try {
      const c = await converterBench();
      results.converter = c;
      row("converter: push to -apparate available (50 MiB)", `${c.pushToAvailableSeconds.toFixed(2)} s`, `${c.engineSeconds.toFixed(2)} s (the engine alone, same size)`, `≤ engine + 2 s: ${c.overheadSeconds <= 2 ? "met" : "missed"}`);
      row("converter: 20 pushes at once", `${c.burst.converted} converted, ${c.burst.engineCalls} engine calls, at most ${c.burst.maxRunning} at once, ${c.burst.seconds.toFixed(1)} s`, `concurrency ${c.burst.concurrency}`, "none lost or duplicated, bounded by the concurrency");
    } catch (err) {
      results.converter = { skipped: String(err) };
      console.log(`converter benchmark skipped: ${String(err)}`);
    }
  }
  const machine = { pinned: PIN, cpus: cpus().length, cpu: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform} ${process.arch}` };
  const date = new Date().toISOString();
  mkdirSync("bench", { recursive: true });
  // Some cases only (`npm run bench -- observer availability`): merged into the figures
  // of earlier runs, which are kept; rows of the same name are replaced.
  const partial = only.length > 0 && existsSync("bench/results.json");
  const prev = partial ? JSON.parse(readFileSync("bench/results.json", "utf8")) as { results?: Record<string, unknown> } : {};
  writeFileSync("bench/results.json", JSON.stringify({ date, machine, ...(partial ? { lastCases: only } : {}), results: { ...(prev.results ?? {}), ...results } }, null, 2) + "\n");
  const prevMd = partial && existsSync("bench/results.md") ? readFileSync("bench/results.md", "utf8").split("\n") : [];
  const names = new Set(rows.map((r) => r[0]));
  const keptRows = prevMd.filter((l) => l.startsWith("| ") && !l.startsWith("| benchmark |") && !names.has(l.slice(2).split(" | ")[0]!));
  const prevMethods = prevMd.slice(prevMd.findIndex((l, i) => i > 0 && l === "" && prevMd[i - 1]!.startsWith("|")) + 1).filter((l) => l !== "" && !methods.includes(l));
  const tail = partial && prevMethods.length > 0 ? prevMethods.flatMap((m) => [m, ""]) : [ADMISSION_COST_METHOD, "", "Method (the rest): the in-process handler figure is 100,000 reviews after 20,000 warm-up ones. Lazy loading runs a registry in a network namespace behind a veth link shaped with `tc` (rate and delay in `results.json`), containerd 1.6 and the stargz snapshotter; \"pull to first exec\" is from the start of the pull to the output of `cat /www/index.html` in a new container; bytes fetched are counted at an HTTP proxy in front of the registry (blobs only).", ""];
  const md = [`# apparate benchmarks`, "", `${date} — ${machine.cpus} × ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}.`, `Produced by \`npm run bench\`${partial ? ` (this run: ${only.join(", ")}; the other rows are from earlier runs)` : ""}; each figure is compared with a baseline measured in the same run.`, "",
    "| benchmark | apparate | baseline | target |", "|---|---|---|---|", ...keptRows, ...rows.map((r) => `| ${r.join(" | ")} |`), "",
    ...tail, ...methods.flatMap((m) => [m, ""])];
  writeFileSync("bench/results.md", md.join("\n"));
  console.log("wrote bench/results.json and bench/results.md");
  process.exit(0);
}

void main();
