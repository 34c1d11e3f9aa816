// Issue 24: admission never makes a valid pod invalid or unschedulable. Each block is a
// defect the issue lists, driven through plan() (what `explain` runs too) or the review
// handler, and judged with the API server's own rules (src/mutate/validation.ts).
import jsonpatch from "fast-json-patch";
import { describe, expect, it } from "vitest";
import { handleReview, type HandlerDeps } from "../../src/admission/handler.js";
import { PlanMemo } from "../../src/admission/plan-memo.js";
import type { Answer } from "../../src/admission/handler.js";
import { compileConfig, type Config } from "../../src/config/config.js";
import { applyPlan, toPatch } from "../../src/mutate/patch.js";
import { candidatesOf, mergeActions, plan, type Facts, type PlanInput } from "../../src/mutate/plan.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { annotationsSize, introducedViolations, isLabelValue, isQualifiedName, podViolations, TOTAL_ANNOTATION_SIZE_LIMIT } from "../../src/mutate/validation.js";
import { takesPods } from "../../src/kube/labelled-nodes.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import type { TagLookup } from "../../src/registry/resolver.js";
import type { LookupResult } from "../../src/registry/result.js";
import { decodePatch, review } from "../support/webhook.js";
import { REG, webPod } from "../support/pods.js";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const KEY = "cloud.tencent.com/apparate";
const config = compileConfig({ acceleration: { registries: [REG], ephemeralContainers: true } });

function facts(input: PlanInput, cfg: Config, answer: (key: string) => LookupResult, extra: Partial<Facts> = {}): Facts {
  const lookups = new Map<string, LookupResult>();
  for (const c of candidatesOf(input, cfg)) lookups.set(c.key, answer(c.key));
  return { lookups, now: 0, ...extra };
}
const exists = (): LookupResult => ({ kind: "exists", mediaType: OCI });
const unknown = (): LookupResult => ({ kind: "unknown", reason: "deadline exceeded" });

function run(pod: PodLike, opts: Partial<PlanInput> = {}, cfg = config, answer = exists, extra: Partial<Facts> = {}) {
  const input: PlanInput = { pod, namespace: "default", operation: "CREATE", ...opts };
  const p = plan(input, facts(input, cfg, answer, extra), cfg);
  const patch = toPatch(pod, p);
  const after = jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument as PodLike;
  return { p, patch, after, input };
}

describe("kubectl debug: existing ephemeral containers are never changed (ValidatePodEphemeralContainersUpdate)", () => {
  const running = webPod({ nodeName: "node-1" });
  const debugger1 = { name: "debugger-1", image: `${REG}/tools/debug:1`, stdin: true, tty: true, targetContainerName: "app" };
  const debugger2 = { name: "debugger-2", image: `${REG}/tools/debug:2`, stdin: true, tty: true, targetContainerName: "app" };

  it("the second debug container is accelerated; the first, whose variant appeared meanwhile, is left as the API server stored it", () => {
    // kubectl debug #1: the registry did not answer in time, debugger-1 keeps its image.
    const withOne = { ...running, spec: { ...running.spec, ephemeralContainers: [debugger1] } };
    const first = run(withOne, { operation: "UPDATE", subResource: "ephemeralcontainers", oldPod: running }, config, unknown);
    expect(first.patch).toEqual([]);
    // kubectl debug #2: both variants exist now. Only the added container is a candidate.
    const withTwo = { ...running, spec: { ...running.spec, ephemeralContainers: [debugger1, debugger2] } };
    const second = run(withTwo, { operation: "UPDATE", subResource: "ephemeralcontainers", oldPod: withOne });
    expect(second.patch).toEqual([{ op: "replace", path: "/spec/ephemeralContainers/1/image", value: `${REG}/tools/debug:2-apparate` }]);
    expect(second.p.containers.map((d) => d.name)).toEqual(["debugger-2"]);
    expect(podViolations(second.after, withOne)).toEqual([]);
  });

  it("negative control: rewriting the existing one is what the API server refuses", () => {
    const withOne = { ...running, spec: { ...running.spec, ephemeralContainers: [debugger1] } };
    const changed = { ...running, spec: { ...running.spec, ephemeralContainers: [{ ...debugger1, image: `${REG}/tools/debug:1-apparate` }, debugger2] } };
    expect(podViolations(changed, withOne)).toEqual(['spec.ephemeralContainers: existing ephemeral containers "debugger-1" may not be changed']);
  });

  it("without oldObject the added containers cannot be told apart: nothing is changed", () => {
    const withOne = { ...running, spec: { ...running.spec, ephemeralContainers: [debugger1] } };
    const { p, patch } = run(withOne, { operation: "UPDATE", subResource: "ephemeralcontainers" });
    expect(p.skipped).toContain("oldObject");
    expect(patch).toEqual([]);
  });
});

