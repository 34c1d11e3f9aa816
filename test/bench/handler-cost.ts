// The admission handler alone, in-process (no HTTP, no TLS), with and without the plan
// memo, on replicas of the benchmark pod (new name and uid each review): alternating
// rounds, medians. Load on a shared machine moves both alike; the ratio is the figure.
//   node --import tsx test/bench/handler-cost.ts
import { pino } from "pino";
import { type Answer, handleReview, type HandlerDeps } from "../../src/admission/handler.js";
import { PlanMemo } from "../../src/admission/plan-memo.js";
import { compileConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import type { RegistryClient } from "../../src/registry/client.js";
import { TagResolver } from "../../src/registry/resolver.js";
import { review } from "../support/webhook.js";
import { benchPod } from "./bench-pod.js";

const REG = "registry.example.com:5000";
const client = { checkManifest: async () => ({ result: { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json" }, registryFault: false }) } as unknown as RegistryClient;

function deps(memo: boolean): HandlerDeps {
  const config = compileConfig({ acceleration: { registries: [REG] }, rewrite: { registries: { "docker.io": "mirror.ccs.tencentyun.com" } } });
  const lookup = new TagResolver(client, { positiveTtlMs: 600_000, negativeTtlMs: 30_000, unknownBackoffMs: 5000, jitter: 0.1, maxEntries: 10_000, breakerFailures: 5, breakerCooldownMs: 30_000 });
  const logger = createLogger({ destination: pino.destination({ dest: "/dev/null", sync: true }) });
  return { config, lookup, logger, metrics: new Metrics(), ...(memo ? { planMemo: new PlanMemo<Answer>() } : {}) };
}

const pod = benchPod(REG);
const bodies = Array.from({ length: 1000 }, (_, i) => JSON.parse(JSON.stringify(review({ ...pod, metadata: { ...pod.metadata, name: `shop-7f9d6c5b8-${i}` } }, { uid: `uid-${i}` }))));

async function round(d: HandlerDeps, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await handleReview(bodies[i % bodies.length], d);
  return ((performance.now() - t0) * 1000) / n;
}

async function main(): Promise<void> {
  const withMemo = deps(true), without = deps(false);
  await round(withMemo, 20_000); await round(without, 20_000);
  const a: number[] = [], b: number[] = [];
  for (let i = 0; i < 7; i++) { a.push(await round(withMemo, 30_000)); b.push(await round(without, 30_000)); }
  const med = (xs: number[]) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  console.log(JSON.stringify({ memoUs: med(a), noMemoUs: med(b), ratio: med(a) / med(b), memoRounds: a.map((x) => +x.toFixed(2)), noMemoRounds: b.map((x) => +x.toFixed(2)) }));
}
void main();
