// The API server's rules apparate's changes can touch (src/mutate/validation.ts) and the
// scheduler's parsing of node selector requirements (src/mutate/placement.ts), rule by
// rule, at their boundaries: found necessary by mutation testing (issue 24 item 7).
import { describe, expect, it } from "vitest";
import { placementConflict, requirementParses, termAdmits } from "../../src/mutate/placement.js";
import type { NodeSelectorRequirement, NodeSelectorTerm, PodLike } from "../../src/mutate/pod.js";
import { annotationsSize, introducedViolations, isLabelValue, isQualifiedName, podViolations, validatedParts } from "../../src/mutate/validation.js";

const KEY = "cloud.tencent.com/apparate";
const required = (...terms: NodeSelectorTerm[]): PodLike => ({ spec: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } } });
const preferred = (weight: number, preference?: NodeSelectorTerm): PodLike => ({ spec: { affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight, ...(preference ? { preference } : {}) } as never] } } } });

describe("isQualifiedName and isLabelValue at their limits", () => {
  it.each<[string, boolean]>([
    [`${"p".repeat(253)}/n`, true], [`${"p".repeat(254)}/n`, false], [`p/${"n".repeat(63)}`, true], [`p/${"n".repeat(64)}`, false],
    ["a", true], ["", false], ["a/", false], ["/a", false], ["a.b/c", true], ["A.b/c", false], ["a_b/c", false], ["a/b_c.D-e", true], ["a/-b", false], ["a/b-", false],
  ])("isQualifiedName(%j) = %s", (s, ok) => { expect(isQualifiedName(s)).toBe(ok); });

  it.each<[string, boolean]>([["", true], ["a", true], ["a".repeat(63), true], ["a".repeat(64), false], ["a b", false], ["_a", false], ["a_", false], ["a_b", true]])("isLabelValue(%j) = %s", (s, ok) => {
    expect(isLabelValue(s)).toBe(ok);
  });

  it("annotationsSize of nothing is 0; keys and values both count", () => {
    expect(annotationsSize(undefined)).toBe(0);
    expect(annotationsSize(null)).toBe(0);
    expect(annotationsSize({})).toBe(0);
    expect(annotationsSize({ ab: "", c: "de" })).toBe(5);
  });
});