describe("annotations stay within the API server's 262144 bytes (objectmeta.go ValidateAnnotationsSize)", () => {
  const one = (annotationBytes: number) => {
    // One annotation whose key + value is exactly `annotationBytes` long.
    const key = "example.com/blob";
    return webPod({ initContainers: [], containers: [{ name: "app", image: `${REG}/team/web:1.4.2` }] }, { annotations: { [key]: "x".repeat(annotationBytes - key.length) } });
  };

  it("a pod at 262,044 bytes: accelerated, original-images recorded, apparate.io/actions left out with a warning", () => {
    const pod = one(262_044);
    const { p, after } = run(pod);
    expect(after.spec!.containers![0]!.image).toBe(`${REG}/team/web:1.4.2-apparate`);
    expect(after.metadata!.annotations!["apparate.io/original-images"]).toBeDefined();
    expect(after.metadata!.annotations!["apparate.io/actions"]).toBeUndefined();
    expect(annotationsSize(after.metadata!.annotations)).toBeLessThanOrEqual(TOTAL_ANNOTATION_SIZE_LIMIT);
    expect(p.warnings.join("\n")).toContain("apparate.io/actions not recorded");
    expect(introducedViolations(pod, after)).toEqual([]);
  });

  it("a pod at 262,120 bytes: even original-images would not fit, so the pod is left unchanged with a warning", () => {
    const pod = one(262_120);
    const { p, patch } = run(pod);
    expect(patch).toEqual([]);
    expect(p.skipped).toContain("at most 262144 bytes");
    expect(p.warnings[0]).toMatch(/^apparate: pod left unchanged/);
  });

  it("negative control: a pod with room gets both annotations", () => {
    const { after } = run(one(1000));
    expect(Object.keys(after.metadata!.annotations!).sort()).toEqual(["apparate.io/actions", "apparate.io/original-images", "example.com/blob"]);
  });

  it("on reinvocation apparate's own annotations are replaced, not added: a pod that ends exactly at the limit keeps both", () => {
    const cfg = compileConfig({ acceleration: { registries: [REG] } });
    const handled = (blob: number) => {
      const pod = webPod({ initContainers: [], containers: [{ name: "app", image: `${REG}/team/web:1.4.2` }] }, { annotations: { "example.com/blob": "x".repeat(blob) } });
      const first = run(pod, {}, cfg).after;
      first.spec!.containers!.push({ name: "sidecar", image: `${REG}/mesh/proxy:1.22` });
      return first;
    };
    // Learn the final size with a small blob, then grow the blob so that it ends at exactly 262144 bytes.
    const probe = run(handled(100), {}, cfg).after;
    const blob = 100 + TOTAL_ANNOTATION_SIZE_LIMIT - annotationsSize(probe.metadata!.annotations);
    const { after, p } = run(handled(blob), {}, cfg);
    expect(annotationsSize(after.metadata!.annotations)).toBe(TOTAL_ANNOTATION_SIZE_LIMIT);
    expect(after.metadata!.annotations!["apparate.io/actions"]).toBe("accelerated=2,placement=required");
    expect(p.warnings).toEqual([]);
    // One byte more: leaving the new actions out saves nothing (the recorded one stays), so the pod is left alone.
    const over = run(handled(blob + 1), {}, cfg);
    expect(over.patch).toEqual([]);
    expect(over.p.skipped).toContain("at most 262144 bytes");
  });

  it("counts bytes as Go's len does (UTF-8), not UTF-16 code units", () => {
    expect(annotationsSize({ "a/b": "ā" })).toBe(3 + 2);
    expect(annotationsSize({ k: "x".repeat(10) })).toBe(11);
  });
});

