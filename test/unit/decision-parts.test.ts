// The small pure parts plan() is made of, each table-tested on its own: where a pod
// may run (placement), which rule admits an image (matchRule), and what an image
// cache choice writes on the pod (imageCacheFor). Found necessary by mutation testing:
// through plan() alone, half of their branches could change without a test failing.
import { describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { ImageCacheIndex, type ImageCacheSpec } from "../../src/imagecache/policy.js";
import { parseReference } from "../../src/image/reference.js";
import { imageCacheFor } from "../../src/mutate/image-cache-choice.js";
import { placementConflict } from "../../src/mutate/placement.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { conversionDecision, matchRule, repositoryMayMatch } from "../../src/mutate/rules.js";

const KEY = "cloud.tencent.com/apparate";

type Expr = { key: string; operator: string; values?: string[] };
const affinity = (...terms: Expr[][]): PodLike => ({
  spec: { containers: [], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms.map((t) => ({ matchExpressions: t })) } } } },
} as unknown as PodLike);

describe("placementConflict: can the pod still land on a node labelled key=true?", () => {
  it.each<[string, PodLike, string | undefined]>([
    ["no spec at all", {} as PodLike, undefined],
    ["no selector, no affinity", { spec: { containers: [] } } as PodLike, undefined],
    ["its own nodeSelector says the same", { spec: { containers: [], nodeSelector: { [KEY]: "true" } } } as PodLike, undefined],
    ["nodeSelector with another value", { spec: { containers: [], nodeSelector: { [KEY]: "false" } } } as PodLike, `nodeSelector ${KEY}=false conflicts with ${KEY}=true`],
    ["nodeSelector on other keys only", { spec: { containers: [], nodeSelector: { zone: "a" } } } as PodLike, undefined],
    ["empty nodeSelectorTerms list", affinity(), undefined],
    ["In with the value", affinity([{ key: KEY, operator: "In", values: ["true"] }]), undefined],
    ["In without the value", affinity([{ key: KEY, operator: "In", values: ["false"] }]), `required node affinity excludes ${KEY}=true`],
    ["In with no values", affinity([{ key: KEY, operator: "In" }]), `required node affinity excludes ${KEY}=true`],
    ["NotIn with the value", affinity([{ key: KEY, operator: "NotIn", values: ["true"] }]), `required node affinity excludes ${KEY}=true`],
    ["NotIn with another value", affinity([{ key: KEY, operator: "NotIn", values: ["false"] }]), undefined],
    // A requirement that does not parse (NewRequirement) makes its term select nothing.
    ["NotIn with no values", affinity([{ key: KEY, operator: "NotIn" }]), `required node affinity excludes ${KEY}=true`],
    ["Exists", affinity([{ key: KEY, operator: "Exists" }]), undefined],
    ["DoesNotExist", affinity([{ key: KEY, operator: "DoesNotExist" }]), `required node affinity excludes ${KEY}=true`],
    // Gt/Lt compare int64: "true" is no integer, so neither matches (labels.Requirement.Matches).
    ["Gt on the label: true is no integer", affinity([{ key: KEY, operator: "Gt", values: ["5"] }]), `required node affinity excludes ${KEY}=true`],
    ["Lt on the label: true is no integer", affinity([{ key: KEY, operator: "Lt", values: ["5"] }]), `required node affinity excludes ${KEY}=true`],
    ["Gt on another key is satisfiable", affinity([{ key: "cpu-gen", operator: "Gt", values: ["5"] }]), undefined],
    ["Gt with a value that is no integer: the term parses to nothing", affinity([{ key: "cpu-gen", operator: "Gt", values: ["five"] }]), `required node affinity excludes ${KEY}=true`],
    ["Gt with two values: the term parses to nothing", affinity([{ key: "cpu-gen", operator: "Gt", values: ["5", "6"] }]), `required node affinity excludes ${KEY}=true`],
    ["Exists with values: the term parses to nothing", affinity([{ key: KEY, operator: "Exists", values: ["true"] }]), `required node affinity excludes ${KEY}=true`],
    ["an unknown operator: the term parses to nothing", affinity([{ key: KEY, operator: "Equals", values: ["true"] }]), `required node affinity excludes ${KEY}=true`],
    ["a key that is no qualified name: the term parses to nothing", affinity([{ key: "not a/valid~key", operator: "Exists" }]), `required node affinity excludes ${KEY}=true`],
    ["In with a value that is no label value: the term parses to nothing", affinity([{ key: "zone", operator: "In", values: ["a b"] }]), `required node affinity excludes ${KEY}=true`],
    ["expressions on other keys only", affinity([{ key: "zone", operator: "In", values: ["a"] }]), undefined],
    // nodeaffinity.go: "nil or empty term selects no objects".
    ["an empty term selects no node", { spec: { containers: [], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{}] } } } } } as unknown as PodLike, `required node affinity excludes ${KEY}=true`],
    ["an empty term ORed with an admitting one", affinity([], [{ key: KEY, operator: "In", values: ["true"] }]), undefined],
    ["matchFields on the node name only: satisfiable", { spec: { containers: [], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: "metadata.name", operator: "In", values: ["node-1"] }] }] } } } } } as unknown as PodLike, undefined],
    ["matchFields with two values: the term parses to nothing", { spec: { containers: [], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: "metadata.name", operator: "In", values: ["node-1", "node-2"] }] }] } } } } } as unknown as PodLike, `required node affinity excludes ${KEY}=true`],
    ["matchFields with Exists: the term parses to nothing", { spec: { containers: [], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: "metadata.name", operator: "Exists" }] }] } } } } } as unknown as PodLike, `required node affinity excludes ${KEY}=true`],
    ["matchExpressions and matchFields ANDed", { spec: { containers: [], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: KEY, operator: "DoesNotExist" }], matchFields: [{ key: "metadata.name", operator: "In", values: ["node-1"] }] }] } } } } } as unknown as PodLike, `required node affinity excludes ${KEY}=true`],
    ["terms are ORed: one excluding term, one admitting", affinity([{ key: KEY, operator: "DoesNotExist" }], [{ key: KEY, operator: "Exists" }]), undefined],
    ["terms are ORed: both excluding", affinity([{ key: KEY, operator: "DoesNotExist" }], [{ key: KEY, operator: "In", values: ["no"] }]), `required node affinity excludes ${KEY}=true`],
    ["expressions are ANDed: one excluding is enough", affinity([{ key: "zone", operator: "In", values: ["a"] }, { key: KEY, operator: "NotIn", values: ["true"] }]), `required node affinity excludes ${KEY}=true`],
    ["an affinity without nodeAffinity (pod affinity only)", { spec: { containers: [], affinity: { podAffinity: {} } } } as unknown as PodLike, undefined],
    ["preferred affinity never conflicts", { spec: { containers: [], affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, preference: { matchExpressions: [{ key: KEY, operator: "DoesNotExist" }] } }] } } } } as unknown as PodLike, undefined],
  ])("%s", (_name, pod, expected) => {
    expect(placementConflict(pod, KEY, "true")).toBe(expected);
  });

  // A node label value that is an integer: Gt/Lt compare numerically, as int64.
  it.each<[string, string, string, boolean]>([
    ["Gt", "5", "7", true], ["Gt", "7", "7", false], ["Lt", "8", "7", true], ["Lt", "7", "7", false],
    // A sign is no label value: NewRequirement refuses "-1" (validateLabelValue), so the term selects nothing.
    ["Gt", "-1", "0", false], ["Gt", "+1", "2", false], ["Lt", "9223372036854775807", "9223372036854775806", true],
    ["Gt", "9223372036854775808", "1", false], // out of int64: does not parse
  ])("%s %s against the value %s: admits = %s", (operator, bound, value, admits) => {
    expect(placementConflict(affinity([{ key: KEY, operator, values: [bound] }]), KEY, value) === undefined).toBe(admits);
  });
});