describe("podViolations, one rule at a time", () => {
  it.each<[string, PodLike, string[]]>([
    ["a valid pod", { metadata: { annotations: { "Example.com/Key": "v" }, labels: { a: "b" } }, spec: { nodeSelector: { k: "" } } }, []],
    ["annotations over the total", { metadata: { annotations: { k: "x".repeat(262_144) } } }, ["metadata.annotations: Too long: must have at most 262144 bytes"]],
    ["annotations exactly at the total", { metadata: { annotations: { k: "x".repeat(262_143) } } }, []],
    ["an invalid label key", { metadata: { labels: { "a b": "c" } } }, ['metadata.labels: key "a b" is not a qualified name']],
    ["an invalid nodeSelector value", { spec: { nodeSelector: { k: "a b" } } }, ['spec.nodeSelector.k: "a b" is not a label value']],
    ["required with no terms", required(), ["spec.affinity.nodeAffinity.required: must have at least one node selector term"]],
    ["required terms absent", { spec: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: {} } } } }, ["spec.affinity.nodeAffinity.required: must have at least one node selector term"]],
    ["Exists with values", required({ matchExpressions: [{ key: "k", operator: "Exists", values: ["v"] }] }), ["spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: may not be specified when operator is Exists or DoesNotExist"]],
    ["DoesNotExist without values", required({ matchExpressions: [{ key: "k", operator: "DoesNotExist" }] }), []],
    ["NotIn without values", required({ matchExpressions: [{ key: "k", operator: "NotIn", values: [] }] }), ["spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: must be specified when operator is In or NotIn"]],
    ["Lt with one value", required({ matchExpressions: [{ key: "k", operator: "Lt", values: ["3"] }] }), []],
    ["Lt with none", required({ matchExpressions: [{ key: "k", operator: "Lt" }] }), ["spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: must be a single value when operator is Gt or Lt"]],
    ["an unknown operator", required({ matchExpressions: [{ key: "k", operator: "Equals", values: ["v"] }] }), ['spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: "Equals" is not a valid selector operator']],
    ["an invalid key", required({ matchExpressions: [{ key: "a b", operator: "Exists" }] }), ['spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].key: "a b" is not a qualified name']],
    ["matchFields metadata.name In one value", required({ matchFields: [{ key: "metadata.name", operator: "In", values: ["n"] }] }), []],
    ["matchFields NotIn one value", required({ matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["n"] }] }), []],
    ["matchFields Exists", required({ matchFields: [{ key: "metadata.name", operator: "Exists" }] }), ['spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchFields[0].operator: "Exists" is not In or NotIn']],
    ["matchFields In two values", required({ matchFields: [{ key: "metadata.name", operator: "In", values: ["a", "b"] }] }), ["spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchFields[0].values: must be exactly one value"]],
    ["preferred weight 1", preferred(1, { matchExpressions: [{ key: "k", operator: "Exists" }] }), []],
    ["preferred weight 100", preferred(100, {}), []],
    ["preferred weight 0", preferred(0, {}), ["spec.affinity.nodeAffinity.preferred[0].weight: must be in the range 1-100"]],
    ["preferred weight 101", preferred(101, {}), ["spec.affinity.nodeAffinity.preferred[0].weight: must be in the range 1-100"]],
    ["preferred weight 1.5", preferred(1.5, {}), ["spec.affinity.nodeAffinity.preferred[0].weight: must be in the range 1-100"]],
    ["preferred without preference", preferred(5), []],
    ["preferred with a bad term", preferred(5, { matchFields: [{ key: "spec.x", operator: "In", values: ["a"] }] }), ["spec.affinity.nodeAffinity.preferred[0].preference.matchFields[0].key: only metadata.name is supported in matchFields"]],
  ])("%s", (_n, pod, expected) => {
    expect(podViolations(pod)).toEqual(expected);
  });

  describe("ephemeral containers against the pod before the update", () => {
    const c = { name: "d1", image: "busybox:1", env: [{ name: "A", value: "1" }], stdin: true };
    const pod = (...list: object[]): PodLike => ({ spec: { ephemeralContainers: list as never } });
    it.each<[string, PodLike, string[]]>([
      ["unchanged, one added", pod(structuredClone(c), { name: "d2", image: "x" }), []],
      ["removed", pod({ name: "d2", image: "x" }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
      ["image changed", pod({ ...c, image: "busybox:1-apparate" }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
      ["a nested value changed", pod({ ...c, env: [{ name: "A", value: "2" }] }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
      ["a field added", pod({ ...c, tty: true }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
      ["a field dropped", pod({ name: "d1", image: "busybox:1", env: c.env }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
      ["a list became an object", pod({ ...c, env: { 0: { name: "A", value: "1" } } }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
      ["a value became null", pod({ ...c, env: null }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
      ["a field renamed, same count", pod({ name: "d1", image: "busybox:1", env: c.env, stdinOnce: true }), ['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']],
    ])("%s", (_n, now, expected) => {
      expect(podViolations(now, pod(c))).toEqual(expected);
    });
    // Deep equality at the type edges: a primitive, null or an empty object where the other had another.
    it.each<[string, unknown, unknown]>([
      ["an empty object became an empty string", {}, ""],
      ["an empty string became an empty object", "", {}],
      ["an empty object became null", {}, null],
      ["null became an empty object", null, {}],
      ["an empty list became an empty object", [], {}],
    ])("%s", (_n, before, now) => {
      const old = pod({ name: "d1", image: "x", extra: before });
      expect(podViolations(pod({ name: "d1", image: "x", extra: now }), old)).toEqual(['spec.ephemeralContainers: existing ephemeral containers "d1" may not be changed']);
      expect(podViolations(pod({ name: "d1", image: "x", extra: structuredClone(before) }), old)).toEqual([]);
    });
    it("a pod without ephemeral containers, before and after", () => {
      expect(podViolations({}, {})).toEqual([]);
      expect(podViolations({ spec: {} }, { spec: {} })).toEqual([]);
    });
  });

  it("introducedViolations reports only what the change added", () => {
    const before: PodLike = { metadata: { labels: { "bad key": "v" } } };
    const after: PodLike = { metadata: { labels: { "bad key": "v" }, annotations: { "bad/key/x": "v" } } };
    expect(introducedViolations(before, after)).toEqual(['metadata.annotations: key "bad/key/x" is not a qualified name']);
    expect(introducedViolations(after, after)).toEqual([]);
  });

  it("validatedParts keeps exactly what the rules read, and nothing absent", () => {
    const na = { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } };
    const full: PodLike = {
      metadata: { name: "p", annotations: { a: "1" }, labels: { l: "2" } },
      spec: { containers: [{ name: "c" }], nodeSelector: { n: "3" }, affinity: { nodeAffinity: na, podAffinity: {} }, ephemeralContainers: [{ name: "e" }] },
    };
    expect(validatedParts(full)).toStrictEqual({
      metadata: { annotations: { a: "1" }, labels: { l: "2" } },
      spec: { nodeSelector: { n: "3" }, affinity: { nodeAffinity: na }, ephemeralContainers: [{ name: "e" }] },
    });
    expect(validatedParts({})).toStrictEqual({});
    expect(validatedParts({ metadata: {}, spec: { affinity: {} } })).toStrictEqual({ metadata: {}, spec: {} });
  });
});

describe("placement: how the scheduler parses and matches, at the edges", () => {
  const gt = (bound: string): NodeSelectorRequirement => ({ key: KEY, operator: "Gt", values: [bound] });
  it.each<[string, NodeSelectorRequirement, boolean]>([
    ["In", { key: "k", operator: "In", values: ["a"] }, true],
    ["In, no values", { key: "k", operator: "In", values: [] }, false],
    ["NotIn, values absent", { key: "k", operator: "NotIn" }, false],
    ["Exists", { key: "k", operator: "Exists" }, true],
    ["DoesNotExist with a value", { key: "k", operator: "DoesNotExist", values: ["a"] }, false],
    ["Gt 5", gt("5"), true],
    ["Gt 5x", gt("5x"), false],
    ["Gt x5", gt("x5"), false],
    ["Gt empty", gt(""), false],
    ["Lt with two integers", { key: "k", operator: "Lt", values: ["1", "2"] }, false],
    ["a key that is not a string", { key: 5 as never, operator: "Exists" }, false],
    ["a value that is no label value", { key: "k", operator: "In", values: ["a", "b c"] }, false],
  ])("requirementParses: %s -> %s", (_n, r, ok) => { expect(requirementParses(r)).toBe(ok); });

  it.each<[string, NodeSelectorTerm, boolean]>([
    ["empty lists", { matchExpressions: [], matchFields: [] }, false],
    ["fields only", { matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["n"] }] }, true],
    ["fields with no value", { matchFields: [{ key: "metadata.name", operator: "In", values: [] }] }, false],
    ["fields with values absent", { matchFields: [{ key: "metadata.name", operator: "In" }] }, false],
    ["expressions on another key only", { matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] }, true],
    ["our key In another value", { matchExpressions: [{ key: KEY, operator: "In", values: ["false"] }] }, false],
    ["our key NotIn another value", { matchExpressions: [{ key: KEY, operator: "NotIn", values: ["false"] }] }, true],
    ["a bad expression after a good one", { matchExpressions: [{ key: KEY, operator: "Exists" }, { key: "z", operator: "Bad" }] }, false],
    ["a good expression, a bad field", { matchExpressions: [{ key: KEY, operator: "Exists" }], matchFields: [{ key: "metadata.name", operator: "Gt", values: ["1"] }] }, false],
  ])("termAdmits: %s -> %s", (_n, t, ok) => { expect(termAdmits(t, KEY, "true")).toBe(ok); });

  it.each<[string, string, string, boolean]>([
    ["Gt", "1", "9223372036854775807", true], // int64 max on the node
    ["Gt", "1", "9223372036854775808", false], // one past: the node's value does not parse
    ["Lt", "1", "-9223372036854775808", true], // int64 min on the node
    ["Lt", "1", "-9223372036854775809", false],
    ["Lt", "9223372036854775807", "5", true],
    ["Gt", "4", "5", true], ["Gt", "5", "5", false], ["Gt", "6", "5", false],
    ["Lt", "6", "5", true], ["Lt", "5", "5", false], ["Lt", "4", "5", false],
    ["Gt", "4", "5.0", false], ["Gt", "4", " 5", false],
  ])("%s %s against the node value %j: admits = %s", (operator, bound, value, admits) => {
    expect(placementConflict(required({ matchExpressions: [{ key: KEY, operator, values: [bound] }] }), KEY, value) === undefined).toBe(admits);
  });

  it.each<[string, string[] | undefined, boolean]>([
    ["In", ["a", "true"], true], ["In", ["a"], false], ["NotIn", ["true"], false], ["NotIn", ["a", "b"], true],
    ["Exists", undefined, true], ["DoesNotExist", undefined, false],
  ])("%s %j on our key: admits = %s", (operator, values, admits) => {
    const pod = required({ matchExpressions: [{ key: KEY, operator, ...(values ? { values } : {}) }] });
    expect(placementConflict(pod, KEY, "true")).toBe(admits ? undefined : `required node affinity excludes ${KEY}=true`);
  });

  it("a nodeSelector with the same value and an admitting affinity: no conflict; nodeSelector checked first", () => {
    const pod: PodLike = { spec: { nodeSelector: { [KEY]: "false" }, affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: KEY, operator: "DoesNotExist" }] }] } } } } };
    expect(placementConflict(pod, KEY, "true")).toBe(`nodeSelector ${KEY}=false conflicts with ${KEY}=true`);
    expect(placementConflict({ spec: { nodeSelector: { [KEY]: "true" } } }, KEY, "true")).toBeUndefined();
    expect(placementConflict({ spec: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: {} } } } }, KEY, "true")).toBeUndefined();
  });
});