describe("placement as the scheduler evaluates it", () => {
  const withAffinity = (operator: string, values?: string[]) => webPod({
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: KEY, operator, ...(values ? { values } : {}) }] }] } } },
  });

  it.each([["Gt", ["5"]], ["Lt", ["5"]], ["DoesNotExist", undefined]])("required affinity %s %j on the label: no swap, no nodeSelector (the pod could never schedule)", (operator, values) => {
    const { p, after } = run(withAffinity(operator, values));
    expect(p.containers.find((d) => d.name === "app")!.outcome).toBe("placement-conflict");
    expect(after.spec!.nodeSelector).toBeUndefined();
    expect(after.spec!.containers![0]!.image).toBe(`${REG}/team/web:1.4.2`);
  });

  it("negative control: In [true] admits the node, the pod is swapped and pinned", () => {
    const { after } = run(withAffinity("In", ["true"]));
    expect(after.spec!.nodeSelector).toEqual({ [KEY]: "true" });
  });

  it("required mode and no Ready labelled node: no swap, a warning on the pod", () => {
    const { p, patch } = run(webPod(), {}, config, exists, { labelledNodes: 0 });
    const app = p.containers.find((d) => d.name === "app")!;
    expect(app.outcome).toBe("no-labelled-node");
    expect(p.warnings.join("\n")).toContain(`no Ready, schedulable node carries ${KEY}=true`);
    expect(patch).toEqual([]);
  });

  it.each([[undefined, "not known yet"], [3, "three labelled nodes"]])("required mode, labelled nodes %s (%s): swapped and pinned", (n, _why) => {
    const { after } = run(webPod(), {}, config, exists, n === undefined ? {} : { labelledNodes: n });
    expect(after.spec!.nodeSelector).toEqual({ [KEY]: "true" });
  });

  it("preferred mode swaps even with no labelled node: an eStargz image runs anywhere (pulled in full)", () => {
    const cfg = compileConfig({ acceleration: { registries: [REG], placement: { mode: "preferred" } } });
    const { after } = run(webPod(), {}, cfg, exists, { labelledNodes: 0 });
    expect(after.spec!.containers!.find((c) => c.name === "app")!.image).toBe(`${REG}/team/web:1.4.2-apparate`);
    expect(after.spec!.nodeSelector).toBeUndefined();
  });

  it.each<[string, object, boolean]>([
    ["Ready", { status: { conditions: [{ type: "Ready", status: "True" }] } }, true],
    ["NotReady", { status: { conditions: [{ type: "Ready", status: "False" }] } }, false],
    ["Ready unknown", { status: { conditions: [{ type: "Ready", status: "Unknown" }] } }, false],
    ["cordoned", { spec: { unschedulable: true }, status: { conditions: [{ type: "Ready", status: "True" }] } }, false],
    ["no conditions yet", {}, false],
  ])("a %s node takes pods: %s", (_n, node, expected) => {
    expect(takesPods(node as never)).toBe(expected);
  });
});

