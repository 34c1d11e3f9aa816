// The plan memo (src/admission/plan-memo.ts): pods of one template are planned once,
// and a remembered answer is never served once a fact it was made from has changed.
// Every case compares the memoised handler with a fresh one (no memo) on the same
// review, and checks whether the memo was used, so that each could fail both ways.
import { Writable } from "node:stream";
import fc from "fast-check";
import { parse as parseYaml } from "yaml";
import { readFileSync } from "node:fs";
import { describe, expect, it, vi } from "vitest";
import { type Answer, handleReview, type HandlerDeps } from "../../src/admission/handler.js";
import { PlanMemo } from "../../src/admission/plan-memo.js";
import type { AdmissionResponseBody } from "../../src/admission/review.js";
import { compileConfig, type Config } from "../../src/config/config.js";
import { formatReference, type ImageReference } from "../../src/image/reference.js";
import { ImageCacheIndex } from "../../src/imagecache/policy.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import type { RegistryClient } from "../../src/registry/client.js";
import type { TagLookup } from "../../src/registry/resolver.js";
import { TagResolver } from "../../src/registry/resolver.js";
import type { LookupResult } from "../../src/registry/result.js";
import { review } from "../support/webhook.js";

const REG = "registry.example.com:5000";
const EXISTS: LookupResult = { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json" };
const DAY = 86_400_000;
const T0 = Date.parse("2026-12-01T00:00:00Z");

/**
 * The resolver's cache as the handler sees it (TagLookup): answers by accelerated
 * reference, replaced by new objects when "the registry" answers differently.
 */
class RegistryAnswers implements TagLookup {
  readonly answers = new Map<string, LookupResult>();
  lookups = 0;
  constructor(private readonly fallback: LookupResult = EXISTS) {}
  peek(ref: ImageReference): LookupResult | undefined { return this.answers.get(formatReference(ref)); }
  async lookup(ref: ImageReference): Promise<LookupResult> {
    this.lookups++;
    const key = formatReference(ref);
    let a = this.answers.get(key);
    if (!a) { a = { ...this.fallback }; this.answers.set(key, a); }
    return a;
  }
}

const quiet = createLogger({ destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

function depsOf(config: Config, lookup: TagLookup, extra: Partial<HandlerDeps> = {}): HandlerDeps {
  return { config, lookup, logger: quiet, metrics: new Metrics(), now: () => T0, ...extra };
}

/** A memo whose reuse() calls can be counted: which reviews were answered from it. */
function countingMemo(): { memo: PlanMemo<Answer>; reused: () => number } {
  const memo = new PlanMemo<Answer>();
  const spy = vi.spyOn(memo, "reuse");
  return { memo, reused: () => spy.mock.results.filter((r) => r.value !== undefined).length };
}

/** The same pod as the API server would send for another replica: new name, new uid. */
function replica(pod: PodLike, i: number): PodLike {
  return { ...pod, metadata: { ...pod.metadata, name: `${pod.metadata?.generateName ?? "pod-"}${i.toString(36).padStart(5, "x")}`, uid: `uid-${i}` } };
}

async function answer(pod: PodLike, deps: HandlerDeps, uid: string, over: Record<string, unknown> = {}) {
  const r = await handleReview(review(pod, { uid, ...over }), deps);
  expect(r.status).toBe(200);
  return r.body as AdmissionResponseBody;
}

const web = parseYaml(readFileSync("test/fixtures/pod-web.yaml", "utf8")) as PodLike;
const shop: PodLike = {
  apiVersion: "v1", kind: "Pod",
  metadata: { generateName: "shop-7f9d6c5b8-", namespace: "default", labels: { app: "shop" } },
  spec: { containers: [{ name: "web", image: `${REG}/shop/web:2.3.1` }, { name: "worker", image: `${REG}/shop/worker:2.3.1` }] },
};

describe("plan memo: pods that differ only in name and uid", () => {
  const config = compileConfig({ acceleration: { registries: [REG], placement: { mode: "preferred", weight: 50 } }, rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } } });

  it("answers a replica from the memo, with exactly the fresh answer (fixture pod-web.yaml)", async () => {
    const registry = new RegistryAnswers();
    const { memo, reused } = countingMemo();
    const memoised = depsOf(config, registry, { planMemo: memo });
    const fresh = depsOf(config, registry);
    for (let i = 0; i < 5; i++) {
      const pod = replica(web, i);
      expect(await answer(pod, memoised, `u-${i}`)).toEqual(await answer(pod, fresh, `u-${i}`));
    }
    expect(reused()).toBe(4);
    expect(memo.size).toBe(1);
  });

  it("holds for generated pods: every replica's memoised answer equals a fresh one", async () => {
    const images = [`${REG}/team/web:1.4.2`, `${REG}/team/worker`, `${REG}/team/web:1.4.2-apparate`, `${REG}/team/pinned@sha256:${"a".repeat(64)}`, "quay.io/prometheus/node-exporter:v1.8.1", "nginx", "Invalid/UPPER:tag"];
    const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
    const pod = fc.record({
      containers: fc.uniqueArray(fc.record({ name, image: fc.constantFrom(...images) }), { minLength: 1, maxLength: 4, selector: (c) => c.name }),
      nodeSelector: fc.option(fc.constantFrom<Record<string, string>>({ "cloud.tencent.com/apparate": "true" }, { "cloud.tencent.com/apparate": "false" }, { disk: "ssd" }), { nil: undefined }),
      annotations: fc.option(fc.constantFrom<Record<string, string>>({}, { "apparate.io/inject": "false" }, { "prometheus.io/scrape": "true" }), { nil: undefined }),
    }).map(({ containers, nodeSelector, annotations }): PodLike => ({
      apiVersion: "v1", kind: "Pod",
      metadata: { generateName: "gen-", namespace: "default", ...(annotations ? { annotations } : {}) },
      spec: { containers, ...(nodeSelector ? { nodeSelector } : {}) },
    }));
    await fc.assert(fc.asyncProperty(pod, fc.array(fc.constantFrom(EXISTS, { kind: "absent", reason: "not found" } as LookupResult), { minLength: 4, maxLength: 4 }), async (p, answers) => {
      const registry = new RegistryAnswers();
      // Each distinct accelerated reference gets one of the generated answers.
      let n = 0;
      const lookup = registry.lookup.bind(registry);
      registry.lookup = async (ref) => { const k = formatReference(ref); if (!registry.answers.has(k)) registry.answers.set(k, { ...answers[n++ % answers.length]! }); return lookup(ref); };
      const { memo, reused } = countingMemo();
      const memoised = depsOf(config, registry, { planMemo: memo });
      const fresh = depsOf(config, registry);
      for (let i = 0; i < 3; i++) {
        const r = replica(p, i);
        expect(await answer(r, memoised, `u-${i}`)).toEqual(await answer(r, fresh, `u-${i}`));
      }
      expect(reused()).toBe(2);
    }), { numRuns: 60 });
  });

  it("negative control: a pod that differs in what plan() reads (the node selector) is planned again", async () => {
    const { memo, reused } = countingMemo();
    const deps = depsOf(config, new RegistryAnswers(), { planMemo: memo });
    const first = await answer(shop, deps, "a");
    const pinned: PodLike = { ...shop, spec: { ...shop.spec, nodeSelector: { "cloud.tencent.com/apparate": "false" } } };
    const second = await answer(pinned, deps, "a");
    expect(reused()).toBe(0);
    expect(second).toEqual(await answer(pinned, depsOf(config, new RegistryAnswers()), "a"));
    expect(second.response).not.toEqual(first.response);
  });
});

describe("plan memo: never reused after a fact changed", () => {
  const config = compileConfig({ acceleration: { registries: [REG] } });

  it("a registry answer changed: the replica gets the fresh answer (absent: not swapped)", async () => {
    const registry = new RegistryAnswers();
    const { memo, reused } = countingMemo();
    const deps = depsOf(config, registry, { planMemo: memo });
    const before = await answer(replica(shop, 1), deps, "u");
    await answer(replica(shop, 2), deps, "u");
    expect(reused()).toBe(1); // negative control: unchanged facts, reused
    registry.answers.set(`${REG}/shop/worker:2.3.1-apparate`, { kind: "absent", reason: "not found" });
    const after = await answer(replica(shop, 3), deps, "u");
    expect(reused()).toBe(1);
    expect(after).toEqual(await answer(replica(shop, 3), depsOf(config, registry), "u"));
    expect(after).not.toEqual(before);
    expect(JSON.stringify(after)).toContain("worker:2.3.1-apparate not found");
  });

  it("a registry answer expired in the real resolver: asked again, not served from the memo", async () => {
    let answerNow: LookupResult = EXISTS;
    let requests = 0;
    const client = { checkManifest: async () => { requests++; return { result: { ...answerNow }, registryFault: false }; } } as unknown as RegistryClient;
    const resolver = new TagResolver(client, { positiveTtlMs: 40, negativeTtlMs: 40, unknownBackoffMs: 0, jitter: 0, maxEntries: 100, breakerFailures: 5, breakerCooldownMs: 1000 });
    const { memo, reused } = countingMemo();
    const deps = depsOf(config, resolver, { planMemo: memo });
    await answer(replica(shop, 1), deps, "u");
    await answer(replica(shop, 2), deps, "u");
    expect(reused()).toBe(1);
    expect(requests).toBe(2);
    answerNow = { kind: "absent", reason: "not found" };
    await new Promise((r) => setTimeout(r, 60));
    const after = await answer(replica(shop, 3), deps, "u");
    expect(reused()).toBe(1);
    expect(requests).toBe(4);
    expect((after as { response: { patch?: string } }).response.patch).toBeUndefined();
  });

  it("a namespace label changed: the pod is planned again (and an unrelated label does not matter)", async () => {
    const labels: Record<string, Record<string, string>> = { team: { [config.namespaceLabelKey]: config.namespaceLabelValue } };
    const namespaces = { labels: (n: string) => labels[n] };
    const { memo, reused } = countingMemo();
    const pod: PodLike = { ...shop, metadata: { ...shop.metadata, namespace: "team" } };
    const deps = depsOf(config, new RegistryAnswers(), { planMemo: memo, namespaces });
    const enabled = await answer(replica(pod, 1), deps, "u", { namespace: "team" });
    expect((enabled as { response: { patch?: string } }).response.patch).toBeDefined();
    labels.team = { ...labels.team!, owner: "payments" };
    await answer(replica(pod, 2), deps, "u", { namespace: "team" });
    expect(reused()).toBe(1); // negative control: a label plan() does not read
    labels.team = { owner: "payments" };
    const disabled = await answer(replica(pod, 3), deps, "u", { namespace: "team" });
    expect(reused()).toBe(1);
    expect((disabled as { response: { patch?: string } }).response.patch).toBeUndefined();
    expect(disabled).toEqual(await answer(replica(pod, 3), depsOf(config, new RegistryAnswers(), { namespaces }), "u", { namespace: "team" }));
  });

  describe("an image cache changed", () => {
    const icConfig = compileConfig({ acceleration: { registries: [REG] }, imageCache: { enabled: true } });
    const images = [`${REG}/shop/web:2.3.1-apparate`, `${REG}/shop/worker:2.3.1-apparate`];
    const cache = (name: string, size: number, extra: Partial<Parameters<ImageCacheIndex["upsert"]>[0]> = {}) =>
      ({ name, imcId: `imc-${name}`, images, size, created: T0 - 3 * DAY, retentionDays: 0, phase: "Ready", ...extra });
    const chosen = (body: unknown) => {
      const patch = (body as { response: { patch?: string } }).response.patch;
      return patch ? Buffer.from(patch, "base64").toString() : "";
    };

    it("a new, better cache: the replica gets it, as a fresh plan does", async () => {
      const index = new ImageCacheIndex();
      index.upsert(cache("big", 80));
      const { memo, reused } = countingMemo();
      const deps = depsOf(icConfig, new RegistryAnswers(), { planMemo: memo, imageCaches: index });
      expect(chosen(await answer(replica(shop, 1), deps, "u"))).toContain("imc-big");
      await answer(replica(shop, 2), deps, "u");
      expect(reused()).toBe(1); // negative control: same index, reused
      index.upsert(cache("small", 20));
      const after = await answer(replica(shop, 3), deps, "u");
      expect(reused()).toBe(1);
      expect(chosen(after)).toContain("imc-small");
      expect(after).toEqual(await answer(replica(shop, 3), depsOf(icConfig, new RegistryAnswers(), { imageCaches: index }), "u"));
    });

    it("by the clock alone: a cache's retention ends, or its recorded age passes a day", async () => {
      const index = new ImageCacheIndex();
      index.upsert(cache("short", 20, { retentionDays: 4 }));   // expires at T0 + 1 day
      index.upsert(cache("long", 50));
      let now = T0;
      const { memo, reused } = countingMemo();
      const deps = depsOf(icConfig, new RegistryAnswers(), { planMemo: memo, imageCaches: index, now: () => now });
      expect(chosen(await answer(replica(shop, 1), deps, "u"))).toContain("imc-short");
      now = T0 + DAY / 2;
      await answer(replica(shop, 2), deps, "u");
      expect(reused()).toBe(1); // negative control: nothing expired, same age in days
      now = T0 + DAY + 1;
      const after = await answer(replica(shop, 3), deps, "u");
      expect(reused()).toBe(1);
      expect(chosen(after)).toContain("imc-long");
      expect(after).toEqual(await answer(replica(shop, 3), depsOf(icConfig, new RegistryAnswers(), { imageCaches: index, now: () => now }), "u"));
    });
  });

  it("an answer made without a registry answer (deadline) is never remembered", async () => {
    const slow: TagLookup = { lookup: (_r, _c, signal) => new Promise((resolve) => signal.addEventListener("abort", () => resolve({ kind: "unknown", reason: "deadline exceeded" }))) };
    const { memo } = countingMemo();
    const deps = depsOf(compileConfig({ acceleration: { registries: [REG] }, admission: { deadlineMs: 50 } }), slow, { planMemo: memo });
    await answer(shop, deps, "u");
    expect(memo.size).toBe(0);
  });
});
