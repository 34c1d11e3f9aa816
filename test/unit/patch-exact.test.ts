// The patch writer's decisions, each with its exact output: when preferred placement adds
// its term, where the first missing level is, a pod without metadata, and the encoded
// answer. Found necessary by mutation testing (issue 24 item 7): the property tests
// compare toPatch with applyPlan, which share these decisions, so a change to a shared
// decision went unnoticed.
import { describe, expect, it } from "vitest";
import { applyPlan, encodePatch, toPatch } from "../../src/mutate/patch.js";
import type { Plan } from "../../src/mutate/plan.js";
import type { PodLike } from "../../src/mutate/pod.js";

const KEY = "cloud.tencent.com/apparate";
const TERM = { weight: 40, preference: { matchExpressions: [{ key: KEY, operator: "In", values: ["true"] }] } };
const plan = (over: Partial<Plan> = {}): Plan => ({ containers: [], annotations: {}, labels: {}, warnings: [], ...over });
const preferred = plan({ placement: { mode: "preferred", key: KEY, value: "true", weight: 40 } });
const required = plan({ placement: { mode: "required", key: KEY, value: "true", weight: 40 } });
const withPrefs = (...prefs: object[]): PodLike => ({ spec: { containers: [], affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: prefs as never } } } });
const ADD_TERM = { op: "add", path: "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/-", value: TERM };

describe("preferred placement: the term is added unless the pod already prefers or requires key=value", () => {
  it.each<[string, PodLike, object[]]>([
    ["already prefers key In [true]", withPrefs(TERM), []],
    ["already prefers key In [x, true] among other expressions", withPrefs({ weight: 1, preference: { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }, { key: KEY, operator: "In", values: ["x", "true"] }] } }), []],
    ["prefers another key", withPrefs({ weight: 1, preference: { matchExpressions: [{ key: "zone", operator: "In", values: ["true"] }] } }), [ADD_TERM]],
    ["prefers key NotIn [true]", withPrefs({ weight: 1, preference: { matchExpressions: [{ key: KEY, operator: "NotIn", values: ["true"] }] } }), [ADD_TERM]],
    ["prefers key In [false]", withPrefs({ weight: 1, preference: { matchExpressions: [{ key: KEY, operator: "In", values: ["false"] }] } }), [ADD_TERM]],
    ["prefers key Exists (no values)", withPrefs({ weight: 1, preference: { matchExpressions: [{ key: KEY, operator: "Exists" }] } }), [ADD_TERM]],
    ["a preference with matchFields only", withPrefs({ weight: 1, preference: { matchFields: [{ key: "metadata.name", operator: "In", values: ["n"] }] } }), [ADD_TERM]],
    ["its nodeSelector already says key=true", { spec: { containers: [], nodeSelector: { [KEY]: "true" } } }, []],
    ["its nodeSelector says key=false", { spec: { containers: [], nodeSelector: { [KEY]: "false" }, affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } } } }, [ADD_TERM]],
    ["no affinity", { spec: { containers: [] } }, [{ op: "add", path: "/spec/affinity", value: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [TERM] } } }]],
    ["affinity without nodeAffinity", { spec: { containers: [], affinity: { podAffinity: {} } } }, [{ op: "add", path: "/spec/affinity/nodeAffinity", value: { preferredDuringSchedulingIgnoredDuringExecution: [TERM] } }]],
    ["nodeAffinity without preferences", { spec: { containers: [], affinity: { nodeAffinity: {} } } }, [{ op: "add", path: "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution", value: [TERM] }]],
  ])("%s", (_n, pod, ops) => {
    expect(toPatch(pod, preferred)).toEqual(ops);
    // applyPlan decides the same: one term more exactly when the patch adds one.
    const terms = (x: PodLike) => (x.spec?.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).filter((t) => JSON.stringify(t) === JSON.stringify(TERM)).length;
    expect(terms(applyPlan(pod, preferred))).toBe(terms(pod) + (ops.length > 0 ? 1 : 0));
  });
});

describe("required placement, containers, metadata", () => {
  it.each<[string, PodLike, object[]]>([
    ["no nodeSelector", { spec: { containers: [] } }, [{ op: "add", path: "/spec/nodeSelector", value: { [KEY]: "true" } }]],
    ["another key", { spec: { containers: [], nodeSelector: { zone: "a" } } }, [{ op: "add", path: "/spec/nodeSelector/cloud.tencent.com~1apparate", value: "true" }]],
    ["the key already set", { spec: { containers: [], nodeSelector: { [KEY]: "true" } } }, []],
    ["no spec at all", {}, []],
  ])("required, %s", (_n, pod, ops) => { expect(toPatch(pod, required)).toEqual(ops); });

  it("an image change is written only where the container exists", () => {
    const p = plan({ containers: [
      { kind: "containers", index: 0, name: "a", original: "x:1", image: "x:1-apparate", outcome: "accelerated", reason: "", warn: false },
      { kind: "initContainers", index: 0, name: "i", original: "y:1", image: "y:1-apparate", outcome: "accelerated", reason: "", warn: false },
      { kind: "containers", index: 5, name: "gone", original: "z:1", image: "z:1-apparate", outcome: "accelerated", reason: "", warn: false },
    ] });
    expect(toPatch({ spec: { containers: [{ name: "a", image: "x:1" }] } }, p)).toEqual([{ op: "replace", path: "/spec/containers/0/image", value: "x:1-apparate" }]);
    expect(toPatch({}, p)).toEqual([]);
  });

  it.each<[string, Plan, object[]]>([
    ["labels and annotations", plan({ labels: { l: "1" }, annotations: { "a/b": "2" } }), [{ op: "add", path: "/metadata", value: { labels: { l: "1" }, annotations: { "a/b": "2" } } }]],
    ["labels only", plan({ labels: { l: "1" } }), [{ op: "add", path: "/metadata", value: { labels: { l: "1" } } }]],
    ["annotations only", plan({ annotations: { a: "2" } }), [{ op: "add", path: "/metadata", value: { annotations: { a: "2" } } }]],
    ["original images only", plan({ originalImages: { app: "x:1" } }), [{ op: "add", path: "/metadata", value: { annotations: { "apparate.io/original-images": '{"app":"x:1"}' } } }]],
    ["nothing", plan(), []],
  ])("a pod without metadata, %s", (_n, p, ops) => { expect(toPatch({ spec: {} }, p)).toEqual(ops); });

  it("existing annotations: only changed keys are written, keys escaped", () => {
    const pod: PodLike = { metadata: { annotations: { "apparate.io/actions": "accelerated=1", keep: "1" }, labels: {} } };
    expect(toPatch(pod, plan({ annotations: { "apparate.io/actions": "accelerated=1", "x~y/z": "2" }, labels: { l: "v" } }))).toEqual([
      { op: "add", path: "/metadata/labels/l", value: "v" },
      { op: "add", path: "/metadata/annotations/x~0y~1z", value: "2" },
    ]);
  });

  it("encodePatch: nothing to change is no patch; else base64 of the JSON", () => {
    expect(encodePatch([])).toBeUndefined();
    const ops = [{ op: "add" as const, path: "/a", value: "ü" }];
    expect(Buffer.from(encodePatch(ops)!, "base64").toString("utf8")).toBe(JSON.stringify(ops));
  });
});