describe("opt-outs and records", () => {
  it("a pod labelled apparate.io/inject: \"false\" is left alone", () => {
    const pod = webPod({}, { labels: { app: "web", "apparate.io/inject": "false" } });
    const { p, patch } = run(pod);
    expect(p.skipped).toContain("opted out");
    expect(patch).toEqual([]);
  });

  it("negative control: another label value does not opt out", () => {
    const { patch } = run(webPod({}, { labels: { app: "web", "apparate.io/inject": "true" } }));
    expect(patch.length).toBeGreaterThan(0);
  });

  it("apparate.io/actions is merged on reinvocation: after a sidecar injector, it counts every container", () => {
    const cfg = compileConfig({ acceleration: { registries: [REG] }, rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } } });
    const pod = webPod({ containers: [{ name: "app", image: `${REG}/team/web:1.4.2` }] });
    const first = run(pod, {}, cfg).after;
    expect(first.metadata!.annotations!["apparate.io/actions"]).toBe("accelerated=2,placement=required");
    // A sidecar injector runs, then apparate is reinvoked.
    const injected = structuredClone(first);
    injected.spec!.containers!.push({ name: "sidecar", image: `${REG}/mesh/proxy:1.22` }, { name: "exporter", image: "quay.io/prometheus/node-exporter:v1.8.0" });
    const second = run(injected, {}, cfg).after;
    const actions = Object.fromEntries(second.metadata!.annotations!["apparate.io/actions"]!.split(",").map((kv) => kv.split("=")));
    expect(actions).toEqual({ accelerated: "3", rewritten: "1", placement: "required" });
    // And a third invocation with nothing new changes nothing.
    expect(run(second, {}, cfg).patch).toEqual([]);
  });

  it.each<[string | undefined, Array<[string, number]>, string | undefined, string]>([
    [undefined, [["accelerated", 1]], "required", "accelerated=1,placement=required"],
    ["accelerated=2,placement=required", [["accelerated", 1], ["rewritten", 1]], "required", "accelerated=3,placement=required,rewritten=1"],
    ["rewritten=1", [["accelerated", 1]], "preferred", "rewritten=1,accelerated=1,placement=preferred"],
    ["garbage,accelerated=x", [["accelerated", 2]], undefined, "accelerated=2"],
    ["=3,accelerated=1", [["accelerated", 1]], undefined, "accelerated=2"],
    ["accelerated=-2", [["accelerated", 1]], undefined, "accelerated=1"],
    ["accelerated=1.5", [["accelerated", 1]], undefined, "accelerated=1"],
  ])("mergeActions(%j, %j, %s) = %s", (recorded, counts, placement, expected) => {
    expect(mergeActions(recorded, new Map(counts), placement)).toBe(expected);
  });
});

describe("validation rules, with upstream's own cases", () => {
  // kubernetes/apimachinery pkg/api/validate/content/kube_test.go TestIsLabelKey, as packaged in
  // Debian golang-k8s-apimachinery-dev 0.36.4-3 (the same file the API server is built from).
  it.each([
    "simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple",
    "now-with-dashes/now-with-dashes", "now.with.dots/simple", "now-with.dashes-and.dots/simple", "1-num.2-num/3-num",
    "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123", "example.com/Uppercase_Is_OK_123", "requests.storage-foo",
    "a".repeat(63), `${"a".repeat(253)}/${"b".repeat(63)}`,
  ])("qualified name: %s", (s) => { expect(isQualifiedName(s)).toBe(true); });

  it.each([
    "nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash", "Example.com/abc", "example_com/abc",
    "example.com/", "/simple", "a".repeat(64), `${"a".repeat(254)}/abc`, "not a/valid~key",
  ])("not a qualified name: %s", (s) => { expect(isQualifiedName(s)).toBe(false); });

  // Same file, TestIsLabelValue.
  it.each(["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a".repeat(63), ""])("label value: %j", (s) => {
    expect(isLabelValue(s)).toBe(true);
  });
  it.each(["nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad", "-starts-with-dash", "ends-with-dash-", ".starts.with.dot", "ends.with.dot.", "a".repeat(64)])("not a label value: %j", (s) => {
    expect(isLabelValue(s)).toBe(false);
  });

  it("a pod's violations: annotation key, label value, nodeSelector key, requirement shape, weight", () => {
    const bad: PodLike = {
      metadata: { annotations: { "bad key": "v" }, labels: { ok: "-bad" } },
      spec: {
        nodeSelector: { "a/b/c": "x" },
        affinity: { nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "k", operator: "In" }], matchFields: [{ key: "spec.x", operator: "In", values: ["a"] }] }] },
          preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 0, preference: { matchExpressions: [{ key: "k", operator: "Gt", values: ["1", "2"] }] } }],
        } },
      },
    };
    expect(podViolations(bad)).toEqual([
      'metadata.annotations: key "bad key" is not a qualified name',
      'metadata.labels.ok: "-bad" is not a label value',
      'spec.nodeSelector: key "a/b/c" is not a qualified name',
      "spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: must be specified when operator is In or NotIn",
      "spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchFields[0].key: only metadata.name is supported in matchFields",
      "spec.affinity.nodeAffinity.preferred[0].weight: must be in the range 1-100",
      "spec.affinity.nodeAffinity.preferred[0].preference.matchExpressions[0].values: must be a single value when operator is Gt or Lt",
    ]);
    expect(podViolations(webPod())).toEqual([]);
  });

  it("every plan of a pod that was valid leaves it valid (plan ∘ apply, over the placement modes)", () => {
    for (const mode of ["required", "preferred", "none"] as const) {
      const cfg = compileConfig({ acceleration: { registries: [REG], placement: { mode } } });
      const pod = webPod({ nodeSelector: { zone: "a" } });
      const { after } = run(pod, {}, cfg);
      expect(podViolations(after)).toEqual([]);
      expect(applyPlan(pod, plan({ pod, namespace: "default", operation: "CREATE" }, facts({ pod, namespace: "default", operation: "CREATE" }, cfg, exists), cfg))).toEqual(after);
    }
  });
});

