// Properties of the decision core over generated pods (fast-check): every patch
// applies and gives exactly the planned pod, the result is still a valid Pod, and
// planning is idempotent: a pod apparate already patched gets no further change.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import jsonpatch from "fast-json-patch";
import { Pod } from "kubernetes-models/v1/Pod";
import { compileConfig, type Config } from "../../src/config/config.js";
import { analysePod, plan, type Facts, type PlanInput } from "../../src/mutate/plan.js";
import { applyPlan, toPatch } from "../../src/mutate/patch.js";
import type { PodLike } from "../../src/mutate/pod.js";
import type { LookupResult } from "../../src/registry/result.js";
import { ImageCacheIndex } from "../../src/imagecache/policy.js";

const REG = "registry.example.com:5000";
// Real-looking references, and the awkward ones: Docker Hub short names, ports,
// digests, a tag near the 128-character limit, already-accelerated tags, invalid strings.
const IMAGES = [
  `${REG}/team/web:1.4.2`, `${REG}/team/worker`, `${REG}/team/migrate:v3`, `${REG}/team/web:1.4.2-apparate`,
  `${REG}/team/pinned@sha256:${"a".repeat(64)}`, `${REG}/team/long:${"t".repeat(125)}`,
  "nginx", "nginx:1.27", "docker.io/library/redis:7", "quay.io/prometheus/node-exporter:v1.8.1",
  "ccr.ccs.tencentyun.com/tke/app:2.0", "Invalid/UPPER:tag", "localhost:5000/x/y:z", "[::1]:5000/ipv6/app:1",
];

const configs: Config[] = [
  compileConfig({ acceleration: { registries: [REG, "ccr.ccs.tencentyun.com"] } }),
  compileConfig({ acceleration: { registries: ["*"], placement: { mode: "preferred", weight: 50 } }, rewrite: { registries: { "docker.io": "mirror.ccs.tencentyun.com", "quay.io": "mirror.example.com/quay" } } }),
  compileConfig({ acceleration: { registries: [REG] }, rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } }, imageCache: { enabled: true } }),
];

const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
const container = fc.record({ name, image: fc.option(fc.constantFrom(...IMAGES), { nil: undefined }) }, { requiredKeys: ["name"] });
const uniqueByName = <T extends { name: string }>(xs: T[]) => xs.filter((x, i) => xs.findIndex((y) => y.name === x.name) === i);
const pod = fc.record({
  containers: fc.array(container, { minLength: 1, maxLength: 4 }).map(uniqueByName),
  initContainers: fc.array(container, { maxLength: 2 }).map(uniqueByName),
  nodeSelector: fc.option(fc.constantFrom<Record<string, string>>({}, { "cloud.tencent.com/apparate": "true" }, { "cloud.tencent.com/apparate": "false" }, { disk: "ssd" }), { nil: undefined }),
  affinity: fc.option(fc.constantFrom<NonNullable<NonNullable<PodLike["spec"]>["affinity"]>>(
    { nodeAffinity: {} },
    { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, preference: { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] } }] } },
    { podAntiAffinity: {} },
  ), { nil: undefined }),
  labels: fc.option(fc.constantFrom<Record<string, string>>({}, { app: "shop" }), { nil: undefined }),
  annotations: fc.option(fc.constantFrom<Record<string, string>>({}, { "prometheus.io/scrape": "true" }, { "eks.tke.cloud.tencent.com/use-image-cache": "imc-manual" }), { nil: undefined }),
}).map(({ containers, initContainers, nodeSelector, affinity, labels, annotations }): PodLike => ({
  apiVersion: "v1", kind: "Pod",
  metadata: { generateName: "shop-", namespace: "default", ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
  spec: {
    containers: containers.map((c) => ({ name: c.name, ...(c.image ? { image: c.image } : {}) })),
    ...(initContainers.length ? { initContainers: initContainers.map((c) => ({ name: `init-${c.name}`, ...(c.image ? { image: c.image } : {}) })) } : {}),
    ...(nodeSelector ? { nodeSelector } : {}),
    ...(affinity ? { affinity } : {}),
  },
}));
const answer = fc.constantFrom<LookupResult>(
  { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json" },
  { kind: "absent", reason: "not found" },
  { kind: "unknown", reason: "timed out" },
);

const caches = new ImageCacheIndex();
caches.upsert({ name: "web", created: Date.now() - 86_400_000, images: ["nginx:1.27", "mirror.ccs.tencentyun.com/library/nginx:1.27"], size: 20, retentionDays: 0, imcId: "imc-web", phase: "Ready" });
caches.upsert({ name: "manual", created: Date.now(), images: ["redis:7"], size: 30, retentionDays: 0, imcId: "imc-manual", phase: "Ready" });

/** The registry's answer depends on the reference only, as a real registry's does. */
function factsFor(input: PlanInput, config: Config, answers: LookupResult[]): Facts {
  const lookups = new Map<string, LookupResult>();
  const pick = (key: string) => answers[[...key].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) >>> 0, 7) % answers.length]!;
  for (const c of analysePod(input, config).candidates) lookups.set(c.key, pick(c.key));
  return { lookups, imageCaches: caches, now: Date.now() };
}

describe("decision core properties", () => {
  it("every patch applies, gives exactly the planned pod, keeps a valid Pod, and a second pass changes nothing", () => {
    fc.assert(fc.property(pod, fc.integer({ min: 0, max: configs.length - 1 }), fc.array(answer, { minLength: 1, maxLength: 6 }), (p, ci, answers) => {
      const config = configs[ci]!;
      const input: PlanInput = { pod: p, namespace: "default", operation: "CREATE" };
      const first = plan(input, factsFor(input, config, answers), config);
      const patch = toPatch(p, first);
      // validate=true: fast-json-patch checks every operation against the document.
      const patched = jsonpatch.applyPatch(structuredClone(p), patch, true, false).newDocument as PodLike;
      expect(patched).toEqual(applyPlan(p, first));
      new Pod(patched as never).validate();
      // Reinvocation, or the same pod reviewed again: the registry now says the same.
      const again: PlanInput = { pod: patched, namespace: "default", operation: "CREATE" };
      const second = plan(again, factsFor(again, config, answers), config);
      expect(toPatch(patched, second)).toEqual([]);
      // The recorded originals always name what the user wrote.
      const recorded = patched.metadata?.annotations?.["apparate.io/original-images"];
      if (recorded) {
        const orig = JSON.parse(recorded) as Record<string, string>;
        for (const c of p.spec!.containers!) if (orig[c.name] !== undefined) expect(orig[c.name]).toBe(c.image);
      }
    }), { numRuns: 500 });
  });
});