describe("matchRule: registry allow-list, then rules by registry namespace, repository and tag", () => {
  const config = compileConfig({ acceleration: {
    registries: ["registry.example.com", "harbor.example.com"],
    rules: [
      { name: "team-web", registry: "registry.example.com", namespace: "team", repository: "web", tag: "v.*" },
      { name: "top-level", registry: "harbor.example.com", namespace: "" },
    ],
  } });
  const open = compileConfig({ acceleration: { registries: ["*"] } });
  const listed = compileConfig({ acceleration: { registries: ["quay.io"] } });

  it.each<[string, typeof config, string, string | { reason: string }]>([
    ["no rules, any registry", open, "quay.io/org/app:1", "registry *"],
    ["no rules, a listed registry", listed, "quay.io/org/app:1", "registry quay.io"],
    ["no rules, a registry not listed", listed, "docker.io/library/nginx:1", { reason: "registry docker.io is not in acceleration.registries" }],
    ["every part matches", config, "registry.example.com/team/web:v1", "team-web"],
    ["another registry namespace", config, "registry.example.com/other/web:v1", { reason: "no acceleration rule matches" }],
    ["the rule's registry differs", config, "harbor.example.com/team/web:v1", { reason: "no acceleration rule matches" }],
    ["the tag does not match", config, "registry.example.com/team/web:latest", { reason: "no acceleration rule matches" }],
    ["no tag means latest", config, "registry.example.com/team/web", { reason: "no acceleration rule matches" }],
    ["namespace '' selects repositories without one", config, "harbor.example.com/app:1", "top-level"],
    ["namespace '' does not select a namespaced repository", config, "harbor.example.com/proj/app:1", { reason: "no acceleration rule matches" }],
  ])("%s: %s", (_name, cfg, image, expected) => {
    const m = matchRule(parseReference(image), cfg);
    expect(m).toEqual(typeof expected === "string" ? { matched: true, rule: expected } : { matched: false, reason: expected.reason });
  });

  it.each<[string, string, boolean]>([
    ["registry.example.com", "team/web", true],
    ["registry.example.com", "team/api", false],
    ["registry.example.com", "other/web", false],
    ["harbor.example.com", "app", true],
    ["harbor.example.com", "proj/app", false],
    ["quay.io", "team/web", false],
  ])("repositoryMayMatch(%s, %s) = %s (the rules without their tag)", (domain, path, expected) => {
    expect(repositoryMayMatch(domain, path, config)).toBe(expected);
  });

  it("repositoryMayMatch: a rule without registry or namespace still needs the registry allowed", () => {
    const loose = compileConfig({ acceleration: { registries: ["a.example"], rules: [{ repository: "app" }] } });
    expect(repositoryMayMatch("a.example", "team/app", loose)).toBe(true);
    expect(repositoryMayMatch("a.example", "app", loose)).toBe(true);
    expect(repositoryMayMatch("b.example", "team/app", loose)).toBe(false);
    expect(repositoryMayMatch("a.example", "team/web", loose)).toBe(false);
  });

  it("repositoryMayMatch: disabled acceleration selects nothing; no rules select every repository", () => {
    expect(repositoryMayMatch("quay.io", "a/b", compileConfig({ acceleration: { enabled: false, registries: ["*"] } }))).toBe(false);
    expect(repositoryMayMatch("quay.io", "a/b", listed)).toBe(true);
  });
});

