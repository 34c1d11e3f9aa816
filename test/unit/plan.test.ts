import { describe, expect, it } from "vitest";
import jsonpatch from "fast-json-patch";
import { compileConfig } from "../../src/config/config.js";
import { candidatesOf, plan, type Facts, type PlanInput } from "../../src/mutate/plan.js";
import { applyPlan, toPatch } from "../../src/mutate/patch.js";
import type { PodLike } from "../../src/mutate/pod.js";
import type { LookupResult } from "../../src/registry/result.js";
import { REG, webPod } from "../support/pods.js";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const config = compileConfig({
  namespaces: "default,sa1,sa2",
  releaseNamespace: "apparate-system",
  acceleration: { registries: [REG, "ccr.ccs.tencentyun.com"] },
});

/** Facts where the listed accelerated refs exist and everything else is absent. */
function facts(input: PlanInput, exists: string[], cfg = config, unknown: string[] = []): Facts {
  const lookups = new Map<string, LookupResult>();
  for (const c of candidatesOf(input, cfg)) {
    lookups.set(c.key, unknown.includes(c.key) ? { kind: "unknown", reason: "timed out" }
      : exists.includes(c.key) ? { kind: "exists", mediaType: OCI } : { kind: "absent", reason: "does not exist" });
  }
  return { lookups, now: 0 };
}

const run = (pod: PodLike, exists: string[], opts: Partial<PlanInput> = {}, cfg = config, unknown: string[] = []) => {
  const input: PlanInput = { pod, namespace: "default", operation: "CREATE", ...opts };
  const p = plan(input, facts(input, exists, cfg, unknown), cfg);
  return { p, patched: applyPlan(pod, p), patch: toPatch(pod, p) };
};

describe("tag swap", () => {
  it("swaps every container whose -apparate tag exists, init containers included, and pins the node", () => {
    const { p, patched } = run(webPod(), [`${REG}/team/web:1.4.2-apparate`, `${REG}/team/migrate:v3-apparate`]);
    expect(patched.spec!.containers![0]!.image).toBe(`${REG}/team/web:1.4.2-apparate`);
    expect(patched.spec!.initContainers![0]!.image).toBe(`${REG}/team/migrate:v3-apparate`);
    expect(patched.spec!.containers![1]!.image).toBe("envoyproxy/envoy:v1.30.1");
    expect(patched.spec!.nodeSelector).toEqual({ "cloud.tencent.com/apparate": "true" });
    expect(JSON.parse(patched.metadata!.annotations!["apparate.io/original-images"]!)).toEqual({
      "init:migrate": `${REG}/team/migrate:v3`, app: `${REG}/team/web:1.4.2`,
    });
    expect(p.containers.find((d) => d.name === "proxy")!.outcome).toBe("not-eligible");
    expect(p.warnings).toEqual([]);
  });

  it.each([
    // image, exists, expected outcome, expected image, warns
    [`${REG}/team/web`, [`${REG}/team/web:latest-apparate`], "accelerated", `${REG}/team/web:latest-apparate`, false],
    [`${REG}/team/web:2`, [], "accelerated-absent", `${REG}/team/web:2`, true],
    [`${REG}/team/web:2@sha256:${"a".repeat(64)}`, [], "digest-pinned", `${REG}/team/web:2@sha256:${"a".repeat(64)}`, true],
    [`${REG}/team/web:${"t".repeat(120)}`, [], "tag-too-long", `${REG}/team/web:${"t".repeat(120)}`, true],
    [`${REG}/team/web:1-apparate`, [], "already-handled", `${REG}/team/web:1-apparate`, false],
    [`${REG}/Team/web:1`, [], "invalid-reference", `${REG}/Team/web:1`, true],
    ["ccr.ccs.tencentyun.com/ns/app:v1", ["ccr.ccs.tencentyun.com/ns/app:v1-apparate"], "accelerated", "ccr.ccs.tencentyun.com/ns/app:v1-apparate", false],
    ["nginx:1.25", ["docker.io/library/nginx:1.25-apparate"], "not-eligible", "nginx:1.25", false],
  ])("%s -> %s", (image, exists, outcome, result, warns) => {
    const pod = webPod({ initContainers: [], containers: [{ name: "c", image }] });
    const { p, patched } = run(pod, exists);
    expect(p.containers[0]!.outcome).toBe(outcome);
    expect(patched.spec!.containers![0]!.image).toBe(result);
    expect(p.warnings.length > 0).toBe(warns);
  });

  it("an unknown registry answer leaves the container unchanged with a warning", () => {
    const { p, patch } = run(webPod(), [], {}, config, [`${REG}/team/web:1.4.2-apparate`]);
    expect(p.containers.find((d) => d.name === "app")!.outcome).toBe("lookup-unknown");
    expect(p.warnings.some((w) => w.includes("container app") && w.includes("timed out"))).toBe(true);
    expect(patch).toEqual([]);
  });

  it("a configurable suffix", () => {
    const cfg = compileConfig({ acceleration: { registries: [REG], tagSuffix: "-esgz" } });
    const { patched } = run(webPod(), [`${REG}/team/web:1.4.2-esgz`], {}, cfg);
    expect(patched.spec!.containers![0]!.image).toBe(`${REG}/team/web:1.4.2-esgz`);
  });

  it("seed-000 rules: registry namespace, repository regex, tag regex", () => {
    const cfg = compileConfig({ acceleration: { registries: [REG], rules: [{ name: "team-web-releases", namespace: "team", repository: "web|api", tag: "v?\\d+\\.\\d+\\.\\d+" }] } });
    const pod = webPod({ initContainers: [], containers: [
      { name: "a", image: `${REG}/team/web:1.4.2` }, { name: "b", image: `${REG}/team/web:latest` },
      { name: "c", image: `${REG}/other/web:1.4.2` }, { name: "d", image: `${REG}/team/webby:1.4.2` },
    ] });
    const input: PlanInput = { pod, namespace: "default", operation: "CREATE" };
    expect(candidatesOf(input, cfg).map((c) => c.name)).toEqual(["a"]);
    expect(candidatesOf(input, cfg)[0]!.rule).toBe("team-web-releases");
  });
});

