// The admission webhook end to end: real HTTPS server, real registry behind it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import jsonpatch from "fast-json-patch";
import { Pod } from "kubernetes-models/v1/Pod";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pushImage, registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { decodePatch, review, startWebhook, type TestWebhook } from "../support/webhook.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { hang, startFaultServer, type FaultServer } from "../support/faults.js";

const PASSWORD = "Webhook-Test-Password-7781";

function podFor(reg: string, images: { init?: string[]; containers: string[] }, extra: Partial<NonNullable<PodLike["spec"]>> = {}): PodLike {
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: { generateName: "shop-5c9d8f-", namespace: "default", labels: { app: "shop" } },
    spec: {
      initContainers: (images.init ?? []).map((image, i) => ({ name: `init-${i}`, image })),
      containers: images.containers.map((image, i) => ({ name: `c${i}`, image, env: [{ name: "REGISTRY", value: reg }], resources: { limits: { cpu: "500m", memory: "128Mi" } } })),
      ...extra,
    },
  };
}

/** The patched pod must still be a valid Kubernetes Pod. */
function applyAndValidate(pod: PodLike, patch: any[]): PodLike {
  const out = jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument as PodLike;
  new Pod(out as never).validate();
  return out;
}

describe.skipIf(!registryAvailable)("admission webhook over HTTPS with a real registry", () => {
  let reg: RunningRegistry;
  let priv: RunningRegistry;
  let hung: FaultServer;
  let hook: TestWebhook;

  beforeAll(async () => {
    reg = await startRegistry();
    priv = await startRegistry({ htpasswd: { user: "ci", password: PASSWORD } });
    hung = await startFaultServer(hang);
    await pushImage(reg.url, "shop/web", "1.0-apparate", "oci-index");
    await pushImage(reg.url, "shop/worker", "2.0-apparate", "docker-v2");
    await pushImage(reg.url, "shop/init", "latest-apparate", "oci-manifest");
    await pushImage(priv.url, "secret/app", "3.0-apparate", "oci-manifest", { authorization: `Basic ${Buffer.from(`ci:${PASSWORD}`).toString("base64")}` });
    const dir = mkdtempSync(join(tmpdir(), "apparate-hook-"));
    const dockerConfig = join(dir, "config.json");
    writeFileSync(dockerConfig, JSON.stringify({ auths: { [priv.host]: { username: "ci", password: PASSWORD } } }));
    hook = await startWebhook({
      namespaces: ["default"],
      acceleration: { registries: [reg.host, priv.host, hung.host], ephemeralContainers: true },
      rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } },
      registry: { plainHttp: [reg.host, priv.host, hung.host], dockerConfigFile: dockerConfig, requestTimeoutMs: 1000 },
      admission: { deadlineMs: 300 },
    });
  }, 60_000);

  afterAll(async () => {
    await hook?.stop();
    await Promise.all([reg?.stop(), priv?.stop(), hung?.stop()]);
  });

  it("swaps existing OCI variants, leaves the rest with reasons, pins the node; the result is a valid Pod", async () => {
    const pod = podFor(reg.host, {
      init: [`${reg.host}/shop/init`],
      containers: [`${reg.host}/shop/web:1.0`, `${reg.host}/shop/worker:2.0`, `${reg.host}/shop/web:9.9`, "quay.io/prometheus/node-exporter:v1.8.0", `${priv.host}/secret/app:3.0`],
    });
    const { status, json } = await hook.post(review(pod));
    expect(status).toBe(200);
    expect(json.response.allowed).toBe(true);
    expect(json.response.patchType).toBe("JSONPatch");
    const out = applyAndValidate(pod, decodePatch(json));
    expect(out.spec!.initContainers![0]!.image).toBe(`${reg.host}/shop/init:latest-apparate`);
    expect(out.spec!.containers!.map((c) => c.image)).toEqual([
      `${reg.host}/shop/web:1.0-apparate`, `${reg.host}/shop/worker:2.0`, `${reg.host}/shop/web:9.9`,
      "quay.tencentcloudcr.com/prometheus/node-exporter:v1.8.0", `${priv.host}/secret/app:3.0-apparate`,
    ]);
    expect(out.spec!.nodeSelector).toEqual({ "cloud.tencent.com/apparate": "true" });
    const warnings: string[] = json.response.warnings;
    expect(warnings.some((w) => w.includes("c1") && w.includes("not an OCI image"))).toBe(true);
    expect(warnings.some((w) => w.includes("c2") && w.includes("does not exist"))).toBe(true);
    expect(out.metadata!.annotations!["apparate.io/actions"]).toContain("accelerated=3");
    // Reinvocation: no further change.
    const again = await hook.post(review(out));
    expect(decodePatch(again.json)).toEqual([]);
  });

  it("no credential ever reaches a log line", async () => {
    await hook.post(review(podFor(priv.host, { containers: [`${priv.host}/secret/app:3.0`, `${priv.host}/secret/app:4.0`] })));
    const all = hook.logs.join("");
    expect(all.length).toBeGreaterThan(0);
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain(Buffer.from(`ci:${PASSWORD}`).toString("base64"));
  });

  it("a hanging registry costs one deadline, then the container is left unchanged with a warning", async () => {
    const pod = podFor(hung.host, { containers: [`${hung.host}/slow/app:1`, `${reg.host}/shop/web:1.0`] });
    const t0 = performance.now();
    const { status, json } = await hook.post(review(pod));
    const spent = performance.now() - t0;
    expect(status).toBe(200);
    expect(spent).toBeLessThan(300 + 500);
    const out = applyAndValidate(pod, decodePatch(json));
    expect(out.spec!.containers![0]!.image).toBe(`${hung.host}/slow/app:1`);
    expect(out.spec!.containers![1]!.image).toBe(`${reg.host}/shop/web:1.0-apparate`);
    expect(json.response.warnings.join("\n")).toMatch(/c0: not accelerated: could not check .* in time/);
  });

  it("dryRun gets the same answer", async () => {
    const pod = podFor(reg.host, { containers: [`${reg.host}/shop/web:1.0`] });
    const { json } = await hook.post(review(pod, { dryRun: true }));
    expect(decodePatch(json).length).toBeGreaterThan(0);
  });

  it.each([
    ["not JSON", undefined, "{not json", 400],
    ["empty body", undefined, "", 400],
    ["a JSON array", [], undefined, 400],
    ["wrong apiVersion", { apiVersion: "admission.k8s.io/v1beta1", kind: "AdmissionReview", request: { uid: "u", kind: { kind: "Pod" }, operation: "CREATE" } }, undefined, 400],
    ["wrong kind", { apiVersion: "admission.k8s.io/v1", kind: "Pod", request: {} }, undefined, 400],
    ["missing request.uid", { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: { kind: { kind: "Pod" }, operation: "CREATE" } }, undefined, 400],
    ["a Pod review whose object is a ConfigMap", review({ kind: "ConfigMap", metadata: {} } as never), undefined, 400],
    ["containers that are not a list", review({ kind: "Pod", spec: { containers: "nginx" } } as never), undefined, 400],
  ])("bad input (%s) gets a clear 4xx, never a 5xx", async (_name, body, raw, status) => {
    const r = await hook.post(body, raw);
    expect(r.status).toBe(status);
    expect(typeof r.json.message).toBe("string");
    expect(r.json.message.length).toBeGreaterThan(5);
  });

  it("a body over the 3 MiB limit is refused with 413 and the reason", async () => {
    const pod = podFor(reg.host, { containers: ["nginx"] });
    pod.metadata!.annotations = { big: "x".repeat(3 * 1024 * 1024) };
    const r = await hook.post(review(pod));
    expect(r.status).toBe(413);
    expect(r.json.message).toMatch(/too large/i);
  });

  it("a well-formed review of another kind is an allowed no-op", async () => {
    const body = review({} as never, { kind: { group: "apps", version: "v1", kind: "Deployment" }, resource: { group: "apps", version: "v1", resource: "deployments" }, object: { kind: "Deployment" } });
    const r = await hook.post(body);
    expect(r.status).toBe(200);
    expect(r.json.response).toEqual({ uid: (body.request as { uid: string }).uid, allowed: true });
  });

  it("kubectl debug twice: only the added ephemeral container is swapped, the existing one is left as stored (issue 24)", async () => {
    // debugger-1 was added while its variant did not exist yet (or its lookup timed out); both exist now.
    const running = podFor(reg.host, { containers: [`${reg.host}/shop/web:1.0`] }, { nodeName: "node-1" });
    running.metadata = { ...running.metadata, name: "shop-1" };
    const dbg1 = { name: "debugger-1", image: `${reg.host}/shop/debug:1`, stdin: true, tty: true, targetContainerName: "c0" };
    const dbg2 = { name: "debugger-2", image: `${reg.host}/shop/debug:2`, stdin: true, tty: true, targetContainerName: "c0" };
    const sub = { operation: "UPDATE", subResource: "ephemeralcontainers", name: "shop-1" };
    const one = { ...running, spec: { ...running.spec, ephemeralContainers: [dbg1] } };
    await pushImage(reg.url, "shop/debug", "1-apparate", "oci-manifest");
    await pushImage(reg.url, "shop/debug", "2-apparate", "oci-manifest");
    const two = { ...running, spec: { ...running.spec, ephemeralContainers: [dbg1, dbg2] } };
    const second = await hook.post(review(two, { ...sub, oldObject: one }));
    expect(second.status).toBe(200);
    expect(decodePatch(second.json)).toEqual([{ op: "replace", path: "/spec/ephemeralContainers/1/image", value: `${reg.host}/shop/debug:2-apparate` }]);
  });

  it.each(["DELETE", "CONNECT"])("a %s review of a pod is an allowed no-op (200, no patch), not a 400", async (operation) => {
    const body = review(podFor(reg.host, { containers: [`${reg.host}/shop/web:1.0`] }), { operation, object: null, oldObject: podFor(reg.host, { containers: ["nginx"] }) });
    const r = await hook.post(body);
    expect(r.status).toBe(200);
    expect(r.json.response).toEqual({ uid: (body.request as { uid: string }).uid, allowed: true });
  });

  it("serves metrics with admission, decision and lookup series", async () => {
    const res = await fetch(hook.url.replace("https", "http")).catch(() => undefined);
    expect(res).toBeUndefined(); // plain HTTP to the TLS port fails
    const text = await hook.metrics.registry.metrics();
    expect(text).toContain("apparate_admission_duration_seconds_bucket");
    expect(text).toMatch(/apparate_decisions_total\{outcome="accelerated"\} \d+/);
    expect(text).toMatch(/apparate_registry_lookups_total\{registry="[^"]+",result="exists"\} \d+/);
    expect(text).toMatch(/apparate_lookup_deadline_exceeded_total \d+/);
  });
});
