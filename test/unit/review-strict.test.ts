// Strict pod reading (issue 13 item 6): a field the planner reads, of the wrong type,
// gets HTTP 400 naming the field and the reason, never a 200 "internal error" nor a
// patch that cannot apply; the same pod well-typed gets 200 and a patch that applies.
// And one review of a huge pod writes log lines of bounded size.
import { Writable } from "node:stream";
import { readFileSync } from "node:fs";
import jsonpatch from "fast-json-patch";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { handleReview, type HandlerDeps } from "../../src/admission/handler.js";
import { compileConfig, type Config } from "../../src/config/config.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import type { TagLookup } from "../../src/registry/resolver.js";
import type { LookupResult } from "../../src/registry/result.js";
import { decodePatch, review } from "../support/webhook.js";
import { REG } from "../support/pods.js";

const EXISTS: LookupResult = { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json" };
/** Every accelerated tag exists (or, for the log test, is unknown): the registry is not under test here. */
const answering = (r: LookupResult): TagLookup => ({ peek: () => undefined, lookup: async () => r });

function capture(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({ write(c, _e, cb) { lines.push(...c.toString("utf8").split("\n").filter(Boolean)); cb(); } });
  return { logger: createLogger({ destination, level: "info" }), lines };
}

function depsOf(config: Config, lookup: TagLookup, logger = capture().logger): HandlerDeps {
  return { config, lookup, logger, metrics: new Metrics() };
}

// The repository's real-looking Deployment pod (test/fixtures/pod-web.yaml), with the
// scheduling fields a real workload carries (kubernetes.io docs' "Assign Pods to Nodes" examples).
const base = parseYaml(readFileSync("test/fixtures/pod-web.yaml", "utf8")) as PodLike;
function web(): any {
  const p = structuredClone(base) as any;
  p.metadata.annotations = { "kubectl.kubernetes.io/default-container": "app" };
  p.spec.nodeSelector = { "kubernetes.io/os": "linux" };
  p.spec.imagePullSecrets = [{ name: "regcred" }];
  p.spec.affinity = {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: "topology.kubernetes.io/zone", operator: "In", values: ["antarctica-east1", "antarctica-west1"] }] }],
      },
      preferredDuringSchedulingIgnoredDuringExecution: [
        { weight: 1, preference: { matchExpressions: [{ key: "another-node-label-key", operator: "In", values: ["another-node-label-value"] }] } },
      ],
    },
  };
  return p;
}