describe("the review handler", () => {
  const lookup: TagLookup = { peek: () => undefined, lookup: async () => exists() };
  const deps = (extra: Partial<HandlerDeps> = {}): HandlerDeps => ({ config, lookup, logger: createLogger({ level: "silent" }), metrics: new Metrics(), ...extra });

  it.each(["DELETE", "CONNECT"])("a %s review gets 200, allowed, no patch (not 400)", async (operation) => {
    const body = review({} as PodLike, { operation, object: null, oldObject: webPod() });
    const r = await handleReview(body, deps());
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid: (body.request as { uid: string }).uid, allowed: true } });
  });

  it("the kubectl debug sequence through the handler and its memo: oldObject decides which container is new", async () => {
    const d = deps({ planMemo: new PlanMemo<Answer>() });
    const running = webPod({ nodeName: "node-1" });
    const dbg = (n: number) => ({ name: `debugger-${n}`, image: `${REG}/tools/debug:${n}` });
    const one = { ...running, spec: { ...running.spec, ephemeralContainers: [dbg(1)] } };
    const two = { ...running, spec: { ...running.spec, ephemeralContainers: [dbg(1), dbg(2)] } };
    const sub = { operation: "UPDATE", subResource: "ephemeralcontainers", resource: { group: "", version: "v1", resource: "pods" } };
    // Same pod, two histories: debugger-1 added just now, or long ago.
    const fresh = await handleReview(review(two, { ...sub, oldObject: running }), d);
    const later = await handleReview(review(two, { ...sub, oldObject: one }), d);
    expect(decodePatch(fresh.body).map((o: { path: string }) => o.path)).toEqual(["/spec/ephemeralContainers/0/image", "/spec/ephemeralContainers/1/image"]);
    expect(decodePatch(later.body)).toEqual([{ op: "replace", path: "/spec/ephemeralContainers/1/image", value: `${REG}/tools/debug:2-apparate` }]);
  });

  it("required placement with a node source that sees no labelled node: no swap, and the memo does not serve the answer once nodes appear", async () => {
    let ready = 0;
    const d = deps({ planMemo: new PlanMemo<Answer>(), labelledNodes: { ready: () => ready } });
    const r0 = await handleReview(review(webPod()), d);
    expect(decodePatch(r0.body)).toEqual([]);
    expect((r0.body as { response: { warnings: string[] } }).response.warnings.join("\n")).toContain("no Ready, schedulable node");
    expect(await d.metrics.registry.getSingleMetricAsString("apparate_decisions_total")).toContain('outcome="no-labelled-node"');
    ready = 2;
    const r1 = await handleReview(review(webPod()), d);
    expect(decodePatch(r1.body).some((o: { path: string }) => o.path === "/spec/nodeSelector")).toBe(true);
  });
});