describe("placement", () => {
  const swapped = [`${REG}/team/web:1.4.2-apparate`];
  it("keeps existing nodeSelector keys and adds ours", () => {
    const { patched } = run(webPod({ nodeSelector: { "kubernetes.io/os": "linux" } }), swapped);
    expect(patched.spec!.nodeSelector).toEqual({ "kubernetes.io/os": "linux", "cloud.tencent.com/apparate": "true" });
  });

  it("a conflicting selector value means no swap and a warning", () => {
    const { p, patch } = run(webPod({ nodeSelector: { "cloud.tencent.com/apparate": "false" } }), swapped);
    expect(p.containers.find((d) => d.name === "app")!.outcome).toBe("placement-conflict");
    expect(p.warnings.join("\n")).toContain("conflicts");
    expect(patch).toEqual([]);
  });

  it("required node affinity that excludes the label is a conflict", () => {
    const affinity = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "cloud.tencent.com/apparate", operator: "DoesNotExist" }] }] } } };
    const { p } = run(webPod({ affinity }), swapped);
    expect(p.containers.find((d) => d.name === "app")!.outcome).toBe("placement-conflict");
  });

  it("preferred mode adds a weighted preference instead of a selector", () => {
    const cfg = compileConfig({ acceleration: { registries: [REG], placement: { mode: "preferred", weight: 50 } } });
    const { patched } = run(webPod(), swapped, {}, cfg);
    expect(patched.spec!.nodeSelector).toBeUndefined();
    expect(patched.spec!.affinity!.nodeAffinity!.preferredDuringSchedulingIgnoredDuringExecution).toEqual([
      { weight: 50, preference: { matchExpressions: [{ key: "cloud.tencent.com/apparate", operator: "In", values: ["true"] }] } },
    ]);
  });

  it("no swap, no placement", () => {
    const { p } = run(webPod(), []);
    expect(p.placement).toBeUndefined();
  });
});

describe("registry host rewrite (seed 004) and how it composes with the swap", () => {
  const cfg = compileConfig({
    acceleration: { registries: ["quay.io"] },
    rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com", "docker.io": "mirror.ccs.tencentyun.com", "ghcr.io": "harbor.example.com/ghcr-proxy" } },
  });
  it.each([
    ["nginx", [], "mirror.ccs.tencentyun.com/library/nginx:latest", "rewritten"],
    ["index.docker.io/library/redis:7", [], "mirror.ccs.tencentyun.com/library/redis:7", "rewritten"],
    [`nginx@sha256:${"b".repeat(64)}`, [], `mirror.ccs.tencentyun.com/library/nginx@sha256:${"b".repeat(64)}`, "rewritten"],
    ["quay.io/coreos/etcd:v3.5.0", ["quay.io/coreos/etcd:v3.5.0-apparate"], "quay.tencentcloudcr.com/coreos/etcd:v3.5.0-apparate", "accelerated+rewritten"],
    ["quay.io/coreos/etcd:v3.5.1", [], "quay.tencentcloudcr.com/coreos/etcd:v3.5.1", "rewritten"],
    ["gcr.io/distroless/static:nonroot", [], "gcr.io/distroless/static:nonroot", "not-eligible"],
    ["ghcr.io/org/tool:2", [], "harbor.example.com/ghcr-proxy/org/tool:2", "rewritten"],
  ])("%s -> %s", (image, exists, result, outcome) => {
    const pod = webPod({ initContainers: [], containers: [{ name: "c", image }] });
    const { p, patched } = run(pod, exists, {}, cfg);
    expect(patched.spec!.containers![0]!.image).toBe(result);
    expect(p.containers[0]!.outcome).toBe(outcome);
    // Rewrites alone do not pin the node: any node can pull from a mirror.
    expect(Boolean(p.placement)).toBe(outcome.startsWith("accelerated"));
  });
});