// [what is wrong, how the pod is broken, the path the answer names, the reason]
const rows: Array<[string, (p: any) => void, string, RegExp]> = [
  ["nodeSelector a list", (p) => { p.spec.nodeSelector = ["kubernetes.io/os=linux"]; }, "spec.nodeSelector", /must be object \(found array\)/],
  ["nodeSelector value a boolean", (p) => { p.spec.nodeSelector["kubernetes.io/os"] = true; }, "spec.nodeSelector.kubernetes.io/os", /must be string \(found boolean\)/],
  ["nodeSelector a string", (p) => { p.spec.nodeSelector = "kubernetes.io/os=linux"; }, "spec.nodeSelector", /must be object \(found string\)/],
  ["nodeSelectorTerms an object", (p) => {
    const r = p.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution;
    r.nodeSelectorTerms = r.nodeSelectorTerms[0];
  }, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms", /must be array \(found object\)/],
  ["nodeSelectorTerms entry a string", (p) => {
    p.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms = ["topology.kubernetes.io/zone in (antarctica-east1)"];
  }, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]", /must be object \(found string\)/],
  ["matchExpressions values a string", (p) => {
    p.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values = "antarctica-east1";
  }, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values", /must be array/],
  ["affinity a list", (p) => { p.spec.affinity = [p.spec.affinity]; }, "spec.affinity", /must be object \(found array\)/],
  ["preferred term without preference", (p) => {
    p.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0] = { weight: 1 };
  }, "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference", /must have required property 'preference'/],
  ["metadata a string", (p) => { p.metadata = "web-7d9c-x2k4p"; }, "metadata", /must be object \(found string\)/],
  ["metadata null", (p) => { p.metadata = null; }, "metadata", /must be object \(found null\)/],
  ["labels a list", (p) => { p.metadata.labels = ["app=web"]; }, "metadata.labels", /must be object \(found array\)/],
  ["label value a number", (p) => { p.metadata.labels["pod-template-hash"] = 7; }, "metadata.labels.pod-template-hash", /must be string \(found number\)/],
  ["annotation value an object", (p) => { p.metadata.annotations["apparate.io/original-images"] = { app: `${REG}/team/web:1.4.2` }; }, "metadata.annotations.apparate.io/original-images", /must be string \(found object\)/],
  ["containers entry a string", (p) => { p.spec.containers[1] = "quay.io/prometheus/node-exporter:v1.8.0"; }, "spec.containers[1]", /must be object \(found string\)/],
  ["container image an object", (p) => { p.spec.containers[0].image = { repository: `${REG}/team/web`, tag: "1.4.2" }; }, "spec.containers[0].image", /must be string \(found object\)/],
  ["container name a number", (p) => { p.spec.containers[0].name = 1; }, "spec.containers[0].name", /must be string \(found number\)/],
  ["initContainers an object", (p) => { p.spec.initContainers = p.spec.initContainers[0]; }, "spec.initContainers", /must be array \(found object\)/],
  ["imagePullSecrets a string", (p) => { p.spec.imagePullSecrets = "regcred"; }, "spec.imagePullSecrets", /must be array \(found string\)/],
  ["spec a list", (p) => { p.spec = [p.spec]; }, "spec", /must be object \(found array\)/],
];

describe("strict pod reading", () => {
  // Preferred placement: the planner reads nodeSelector and both node-affinity lists.
  const config = compileConfig({ acceleration: { registries: [REG], placement: { mode: "preferred", weight: 50 } } });
  const deps = depsOf(config, answering(EXISTS));

  it.each(rows)("%s → 400 naming the field and the reason", async (_what, breakIt, path, reason) => {
    const pod = web();
    breakIt(pod);
    const r = await handleReview(review(pod), deps);
    expect(r.status).toBe(400);
    const body = r.body as { error: string; message: string };
    expect(body.error).toBe("review-bad-pod");
    expect(body.message).toContain(`request.object.${path}:`);
    expect(body.message).toMatch(reason);
  });

  // Negative control: without the break, the same pod is accelerated, and the patch applies.
  it("the same pod well-typed → 200 with a patch that applies", async () => {
    const pod = web();
    const r = await handleReview(review(pod), deps);
    expect(r.status).toBe(200);
    const patch = decodePatch(r.body);
    expect(patch.some((o) => o.path === "/spec/containers/0/image")).toBe(true);
    const patched = jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument as any;
    expect(patched.spec.containers[0].image).not.toBe(pod.spec.containers[0].image);
    expect(patched.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution).toHaveLength(2);
  });

  it("fields the planner does not read pass through whatever their type", async () => {
    const pod = web();
    pod.spec.tolerations = "not-a-list";
    pod.spec.containers[0].env = { MODE: "prod" };
    pod.metadata.ownerReferences = "rs";
    const r = await handleReview(review(pod), deps);
    expect(r.status).toBe(200);
    expect(decodePatch(r.body).length).toBeGreaterThan(0);
  });

  it("a hostile key cannot make the 400 answer large", async () => {
    const pod = web();
    pod.spec.nodeSelector = { ["k".repeat(100_000)]: 1 };
    const r = await handleReview(review(pod), deps);
    expect(r.status).toBe(400);
    expect((r.body as { message: string }).message.length).toBeLessThan(400);
  });
});

describe("bounded log lines", () => {
  const config = compileConfig({ acceleration: { registries: [REG] }, admission: { maxLookupsPerReview: 100_000 } });
  // Unknown answers make every decision notable, so the review is logged at info.
  const UNKNOWN: LookupResult = { kind: "unknown", reason: "registry unreachable" };

  function hugePod(n: number, nameLength = 8): PodLike {
    const containers = Array.from({ length: n }, (_, i) => ({ name: `c${i}`.padEnd(nameLength, "x"), image: `${REG}/team/svc-${i}:1.0.${i}` }));
    return { apiVersion: "v1", kind: "Pod", metadata: { generateName: "huge-", namespace: "default" }, spec: { containers } };
  }

  it("a pod of 20,000 containers with long names logs lines under 16 KiB, with counts for the rest", async () => {
    const { logger, lines } = capture();
    const r = await handleReview(review(hugePod(20_000, 300)), depsOf(config, answering(UNKNOWN), logger));
    expect(r.status).toBe(200);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l.length).toBeLessThan(16 * 1024);
    const decided = lines.map((l) => JSON.parse(l)).find((o) => o.msg === "admission decided");
    expect(decided.decisions).toHaveLength(20);
    expect(decided.decisionsOmitted).toBe(19_980);
    expect(decided.outcomes).toEqual({ "lookup-unknown": 20_000 });
    expect(decided.decisions[0].container.length).toBeLessThanOrEqual(256);
  });

  // Control: a small pod's line is logged whole, every decision with its reason.
  it("a small pod's decisions are all logged, without counts", async () => {
    const { logger, lines } = capture();
    await handleReview(review(hugePod(3)), depsOf(config, answering(UNKNOWN), logger));
    const decided = lines.map((l) => JSON.parse(l)).find((o) => o.msg === "admission decided");
    expect(decided.decisions).toHaveLength(3);
    expect(decided.decisions[0].reason).toMatch(/registry unreachable/);
    expect(decided.outcomes).toBeUndefined();
  });
});

describe("bounded log lines on the webhook's own trouble", () => {
  const config = compileConfig({ acceleration: { registries: [REG] } });
  // A bug that quotes 1 MB (say, an annotation's value) in its message.
  const throwing: TagLookup = { peek: () => undefined, lookup: async (ref) => { throw new Error(`cannot look up ${ref.path}: ${"a".repeat(1_000_000)}`); } };

  it("an internal error quoting 1 MB fails open and logs a line under 8 KiB", async () => {
    const { logger, lines } = capture();
    const pod: PodLike = { apiVersion: "v1", kind: "Pod", metadata: { name: "big" }, spec: { containers: [{ name: "app", image: `${REG}/team/web:1.4.2` }] } };
    const r = await handleReview(review(pod), depsOf(config, throwing, logger));
    expect(r.status).toBe(200);
    const failed = lines.find((l) => l.includes("admission failed"));
    // Control: the error did happen and was logged, with its message's beginning.
    expect(failed).toBeDefined();
    expect(failed).toContain("cannot look up team/web: aaaa");
    for (const l of lines) expect(l.length).toBeLessThan(8 * 1024);
  });
});