describe("imageCacheFor: what a chosen cache writes on the pod", () => {
  const NOW = Date.parse("2026-11-22T12:00:00Z");
  const DAY = 86_400_000;
  const cache = (name: string, images: string[], o: Partial<ImageCacheSpec> = {}): ImageCacheSpec =>
    ({ name, images, created: NOW - 2 * DAY, size: 20, retentionDays: 0, imcId: `imc-${name}`, phase: "Ready", ...o });
  const view = new ImageCacheIndex();
  view.upsert(cache("web", ["nginx:1.25", "busybox:1.36"]));
  view.upsert(cache("small", ["nginx:1.25"], { size: 5 }));
  view.upsert(cache("stale", ["nginx:1.25"], { phase: "Pending" }));
  const config = compileConfig({ imageCache: { enabled: true } });
  const pod = (annotations?: Record<string, string>, labels?: Record<string, string>): PodLike =>
    ({ metadata: { ...(annotations ? { annotations } : {}), ...(labels ? { labels } : {}) }, spec: { containers: [] } }) as PodLike;
  const containers = [{ kind: "containers", image: "nginx:1.25" }, { kind: "initContainers", image: "busybox:1.36" }];
  const MATCH = "apparate.io/image-cache-match";
  const USE = "eks.tke.cloud.tencent.com/use-image-cache";

  it("chooses by the pod's images, init containers included, ephemeral containers and empty images not", () => {
    const out = imageCacheFor(pod(), [...containers, { kind: "ephemeralContainers", image: "debug:1" }, { kind: "containers", image: "" }], view, NOW, config);
    expect(out.decision).toEqual({ result: "used", cache: "web", imcId: "imc-web", reason: "imc-web (web, 20 GiB) holds 2 of 2 images" });
    expect(out.annotations[USE]).toBe("imc-web");
    expect(JSON.parse(out.annotations[MATCH]!)).toEqual({ cache: "web", imcId: "imc-web", images: 2, sizeGiB: 20, ageDays: 2, mode: "all" });
    expect(out.labels).toEqual({ "apparate.io/image-cache": "used" });
    expect(out.warning).toBe("apparate: image cache: imc-web (web, 20 GiB) holds 2 of 2 images");
  });

  it("with write: auto, the platform is told `auto`; an annotation already saying so is not rewritten", () => {
    const auto = compileConfig({ imageCache: { enabled: true, write: "auto" } });
    expect(imageCacheFor(pod(), containers, view, NOW, auto).annotations[USE]).toBe("auto");
    const again = imageCacheFor(pod({ [USE]: "auto" }), containers, view, NOW, auto);
    expect(again.annotations[USE]).toBeUndefined();
    expect(again.annotations[MATCH]).toBeDefined();
  });

  it("a pod without metadata is chosen for like any other", () => {
    expect(imageCacheFor({ spec: { containers: [] } } as PodLike, containers, view, NOW, config).decision.imcId).toBe("imc-web");
  });

  it("with matchMode most, the reason counts the images left out", () => {
    const most = compileConfig({ imageCache: { enabled: true, matchMode: "most" } });
    const out = imageCacheFor(pod(), [...containers, { kind: "containers", image: "redis:7" }], view, NOW, most);
    expect(out.decision.reason).toBe("imc-web (web, 20 GiB) holds 2 of 3 images");
  });

  it("a label already right is not written again", () => {
    expect(imageCacheFor(pod(undefined, { "apparate.io/image-cache": "used" }), containers, view, NOW, config).labels).toEqual({});
  });

  it("no cache holds the images: missed, with the policy's reason", () => {
    const out = imageCacheFor(pod(), [{ kind: "containers", image: "redis:7" }], view, NOW, config);
    expect(out.decision.result).toBe("missed");
    expect(out.decision.reason).toMatch(/^no cache used: /);
    expect(out.annotations).toEqual({});
  });

  it.each<[string, Record<string, string>, object]>([
    ["a manual id of a ready cache is kept", { [USE]: "imc-small" }, { result: "manual", reason: "imc-small chosen by the pod", cache: "small", imcId: "imc-small" }],
    ["a manual id of a cache not ready", { [USE]: "imc-stale" }, { result: "manual-not-ready", reason: "imc-stale is not a ready image cache; the platform will pull images normally" }],
    ["a manual id nobody knows", { [USE]: "imc-gone" }, { result: "manual-not-ready", reason: "imc-gone is not a ready image cache; the platform will pull images normally" }],
  ])("%s", (_name, ann, expected) => {
    const out = imageCacheFor(pod(ann), containers, view, NOW, config);
    expect(out.decision).toEqual(expected);
    expect(out.annotations).toEqual({});
  });

  it.each<[string, Record<string, string>, object | undefined]>([
    ["apparate's earlier choice (id) is kept as it is", { [MATCH]: '{"cache":"small","imcId":"imc-small"}', [USE]: "imc-small" }, { result: "used", reason: "imc-small (small) already chosen by apparate", cache: "small", imcId: "imc-small" }],
    ["apparate's earlier choice written as auto keeps the recorded id", { [MATCH]: '{"cache":"small","imcId":"imc-small"}', [USE]: "auto" }, { result: "used", reason: "imc-small (small) already chosen by apparate", cache: "small", imcId: "imc-small" }],
    ["apparate's earlier choice with the id since changed by hand keeps the hand-written id", { [MATCH]: '{"cache":"small","imcId":"imc-small"}', [USE]: "imc-web" }, { result: "used", reason: "imc-small (small) already chosen by apparate", cache: "small", imcId: "imc-web" }],
    ["a broken record is decided again", { [MATCH]: "{not json", [USE]: "auto" }, undefined],
    ["a record without the cache name is decided again", { [MATCH]: '{"imcId":"imc-small"}', [USE]: "auto" }, undefined],
    ["a record without the id is decided again", { [MATCH]: '{"cache":"small"}', [USE]: "auto" }, undefined],
    ["a record without the use annotation is decided again", { [MATCH]: '{"cache":"small","imcId":"imc-small"}' }, undefined],
  ])("%s", (_name, ann, prior) => {
    const out = imageCacheFor(pod(ann), containers, view, NOW, config);
    if (prior) {
      expect(out.decision).toEqual(prior);
      expect(out.annotations).toEqual({});
    } else {
      // Decided afresh: the best cache for the images, written out again.
      expect(out.decision.imcId).toBe("imc-web");
      expect(out.annotations[MATCH]).toContain('"cache":"web"');
    }
  });
});