describe("who is touched", () => {
  it.each([
    ["kube-system", undefined, {}, "never mutated"],
    ["apparate-system", undefined, {}, "never mutated"],
    ["prod", undefined, {}, "not enabled"],
    ["kube-system", { "apparate.io/inject": "enabled" }, {}, "never mutated"],
    ["default", undefined, { "apparate.io/inject": "false" }, "opted out"],
    ["default", undefined, { "kubernetes.io/config.mirror": "abc" }, "mirror"],
  ])("namespace %s labels %j annotations %j: skipped (%s)", (ns, labels, annotations, why) => {
    const pod = webPod({}, { annotations: annotations as Record<string, string> });
    const input: PlanInput = { pod, namespace: ns, operation: "CREATE", ...(labels ? { namespaceLabels: labels } : {}) };
    const p = plan(input, facts(input, [`${REG}/team/web:1.4.2-apparate`]), config);
    expect(p.skipped).toContain(why);
    expect(toPatch(pod, p)).toEqual([]);
  });

  it.each([["sa1", undefined], ["sa2", undefined], ["labelled", { "apparate.io/inject": "enabled" }]])("namespace %s is handled", (ns, labels) => {
    const pod = webPod();
    const input: PlanInput = { pod, namespace: ns, operation: "CREATE", ...(labels ? { namespaceLabels: labels } : {}) };
    expect(plan(input, facts(input, [`${REG}/team/web:1.4.2-apparate`]), config).skipped).toBeUndefined();
  });

  it("ephemeral containers only when enabled, and then without placement or annotations", () => {
    const pod = webPod({ nodeName: "node-1", ephemeralContainers: [{ name: "debug", image: `${REG}/team/debug:1` }] });
    const oldPod = webPod({ nodeName: "node-1" });
    const off = run(pod, [`${REG}/team/debug:1-apparate`], { operation: "UPDATE", subResource: "ephemeralcontainers", oldPod });
    expect(off.p.skipped).toContain("ephemeral");
    const cfg = compileConfig({ acceleration: { registries: [REG], ephemeralContainers: true } });
    const on = run(pod, [`${REG}/team/debug:1-apparate`], { operation: "UPDATE", subResource: "ephemeralcontainers", oldPod }, cfg);
    expect(on.patch).toEqual([{ op: "replace", path: "/spec/ephemeralContainers/0/image", value: `${REG}/team/debug:1-apparate` }]);
  });
});

describe("idempotency", () => {
  it("a reinvoked review of a handled pod changes nothing; a sidecar added later is handled", () => {
    const exists = [`${REG}/team/web:1.4.2-apparate`, `${REG}/team/migrate:v3-apparate`, `${REG}/team/sidecar:1-apparate`];
    const first = run(webPod(), exists);
    const again = run(first.patched, exists);
    expect(again.patch).toEqual([]);
    const withSidecar = structuredClone(first.patched);
    withSidecar.spec!.containers!.push({ name: "sidecar", image: `${REG}/team/sidecar:1` });
    const third = run(withSidecar, exists);
    expect(third.patched.spec!.containers![3]!.image).toBe(`${REG}/team/sidecar:1-apparate`);
    expect(Object.keys(JSON.parse(third.patched.metadata!.annotations!["apparate.io/original-images"]!))).toEqual(["init:migrate", "app", "sidecar"]);
    expect(run(third.patched, exists).patch).toEqual([]);
  });

  it("every patch applies to the submitted pod and gives the planned pod", () => {
    const pod = webPod({ nodeSelector: { zone: "a" } });
    const { patched, patch } = run(pod, [`${REG}/team/web:1.4.2-apparate`]);
    const applied = jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument;
    expect(applied).toEqual(patched);
  });
});

describe("names from the pod are data, not object keys", () => {
  it.each(["constructor", "__proto__", "hasOwnProperty", "toString", "valueOf"])("a container named %s is accelerated and its original image recorded as its own key", (name) => {
    const pod = webPod({ initContainers: [], containers: [{ name, image: `${REG}/team/web:1.4.2` }] });
    const { p, patched, patch } = run(pod, [`${REG}/team/web:1.4.2-apparate`]);
    expect(p.containers[0]!.outcome).toBe("accelerated");
    expect(patched.spec!.containers![0]!.image).toBe(`${REG}/team/web:1.4.2-apparate`);
    const recorded = JSON.parse(patched.metadata!.annotations!["apparate.io/original-images"]!);
    expect(Object.hasOwn(recorded, name)).toBe(true);
    expect(recorded[name]).toBe(`${REG}/team/web:1.4.2`);
    // The patch carries the same record (applied by the API server, not by applyPlan).
    const out = jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument as PodLike;
    expect(Object.hasOwn(JSON.parse(out.metadata!.annotations!["apparate.io/original-images"]!), name)).toBe(true);
    // Reinvocation: now it is already handled, by its own record.
    expect(run(out, [`${REG}/team/web:1.4.2-apparate`]).p.containers[0]!.outcome).toBe("already-handled");
  });
});
