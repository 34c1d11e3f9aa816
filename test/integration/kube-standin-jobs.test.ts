// The API stand-in's batch/v1 Jobs, spoken to by @kubernetes/client-node unmodified:
// create (the API server's defaults and its name rule), get, list by label, watch from a
// resourceVersion, delete with each propagationPolicy (Foreground: marked with
// deletionTimestamp and the foregroundDeletion finalizer first, as the garbage collector
// does), and the errors a real API server answers.
import { BatchV1Api, type V1Job, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiStatus } from "../../src/kube/status.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { waitFor } from "../support/ports.js";

const NS = "apparate";
const job = (name: string, over: Record<string, unknown> = {}): V1Job => ({
  metadata: { name, labels: { "apparate.io/conversion": "true" } },
  spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "convert", image: "apparate:test", args: ["--version"] }] } }, ...over },
});

describe("API stand-in: batch/v1 Jobs through client-node", () => {
  let api: KubeApiStandIn;
  let batch: BatchV1Api;

  beforeAll(async () => {
    api = new KubeApiStandIn();
    await api.start();
    batch = api.kubeConfig().makeApiClient(BatchV1Api);
  });
  afterAll(async () => { await api?.stop(); });

  it("create fills in the API server's defaults (selector, pod labels, backoffLimit 6); get and list by label see it", async () => {
    const made = await batch.createNamespacedJob({ namespace: NS, body: job("j1") });
    expect(made.metadata!.uid).toBeTruthy();
    expect(made.spec).toMatchObject({ backoffLimit: 6, parallelism: 1, completions: 1, completionMode: "NonIndexed", selector: { matchLabels: { "batch.kubernetes.io/controller-uid": made.metadata!.uid } } });
    expect(made.spec!.template.metadata!.labels).toMatchObject({ "job-name": "j1", "batch.kubernetes.io/job-name": "j1" });
    expect((await batch.readNamespacedJob({ name: "j1", namespace: NS })).metadata!.resourceVersion).toBe(made.metadata!.resourceVersion);
    const listed = await batch.listNamespacedJob({ namespace: NS, labelSelector: "apparate.io/conversion=true" });
    expect(listed.items.map((j) => j.metadata!.name)).toEqual(["j1"]);
    expect((await batch.listNamespacedJob({ namespace: NS, labelSelector: "apparate.io/conversion=false" })).items).toEqual([]);
  });

  it("refuses what kube-apiserver refuses: a name over 63 characters, no restartPolicy, a failure policy without Never; AlreadyExists on a second create", async () => {
    const refused = async (body: V1Job) => { try { await batch.createNamespacedJob({ namespace: NS, body }); return undefined; } catch (err) { return apiStatus(err); } };
    expect(await refused(job("x".repeat(64)))).toBe(422);
    expect(await refused(job("Upper"))).toBe(422);
    expect(await refused({ metadata: { name: "nr" }, spec: { template: { spec: { containers: [{ name: "c" }] } } } })).toBe(422);
    expect(await refused({ metadata: { name: "pfp" }, spec: { podFailurePolicy: { rules: [{ action: "FailJob", onExitCodes: { operator: "In", values: [1] } }] }, template: { spec: { restartPolicy: "OnFailure", containers: [{ name: "c" }] } } } })).toBe(422);
    expect(await refused(job("j1"))).toBe(409);
    // Negative control: 63 characters is fine.
    expect(await refused(job("x".repeat(63)))).toBeUndefined();
  });

  it("a watch from a resourceVersion gets the later changes only, then Foreground deletion: MODIFIED with deletionTimestamp, then DELETED", async () => {
    const made = await batch.createNamespacedJob({ namespace: NS, body: job("j2") });
    api.put("jobs", { ...api.get("jobs", "j2", NS, "batch")!, status: { active: 1 } }, "batch"); // after the version watched from
    const seen: Array<{ type: string; name: string; deleting: boolean; finalizers?: string[] }> = [];
    const ctl = await new Watch(api.kubeConfig()).watch(`/apis/batch/v1/namespaces/${NS}/jobs`, { resourceVersion: made.metadata!.resourceVersion, fieldSelector: "metadata.name=j2" },
      (type, o: V1Job) => seen.push({ type, name: o.metadata!.name!, deleting: Boolean(o.metadata!.deletionTimestamp), ...(o.metadata!.finalizers ? { finalizers: o.metadata!.finalizers } : {}) }), () => undefined);
    await waitFor(async () => seen.length === 1, 5000, "the status change");
    await batch.deleteNamespacedJob({ name: "j2", namespace: NS, propagationPolicy: "Foreground" });
    await waitFor(async () => seen.some((e) => e.type === "DELETED"), 5000, "the deletion");
    ctl.abort();
    expect(seen).toEqual([
      { type: "MODIFIED", name: "j2", deleting: false },
      { type: "MODIFIED", name: "j2", deleting: true, finalizers: ["foregroundDeletion"] },
      { type: "DELETED", name: "j2", deleting: true, finalizers: ["foregroundDeletion"] },
    ]);
    expect(api.deletions).toContainEqual({ plural: "jobs", namespace: NS, name: "j2", propagationPolicy: "Foreground" });
  });

  it("Background and Orphan delete at once; an unknown propagationPolicy is 400 and deletes nothing; a missing Job is 404", async () => {
    await batch.createNamespacedJob({ namespace: NS, body: job("j3") });
    await batch.createNamespacedJob({ namespace: NS, body: job("j4") });
    const status = async (f: () => Promise<unknown>) => { try { await f(); return 200; } catch (err) { return apiStatus(err); } };
    expect(await status(() => batch.deleteNamespacedJob({ name: "j3", namespace: NS, propagationPolicy: "Sideways" }))).toBe(400);
    expect(api.get("jobs", "j3", NS, "batch")).toBeDefined();
    expect(await status(() => batch.deleteNamespacedJob({ name: "j3", namespace: NS, propagationPolicy: "Background" }))).toBe(200);
    expect(await status(() => batch.deleteNamespacedJob({ name: "j4", namespace: NS, propagationPolicy: "Orphan" }))).toBe(200);
    expect(api.get("jobs", "j3", NS, "batch")).toBeUndefined();
    expect(api.get("jobs", "j4", NS, "batch")).toBeUndefined();
    expect(await status(() => batch.deleteNamespacedJob({ name: "j3", namespace: NS }))).toBe(404);
  });
});
