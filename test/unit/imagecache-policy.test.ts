import { describe, expect, it } from "vitest";
import { ImageCacheIndex, type ImageCacheSpec } from "../../src/imagecache/policy.js";
import { compileConfig } from "../../src/config/config.js";
import { plan, type PlanInput } from "../../src/mutate/plan.js";
import { applyPlan } from "../../src/mutate/patch.js";

const NOW = Date.parse("2026-11-22T12:00:00Z");
const DAY = 86_400_000;
const D = "sha256:" + "c".repeat(64);

function cache(name: string, images: string[], o: Partial<ImageCacheSpec> = {}): ImageCacheSpec {
  return { name, images, created: NOW - DAY, size: 20, retentionDays: 0, imcId: `imc-${name}`, phase: "Ready", ...o };
}

function index(...cs: ImageCacheSpec[]) {
  const i = new ImageCacheIndex();
  for (const c of cs) i.upsert(c);
  return i;
}

const opts = { readyPhase: "Ready", matchMode: "all" as const, latestTag: "match" as const, now: NOW };

describe("image cache auto-match policy (seed 002)", () => {
  it.each([
    ["every image of the pod must be held (init containers included)", [cache("a", ["nginx:1.25"]), cache("b", ["nginx:1.25", "busybox:1.36"])], ["nginx:1.25", "busybox:1.36"], "b"],
    ["a superset cache qualifies; the smaller one wins", [cache("big", ["nginx:1.25", "redis:7"], { size: 50 }), cache("small", ["nginx:1.25", "redis:7", "x/y:1"], { size: 30 })], ["nginx:1.25"], "small"],
    ["same size: the newer one wins", [cache("old", ["nginx:1.25"], { created: NOW - 5 * DAY }), cache("new", ["nginx:1.25"], { created: NOW - DAY })], ["nginx:1.25"], "new"],
    ["full tie: the name decides, for every pod of a ReplicaSet", [cache("b", ["nginx:1.25"]), cache("a", ["nginx:1.25"])], ["nginx:1.25"], "a"],
    ["not Ready caches never match", [cache("pending", ["nginx:1.25"], { phase: "Pending", size: 20 }), cache("ok", ["nginx:1.25"], { size: 40 })], ["nginx:1.25"], "ok"],
    ["a cache without imcId never matches", [cache("noid", ["nginx:1.25"], { imcId: undefined })], ["nginx:1.25"], undefined],
    ["expired caches never match", [cache("exp", ["nginx:1.25"], { retentionDays: 7, created: NOW - 8 * DAY })], ["nginx:1.25"], undefined],
    ["retention 0 is forever", [cache("forever", ["nginx:1.25"], { retentionDays: 0, created: NOW - 4000 * DAY })], ["nginx:1.25"], "forever"],
    ["Docker Hub short names match their full form", [cache("hub", ["docker.io/library/nginx:latest"])], ["nginx"], "hub"],
    ["index.docker.io and library/ are the same image", [cache("hub", ["index.docker.io/library/redis:7"])], ["redis:7"], "hub"],
    ["a registry port is part of the name, not a tag", [cache("p", ["registry.example.com:5000/app:1"])], ["registry.example.com:5000/app:1"], "p"],
    ["a different port is a different image", [cache("p", ["registry.example.com:5000/app:1"])], ["registry.example.com:5001/app:1"], undefined],
    ["a different tag is a different image", [cache("t", ["nginx:1.25"])], ["nginx:1.26"], undefined],
    ["a digest reference only matches a cache that lists the digest", [cache("tag", ["nginx:1.25"]), cache("dig", [`nginx@${D}`], { size: 99 })], [`nginx:1.25@${D}`], "dig"],
    ["a tag+digest entry in the cache matches the tag too", [cache("both", [`nginx:1.25@${D}`])], ["nginx:1.25"], "both"],
    ["duplicate images in the pod count once", [cache("a", ["nginx:1.25"])], ["nginx:1.25", "docker.io/library/nginx:1.25"], "a"],
  ])("%s", (_name, caches, podImages, expected) => {
    const r = index(...caches).match(podImages, opts);
    expect(r.kind === "matched" ? r.cache.name : undefined).toBe(expected);
  });

  it("`latest` can be refused, since a latest cache may be stale", () => {
    const i = index(cache("l", ["nginx:latest", "redis:7"]));
    expect(i.match(["nginx", "redis:7"], { ...opts, latestTag: "skip" })).toMatchObject({ kind: "none" });
    expect(i.match(["nginx", "redis:7"], opts)).toMatchObject({ kind: "matched" });
    expect(i.match(["nginx", "redis:7"], { ...opts, latestTag: "skip", matchMode: "most" })).toMatchObject({ kind: "matched", covered: ["docker.io/library/redis:7"] });
  });

  it("matchMode most: most images covered first, then size", () => {
    const i = index(cache("one", ["a/a:1"], { size: 20 }), cache("two", ["a/a:1", "b/b:1"], { size: 90 }));
    const r = i.match(["a/a:1", "b/b:1", "c/c:1"], { ...opts, matchMode: "most" });
    expect(r).toMatchObject({ kind: "matched", uncovered: ["docker.io/c/c:1"] });
    expect(r.kind === "matched" && r.cache.name).toBe("two");
  });

  it("upsert replaces, remove forgets, ids are indexed", () => {
    const i = index(cache("a", ["nginx:1.25"]));
    i.upsert(cache("a", ["redis:7"]));
    expect(i.match(["nginx:1.25"], opts).kind).toBe("none");
    expect(i.byId("imc-a")!.name).toBe("a");
    i.remove("a");
    expect(i.size).toBe(0);
    expect(i.byId("imc-a")).toBeUndefined();
  });
});

