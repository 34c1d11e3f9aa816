import { describe, expect, it, vi } from "vitest";
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

  it("the core never reads the clock: expiry is judged by facts.now alone", () => {
    const spy = vi.spyOn(Date, "now").mockImplementation(() => { throw new Error("the decision core read the clock"); });
    try {
      const p = pod();
      const input: PlanInput = { pod: p, namespace: "default", operation: "CREATE" };
      const expiring = index(cache("web", ["nginx:1.25", "busybox:1.36"], { imcId: "imc-web1", retentionDays: 3 }));
      // Two days after creation the cache is usable; ten days after, it has expired.
      expect(plan(input, { lookups: new Map(), imageCaches: expiring, now: NOW + DAY }, config).annotations["eks.tke.cloud.tencent.com/use-image-cache"]).toBe("imc-web1");
      expect(plan(input, { lookups: new Map(), imageCaches: expiring, now: NOW + 10 * DAY }, config).annotations["eks.tke.cloud.tencent.com/use-image-cache"]).toBeUndefined();
    } finally {
      spy.mockRestore();
    }
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

// Each test below pins a behaviour a mutation run found unpinned (npm run test:mutation).
describe("image cache policy: what the mutation run found unpinned", () => {
  it("imageKeys: a tag lists one key, a digest one key, tag+digest both (never \"repo:undefined\", never twice)", async () => {
    const { imageKeys } = await import("../../src/imagecache/policy.js");
    expect(imageKeys("nginx:1.25")).toEqual(["docker.io/library/nginx:1.25"]);
    expect(imageKeys(`nginx@${D}`)).toEqual([`docker.io/library/nginx@${D}`]);
    expect(imageKeys(`nginx:1.25@${D}`)).toEqual([`docker.io/library/nginx@${D}`, "docker.io/library/nginx:1.25"]);
    expect(imageKeys("Not A Reference")).toBeUndefined();
  });

  it("a cache's malformed images are set aside by name; its valid images still match", async () => {
    const { toEntry } = await import("../../src/imagecache/policy.js");
    expect(toEntry(cache("m", ["nginx:1.25", "Not A Reference"])).invalidImages).toEqual(["Not A Reference"]);
    expect(toEntry(cache("ok", ["nginx:1.25"])).invalidImages).toEqual([]);
    expect(index(cache("m", ["Not A Reference", "nginx:1.25"])).match(["nginx:1.25"], opts)).toMatchObject({ kind: "matched" });
  });

  it.each([
    ["expires exactly at created + retentionDays", 7 * DAY, false],
    ["one millisecond before that it is usable", 7 * DAY - 1, true],
    ["a cache with a retention period inside it is usable", 6 * DAY, true],
  ])("retention: %s", async (_what, age, usable) => {
    const { isUsable, toEntry } = await import("../../src/imagecache/policy.js");
    expect(isUsable(toEntry(cache("r", ["nginx:1.25"], { retentionDays: 7, created: NOW - age })), "Ready", NOW)).toBe(usable);
  });

  it("rank is a strict order: size, then newer, then name, and 0 only for the same cache", async () => {
    const { rank, toEntry } = await import("../../src/imagecache/policy.js");
    const a = toEntry(cache("a", [])); const b = toEntry(cache("b", []));
    expect(rank(a, b)).toBeLessThan(0);
    expect(rank(b, a)).toBeGreaterThan(0);
    expect(rank(a, a)).toBe(0);
    expect(rank(toEntry(cache("z", [], { size: 1 })), a)).toBeLessThan(0);
    expect(rank(toEntry(cache("z", [], { created: NOW })), a)).toBeLessThan(0);
  });

  it.each(["all", "most"] as const)("matchMode %s: the best cache wins whatever the order the caches arrived in", (matchMode) => {
    const caches = [cache("a", ["nginx:1.25"]), cache("b", ["nginx:1.25"]), cache("c", ["nginx:1.25"], { size: 30 })];
    for (const order of [caches, [...caches].reverse(), [caches[1]!, caches[2]!, caches[0]!]]) {
      const r = index(...order).match(["nginx:1.25"], { ...opts, matchMode });
      expect(r.kind === "matched" && r.cache.name).toBe("a");
    }
  });

  it("all: a small cache holding only some of the pod's images is never chosen, even when it sorts first", () => {
    const i = index(cache("part", ["x/x:1"], { size: 1 }), cache("full", ["x/x:1", "y/y:1"], { size: 50 }), cache("other", ["y/y:1"], { size: 1 }));
    const r = i.match(["x/x:1", "y/y:1"], opts);
    expect(r).toMatchObject({ kind: "matched", covered: ["docker.io/x/x:1", "docker.io/y/y:1"], uncovered: [] });
    expect(r.kind === "matched" && r.cache.name).toBe("full");
  });

  it("most: a not-ready cache covering more is passed over; covered and uncovered are exact", () => {
    const i = index(cache("more", ["x/x:1", "y/y:1"], { phase: "Creating" }), cache("less", ["x/x:1"]));
    const r = i.match(["x/x:1", "y/y:1"], { ...opts, matchMode: "most" });
    expect(r).toMatchObject({ kind: "matched", covered: ["docker.io/x/x:1"], uncovered: ["docker.io/y/y:1"] });
    expect(r.kind === "matched" && r.cache.name).toBe("less");
  });

  it.each([
    ["a pod with no images", [], opts, "pod has no images"],
    ["a malformed pod image, named and cut to 80 characters", ["Bad Ref " + "x".repeat(100)], opts, `image ${JSON.stringify(("Bad Ref " + "x".repeat(100)).slice(0, 80))} is not a valid reference`],
    ["all: an image no cache holds", ["nginx:9"], opts, "no image cache holds docker.io/library/nginx:9"],
    ["all: held only by caches that are not ready", ["redis:7"], opts, "no ready, unexpired image cache holds every image of the pod"],
    ["most: held only by caches that are not ready", ["redis:7"], { ...opts, matchMode: "most" as const }, "no ready, unexpired image cache holds any image of the pod"],
    ["latestTag skip, all: a latest image refuses the match", ["nginx", "redis:7"], { ...opts, latestTag: "skip" as const }, "pod uses :latest (docker.io/library/nginx:latest); a latest cache may be stale (imageCache.latestTag: skip)"],
    ["latestTag skip, most: only latest images", ["nginx"], { ...opts, latestTag: "skip" as const, matchMode: "most" as const }, "pod only uses :latest images (imageCache.latestTag: skip)"],
  ])("the reason given when nothing matches: %s", (_what, images, o, reason) => {
    const i = index(cache("web", ["nginx:1.25", "nginx:latest"]), cache("pending", ["redis:7"], { phase: "Creating" }));
    expect(i.match(images, o)).toEqual({ kind: "none", reason });
  });

  it("latestTag skip with no latest image in the pod matches as usual (negative control)", () => {
    expect(index(cache("web", ["nginx:1.25"])).match(["nginx:1.25"], { ...opts, latestTag: "skip" })).toMatchObject({ kind: "matched" });
  });

  it("most: the cache covering more images wins over a smaller, newer one, whatever the order they arrived in", () => {
    const one = cache("one", ["a/a:1"], { size: 20, created: NOW }); const two = cache("two", ["a/a:1", "b/b:1"], { size: 90 });
    for (const order of [[one, two], [two, one]]) {
      const r = index(...order).match(["a/a:1", "b/b:1"], { ...opts, matchMode: "most" });
      expect(r.kind === "matched" && r.cache.name).toBe("two");
    }
  });

  it("duplicate pod images are covered once", () => {
    expect(index(cache("a", ["nginx:1.25"])).match(["nginx:1.25", "docker.io/library/nginx:1.25"], opts)).toMatchObject({ covered: ["docker.io/library/nginx:1.25"] });
  });

  it("caches sharing an image: each stays indexed; removing one leaves the other matching", () => {
    const i = index(cache("a", ["nginx:1.25"], { size: 10 }), cache("b", ["nginx:1.25"], { size: 20 }));
    i.remove("a");
    const r = i.match(["nginx:1.25"], opts);
    expect(r.kind === "matched" && r.cache.name).toBe("b");
    i.remove("b");
    // No empty set left behind: the reason is "no cache holds", not "none ready".
    expect(i.match(["nginx:1.25"], opts)).toEqual({ kind: "none", reason: "no image cache holds docker.io/library/nginx:1.25" });
    const j = index(cache("first", ["nginx:1.25"], { size: 10 }));
    j.upsert(cache("second", ["nginx:1.25"], { size: 5 }));
    j.remove("second");
    expect(j.match(["nginx:1.25"], opts)).toMatchObject({ kind: "matched", cache: { name: "first" } });
  });

  it("an imcId taken over by another cache stays indexed when the old one is removed", () => {
    const i = index(cache("old", ["nginx:1.25"], { imcId: "imc-x" }));
    i.upsert(cache("new", ["nginx:1.25"], { imcId: "imc-x" }));
    i.remove("old");
    expect(i.byId("imc-x")?.name).toBe("new");
  });

  it("replace swaps the whole content (an informer relist); get and names read it", () => {
    const i = index(cache("a", ["nginx:1.25"]), cache("b", ["redis:7"]));
    i.replace([cache("c", ["redis:7"])]);
    expect(i.names()).toEqual(["c"]);
    expect(i.get("c")?.name).toBe("c");
    expect(i.get("a")).toBeUndefined();
    expect(i.byId("imc-a")).toBeUndefined();
    expect(i.match(["nginx:1.25"], opts).kind).toBe("none");
    expect(i.size).toBe(1);
  });
});
