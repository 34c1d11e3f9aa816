// plan()'s smaller decisions with their exact words: scope by operation, a broken record
// of original images, containers without an image, the tag-length boundary, the reasons
// and warnings the user reads. Found necessary by mutation testing (issue 24 item 7).
import { describe, expect, it } from "vitest";
import { compileConfig, type Config } from "../../src/config/config.js";
import { candidatesOf, plan, scopeOf, type Facts, type PlanInput } from "../../src/mutate/plan.js";
import { containerKey, type ContainerKind, type PodLike } from "../../src/mutate/pod.js";
import type { LookupResult } from "../../src/registry/result.js";
import { REG, webPod } from "../support/pods.js";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const config = compileConfig({ acceleration: { registries: [REG], ephemeralContainers: true }, rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } } });
const one = (image: string | undefined, kind: "containers" | "initContainers" = "containers"): PodLike =>
  webPod({ initContainers: [], containers: [], [kind]: [{ name: "c", ...(image !== undefined ? { image } : {}) }] });
function run(pod: PodLike, answer: (key: string) => LookupResult | undefined, cfg: Config = config, opts: Partial<PlanInput> = {}) {
  const input: PlanInput = { pod, namespace: "default", operation: "CREATE", ...opts };
  const lookups = new Map<string, LookupResult>();
  for (const c of candidatesOf(input, cfg)) { const a = answer(c.key); if (a) lookups.set(c.key, a); }
  const facts: Facts = { lookups, now: 0 };
  return plan(input, facts, cfg);
}
const exists = (): LookupResult => ({ kind: "exists", mediaType: OCI });

describe("scope by operation", () => {
  it.each<[Partial<PlanInput>, string | undefined]>([
    [{ operation: "CREATE" }, undefined],
    [{ operation: "CREATE", subResource: "binding" }, "subresource binding"],
    [{ operation: "UPDATE" }, "only CREATE and ephemeral containers are handled"],
    [{ operation: "UPDATE", subResource: "status" }, "only CREATE and ephemeral containers are handled"],
    [{ operation: "UPDATE", subResource: "ephemeralcontainers", oldPod: webPod() }, undefined],
  ])("%j -> %s", (opts, skipped) => {
    expect(scopeOf({ pod: webPod(), namespace: "default", operation: "CREATE", ...opts } as PlanInput, config).skipped).toBe(skipped);
  });
  it("a pod without metadata is in scope", () => {
    expect(scopeOf({ pod: { spec: { containers: [] } }, namespace: "default", operation: "CREATE" }, config).skipped).toBeUndefined();
  });
});

describe("the record of original images", () => {
  it.each([["not JSON", "{"], ["a list", '["a"]'], ["a string", '"x"'], ["null", "null"], ["empty", ""]])("%s is treated as absent: the container is planned again", (_n, raw) => {
    const pod = one(`${REG}/team/web:1`);
    pod.metadata!.annotations = { "apparate.io/original-images": raw };
    expect(run(pod, exists).containers[0]!.outcome).toBe("accelerated");
  });
  it("a recorded entry that is not a string does not count", () => {
    const pod = one(`${REG}/team/web:1`);
    pod.metadata!.annotations = { "apparate.io/original-images": '{"c": 5}' };
    expect(run(pod, exists).containers[0]!.outcome).toBe("accelerated");
  });
  it("a recorded string entry makes it already handled", () => {
    const pod = one(`${REG}/team/web:1`);
    pod.metadata!.annotations = { "apparate.io/original-images": `{"c": "${REG}/team/web:0"}` };
    expect(run(pod, exists).containers[0]).toMatchObject({ outcome: "already-handled", original: `${REG}/team/web:0`, reason: "already handled by apparate", warn: false });
  });
});