describe("image cache in the plan", () => {
  const config = compileConfig({ imageCache: { enabled: true } });
  const pod = (ann?: Record<string, string>) => ({
    apiVersion: "v1", kind: "Pod",
    metadata: { generateName: "w-", namespace: "default", ...(ann ? { annotations: ann } : {}) },
    spec: { initContainers: [{ name: "i", image: "busybox:1.36" }], containers: [{ name: "c", image: "nginx:1.25" }] },
  });
  const caches = index(cache("web", ["nginx:1.25", "busybox:1.36"], { imcId: "imc-web1" }), cache("partial", ["nginx:1.25"], { size: 10 }));
  const run = (p: ReturnType<typeof pod>, cfg = config) => {
    const input: PlanInput = { pod: p, namespace: "default", operation: "CREATE" };
    const out = plan(input, { lookups: new Map(), imageCaches: caches, now: NOW }, cfg);
    return { out, patched: applyPlan(p, out) };
  };

  it("writes the chosen cache id and records why", () => {
    const { out, patched } = run(pod());
    expect(patched.metadata!.annotations!["eks.tke.cloud.tencent.com/use-image-cache"]).toBe("imc-web1");
    expect(JSON.parse(patched.metadata!.annotations!["apparate.io/image-cache-match"]!)).toMatchObject({ cache: "web", imcId: "imc-web1", images: 2, sizeGiB: 20, ageDays: 1 });
    expect(patched.metadata!.labels!["apparate.io/image-cache"]).toBe("used");
    expect(out.warnings.join()).toContain("imc-web1");
  });

  it("`auto` is resolved to the id; write: auto leaves the choice to the platform", () => {
    expect(run(pod({ "eks.tke.cloud.tencent.com/use-image-cache": "auto" })).patched.metadata!.annotations!["eks.tke.cloud.tencent.com/use-image-cache"]).toBe("imc-web1");
    const cfg = compileConfig({ imageCache: { enabled: true, write: "auto" } });
    expect(run(pod(), cfg).patched.metadata!.annotations!["eks.tke.cloud.tencent.com/use-image-cache"]).toBe("auto");
  });

  it("a manual imc-xxx is never overwritten; one that is not ready gets a warning", () => {
    const ok = run(pod({ "eks.tke.cloud.tencent.com/use-image-cache": "imc-partial" }));
    expect(ok.patched.metadata!.annotations!["eks.tke.cloud.tencent.com/use-image-cache"]).toBe("imc-partial");
    expect(ok.out.imageCache!.result).toBe("manual");
    const bad = run(pod({ "eks.tke.cloud.tencent.com/use-image-cache": "imc-gone" }));
    expect(bad.patched.metadata!.annotations!["eks.tke.cloud.tencent.com/use-image-cache"]).toBe("imc-gone");
    expect(bad.out.imageCache!.result).toBe("manual-not-ready");
    expect(bad.out.warnings.join()).toContain("imc-gone is not a ready image cache");
  });

  it("no match: no annotation, a warning, the missed label", () => {
    const p = pod();
    p.spec.containers[0]!.image = "nginx:9";
    const { out, patched } = run(p);
    expect(patched.metadata!.annotations?.["eks.tke.cloud.tencent.com/use-image-cache"]).toBeUndefined();
    expect(patched.metadata!.labels!["apparate.io/image-cache"]).toBe("missed");
    expect(out.imageCache!.result).toBe("missed");
  });
});