describe("conversionDecision: the guards before the rules", () => {
  const config = compileConfig({ acceleration: { registries: ["*"] } });
  it.each<[string, string, object]>([
    ["a digest without a tag", `quay.io/org/app@sha256:${"a".repeat(64)}`, { convert: false, reason: "no tag: an accelerated image is named after the source's tag" }],
    ["a tag and a digest: the tag names the variant", `quay.io/org/app:1@sha256:${"a".repeat(64)}`, { convert: true, rule: "registry *", target: { domain: "quay.io", path: "org/app", tag: "1-apparate" } }],
    ["no tag means latest", "quay.io/org/app", { convert: true, rule: "registry *", target: { domain: "quay.io", path: "org/app", tag: "latest-apparate" } }],
    ["tag + suffix exactly 128 characters", `quay.io/org/app:${"a".repeat(119)}`, { convert: true, rule: "registry *", target: { domain: "quay.io", path: "org/app", tag: `${"a".repeat(119)}-apparate` } }],
    ["tag + suffix 129 characters", `quay.io/org/app:${"b".repeat(120)}`, { convert: false, reason: `tag ${"b".repeat(40)}… + -apparate would exceed 128 characters` }],
  ])("%s", (_name, image, expected) => {
    expect(conversionDecision(parseReference(image), config)).toEqual(expected);
  });

  it("acceleration disabled converts nothing, and says so", () => {
    expect(conversionDecision(parseReference("quay.io/org/app:1"), compileConfig({ acceleration: { enabled: false, registries: ["*"] } })))
      .toEqual({ convert: false, reason: "acceleration.enabled is false" });
  });
});