describe("decisions and their words", () => {
  it.each<[string, string | undefined, string, string, boolean]>([
    ["no image", undefined, "no-image", "container has no image", false],
    ["an empty image", "", "no-image", "container has no image", false],
    ["an accelerated tag", `${REG}/team/web:1-apparate`, "already-handled", "tag already ends with -apparate", false],
    ["a registry not listed", "gcr.io/x/y:1", "not-eligible", "registry gcr.io is not in acceleration.registries", false],
  ])("%s", (_n, image, outcome, reason, warn) => {
    expect(run(one(image), exists).containers[0]).toMatchObject({ outcome, reason, warn });
  });

  it("a tag of exactly 128 characters after the suffix is swapped; one more is too long", () => {
    const at = `${REG}/team/web:${"t".repeat(128 - "-apparate".length)}`;
    expect(run(one(at), exists).containers[0]!.outcome).toBe("accelerated");
    const over = run(one(`${at}t`), exists).containers[0]!;
    expect(over.outcome).toBe("tag-too-long");
    expect(over.reason).toBe(`tag ${("t".repeat(120) + "-apparate").slice(0, 40)}… would exceed 128 characters`);
  });

  it("reasons: exists, absent, unknown in time or with a cause; long references are cut at 100", () => {
    const key = `${REG}/team/web:1-apparate`;
    expect(run(one(`${REG}/team/web:1`), exists).containers[0]!.reason).toBe(`accelerated: ${key} exists (${OCI})`);
    expect(run(one(`${REG}/team/web:1`), () => ({ kind: "absent", reason: "does not exist" })).containers[0]!.reason).toBe(`not accelerated: ${key} does not exist`);
    expect(run(one(`${REG}/team/web:1`), () => undefined).containers[0]!.reason).toBe(`not accelerated: could not check ${key} in time (deadline exceeded)`);
    expect(run(one(`${REG}/team/web:1`), () => ({ kind: "unknown", reason: "HTTP 500" })).containers[0]!.reason).toBe(`not accelerated: could not check ${key} (HTTP 500)`);
    const long = `${REG}/team/${"r".repeat(120)}:1`;
    const cut = `${REG}/team/${"r".repeat(120)}:1-apparate`.slice(0, 100) + "…";
    expect(run(one(long), () => ({ kind: "absent", reason: "does not exist" })).containers[0]!.reason).toBe(`not accelerated: ${cut} does not exist`);
    const exactly = `${REG}/t/${"r".repeat(100 - `${REG}/t/`.length - ":1-apparate".length)}:1`;
    expect(run(one(exactly), () => ({ kind: "absent", reason: "x" })).containers[0]!.reason).toBe(`not accelerated: ${exactly}-apparate x`);
  });

  it("a rewrite: its own reason, or appended to the swap's; never a warning", () => {
    const plain = run(one("quay.io/a/b:1"), exists).containers[0]!;
    expect(plain).toMatchObject({ outcome: "rewritten", reason: "registry quay.io rewritten to quay.tencentcloudcr.com", warn: false });
    const cfg = compileConfig({ acceleration: { registries: ["quay.io"] }, rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } } });
    const absent = run(one("quay.io/a/b:1"), () => ({ kind: "absent", reason: "does not exist" }), cfg).containers[0]!;
    expect(absent).toMatchObject({ outcome: "rewritten", reason: "registry quay.io rewritten to quay.tencentcloudcr.com", warn: false });
    const both = run(one("quay.io/a/b:1"), exists, cfg).containers[0]!;
    expect(both.reason).toBe(`accelerated: quay.io/a/b:1-apparate exists (${OCI}); registry quay.io rewritten to quay.tencentcloudcr.com`);
  });

  it("acceleration disabled: not-eligible, 'acceleration is disabled'", () => {
    const cfg = compileConfig({ acceleration: { enabled: false, registries: [REG] } });
    expect(run(one(`${REG}/team/web:1`), exists, cfg).containers[0]).toMatchObject({ outcome: "not-eligible", reason: "acceleration is disabled", warn: false });
  });

  it("warnings name the kind of container", () => {
    const absent = () => ({ kind: "absent", reason: "does not exist" }) as LookupResult;
    expect(run(one(`${REG}/team/web:1`), absent).warnings[0]).toMatch(/^apparate: container c: not accelerated/);
    expect(run(one(`${REG}/team/web:1`, "initContainers"), absent).warnings[0]).toMatch(/^apparate: init container c: not accelerated/);
    const running = webPod({ nodeName: "n" });
    const withDebug = webPod({ nodeName: "n", ephemeralContainers: [{ name: "c", image: `${REG}/team/web:1` }] });
    expect(run(withDebug, absent, config, { operation: "UPDATE", subResource: "ephemeralcontainers", oldPod: running }).warnings[0]).toMatch(/^apparate: ephemeral container c: not accelerated/);
  });

  it("placement mode none: swapped without placement, never a conflict", () => {
    const cfg = compileConfig({ acceleration: { registries: [REG], placement: { mode: "none" } } });
    const pod = one(`${REG}/team/web:1`);
    pod.spec!.nodeSelector = { "cloud.tencent.com/apparate": "false" };
    const p = run(pod, exists, cfg);
    expect(p.containers[0]!.outcome).toBe("accelerated");
    expect(p.placement).toBeUndefined();
    expect(p.annotations["apparate.io/actions"]).toBe("accelerated=1");
  });

  it("an ephemeral update never checks placement: a conflicting selector does not stop the swap", () => {
    const running = webPod({ nodeName: "n", nodeSelector: { "cloud.tencent.com/apparate": "false" } });
    const withDebug = { ...running, spec: { ...running.spec, ephemeralContainers: [{ name: "d", image: `${REG}/team/web:1` }] } };
    const p = run(withDebug, exists, config, { operation: "UPDATE", subResource: "ephemeralcontainers", oldPod: running });
    expect(p.containers[0]!.outcome).toBe("accelerated");
    expect(p.annotations).toEqual({});
    expect(p.placement).toBeUndefined();
  });
});

describe("containerKey: the key a container has in apparate.io/original-images", () => {
  it.each<[ContainerKind, string]>([["containers", "app"], ["initContainers", "init:app"], ["ephemeralContainers", "ephemeral:app"]])("%s -> %s", (kind, key) => {
    expect(containerKey(kind, "app")).toBe(key);
  });
});
