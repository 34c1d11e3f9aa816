// The observer at cluster scale (issue 25, item 4), with webhook replicas in their own
// processes (the chart's --max-old-space-size=256) against the API stand-in:
// - only the Lease holder watches pods, events and nodes; the other replica makes no
//   such request and holds nothing; SIGKILLed, the holder is replaced by the other,
//   which goes on from the Lease's watermark (nothing counted twice);
// - 100,000 pods and 5,000 nodes: the holder lists them in pages, keeps a compact
//   record per pod still to record and the labelled nodes' names only, and stays far
//   under the chart's heap; its figure per pod goes to `npm run bench -- observer`.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { clusterNode, loadCluster, NODE_LABEL, startReplica, type Replica } from "../support/observer-cluster.js";
import { waitFor } from "../support/ports.js";
import { startedPod } from "../support/started-pods.js";

const MiB = 2 ** 20;
const watchedPaths = ["/api/v1/pods", "/api/v1/events", "/api/v1/nodes"];

describe("observer replicas: only the Lease holder watches", () => {
  const api = new KubeApiStandIn();
  const replicas: Replica[] = [];
  beforeAll(async () => {
    await api.start();
    api.put("namespaces", { metadata: { name: "default" } });
    for (let i = 0; i < 4; i++) api.put("nodes", clusterNode(i, i % 2 === 0) as never);
  });
  afterAll(async () => { for (const r of replicas) await r.stop(); await api.stop(); });

  /** A pod created 19 s ago: Ready one second from now, so after any watermark taken now. */
  const startingNow = (name: string) => api.put("pods", startedPod({ name, uid: `uid-${name}`, t0: new Date(Date.now() - 19_000).toISOString() }) as never);
  const watchCalls = (token: string) => api.calls.filter((c) => c.token === token && c.method === "GET" && watchedPaths.includes(c.path));

  it("the holder watches and records; the other makes no pod, event or node request and holds nothing; killed, the holder is replaced from its watermark", async () => {
    const a = await startReplica(api, "replica-a");
    replicas.push(a);
    await waitFor(async () => { const s = await a.status(); return s.leader && s.synced; }, 20_000, "replica-a to hold the Lease and sync");
    const b = await startReplica(api, "replica-b");
    replicas.push(b);
    // Two renewal rounds of B (every 1.67 s): it has seen the Lease held by A.
    await waitFor(async () => (await b.status()).holder === "replica-a", 10_000, "replica-b to see A holding the Lease");
    await new Promise((r) => setTimeout(r, 2_000));

    startingNow("first");
    await waitFor(async () => (await a.status()).starts.includes("uid-first"), 15_000, "A to record the first pod");
    const sb = await b.status();
    expect(sb.leader).toBe(false);
    expect(sb.holding).toEqual({ watching: false, pods: 0, podsWithPulls: 0, labelledNodes: 0 });
    expect(sb.starts).toEqual([]);
    expect(watchCalls("replica-b")).toEqual([]);
    // The control: the holder did list and watch all three, nodes by label and metadata only.
    const ca = watchCalls("replica-a");
    for (const p of watchedPaths) expect(ca.some((c) => c.path === p && c.query.includes("watch=true"))).toBe(true);
    expect(ca.filter((c) => c.path === "/api/v1/nodes").every((c) => c.accept?.includes("as=PartialObjectMetadata") && decodeURIComponent(c.query).includes(`labelSelector=${NODE_LABEL}=true`))).toBe(true);
    expect((await a.status()).holding).toMatchObject({ watching: true, labelledNodes: 2 });

    await a.kill();
    startingNow("second");
    await waitFor(async () => { const s = await b.status(); return s.leader && s.synced; }, 20_000, "replica-b to take the Lease over and sync");
    await waitFor(async () => (await b.status()).starts.includes("uid-second"), 15_000, "B to record the second pod");
    const after = await b.status();
    // From A's watermark: the pod A recorded is not counted again.
    expect(after.starts).toEqual(["uid-second"]);
    expect(watchCalls("replica-b").some((c) => c.path === "/api/v1/pods")).toBe(true);
    expect(api.get("leases", "apparate-observer", "apparate-system", "coordination.k8s.io")!.spec.holderIdentity).toBe("replica-b");
  }, 90_000);
});

describe("observer at 100,000 pods and 5,000 nodes", () => {
  const api = new KubeApiStandIn();
  let replicas: Replica[] = [];
  beforeAll(async () => {
    await api.start();
    // Every pod starting (scheduled, not Ready): the most the observer ever keeps.
    loadCluster(api, { pods: 100_000, nodes: 5_000, state: "starting", t0: Date.now() - 5_000 });
  }, 120_000);
  afterEach(async () => { for (const r of replicas) await r.stop(); replicas = []; });
  afterAll(async () => { await api.stop(); });

  it("the holder keeps a compact record per starting pod and the labelled nodes' names, paged lists, far under the chart's heap; the other replica holds nothing", async () => {
    const a = await startReplica(api, "big-a");
    replicas.push(a);
    // The full informers of the code before exhausted this heap while listing (the replica died).
    await a.until((s) => s.leader && s.synced, 240_000, "the holder to list 100,000 pods");
    const b = await startReplica(api, "big-b");
    replicas.push(b);
    await b.until((s) => s.holder === "big-a", 10_000, "the other replica to see the holder");
    const sa = await a.status();
    const sb = await b.status();
    expect(sa.holding).toEqual({ watching: true, pods: 100_000, podsWithPulls: 0, labelledNodes: 2_500 });
    const heapPerPod = (sa.memory.heapUsed - sa.baseline.heapUsed) / 100_000;
    console.log(`observer holder at 100,000 pods, 5,000 nodes: heap ${(sa.memory.heapUsed / MiB).toFixed(1)} MiB (${(sa.baseline.heapUsed / MiB).toFixed(1)} before), ${heapPerPod.toFixed(0)} B/pod, RSS ${(sa.memory.rss / MiB).toFixed(0)} MiB; other replica heap ${(sb.memory.heapUsed / MiB).toFixed(1)} MiB, RSS ${(sb.memory.rss / MiB).toFixed(0)} MiB`);
    // Bounds far from the measured figure (bench/results.json observerMemory): the chart's
    // heap is 256 MiB and its limit 512 Mi; the full informers held ~6.9 KiB per pod.
    expect(heapPerPod).toBeLessThan(2048);
    expect(sa.memory.heapUsed).toBeLessThan(160 * MiB);
    expect(sa.memory.rss).toBeLessThan(400 * MiB);
    // Lists in pages of 500: one response never carries the cluster's pods.
    const podLists = api.calls.filter((c) => c.token === "big-a" && c.path === "/api/v1/pods" && !c.query.includes("watch=true"));
    expect(podLists.length).toBeGreaterThanOrEqual(200);
    expect(podLists.every((c) => c.query.includes("limit=500"))).toBe(true);
    // The negative control: the other replica holds no pod and asked for none.
    expect(sb.holding).toEqual({ watching: false, pods: 0, podsWithPulls: 0, labelledNodes: 0 });
    expect(api.calls.filter((c) => c.token === "big-b" && watchedPaths.includes(c.path))).toEqual([]);
    expect(sb.memory.heapUsed - sb.baseline.heapUsed).toBeLessThan(16 * MiB);
  }, 300_000);
});
