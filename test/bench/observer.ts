// The observer's memory at cluster scale (issue 25): one webhook replica's observer
// in its own process with the chart's heap flag (--max-old-space-size=256), against
// the API stand-in holding 100,000 pods and 5,000 nodes (every other one labelled).
// Two states of the cluster: every pod still starting (scheduled, not Ready: each kept
// as a compact record until recorded, the most the observer ever holds) and every pod
// Ready before the Lease's watermark (a steady cluster: none kept). Heap and RSS are
// read after a full GC, before the observer starts (modules loaded) and once its
// watches have synced; the replica that does not hold the Lease is measured beside it.
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { loadCluster, startReplica } from "../support/observer-cluster.js";

const MiB = 2 ** 20;

export interface ObserverMemoryRow {
  state: "starting" | "ready";
  pods: number;
  nodes: number;
  podsKept: number;
  labelledNodes: number;
  syncSeconds: number;
  holder: { heapMiB: number; heapBeforeMiB: number; rssMiB: number; rssBeforeMiB: number; heapBytesPerPod: number };
  other: { heapMiB: number; rssMiB: number; podsKept: number };
}

export const OBSERVER_METHOD = "Observer memory: the API stand-in (test/support/kube-api-standin.ts, paged lists, watches, metadata-only) holds the pods (a Deployment's pod as the API server shows it, ~3.5 KiB of JSON) and nodes (40 images each, ~9 KiB); each replica is `startObserverService` in its own Node process with --max-old-space-size=256 --expose-gc, run through tsx (test/support/observer-replica.ts); heap and RSS are read after three full GCs; bytes per pod = (heap after sync − heap before the observer started) ÷ pods.";

async function one(state: "starting" | "ready", pods: number, nodes: number): Promise<ObserverMemoryRow> {
  const api = new KubeApiStandIn();
  await api.start();
  try {
    // "ready": Ready an hour ago, before the watermark a first holder takes (now).
    loadCluster(api, { pods, nodes, state, t0: state === "ready" ? Date.now() - 3_600_000 : Date.now() - 5_000 });
    const t0 = performance.now();
    const holder = await startReplica(api, "bench-holder");
    try {
      await holder.until((s) => s.leader && s.synced, 600_000, "the holder to sync");
      const syncSeconds = (performance.now() - t0) / 1000;
      const other = await startReplica(api, "bench-other");
      try {
        await other.until((s) => s.holder === "bench-holder", 20_000, "the other replica to see the holder");
        const h = await holder.status();
        const o = await other.status();
        return {
          state, pods, nodes, podsKept: h.holding?.pods ?? -1, labelledNodes: h.holding?.labelledNodes ?? -1, syncSeconds,
          holder: { heapMiB: h.memory.heapUsed / MiB, heapBeforeMiB: h.baseline.heapUsed / MiB, rssMiB: h.memory.rss / MiB, rssBeforeMiB: h.baseline.rss / MiB, heapBytesPerPod: (h.memory.heapUsed - h.baseline.heapUsed) / pods },
          other: { heapMiB: o.memory.heapUsed / MiB, rssMiB: o.memory.rss / MiB, podsKept: o.holding?.pods ?? -1 },
        };
      } finally {
        await other.stop();
      }
    } finally {
      await holder.stop();
    }
  } finally {
    await api.stop();
  }
}

export async function observerMemoryBench(pods = 100_000, nodes = 5_000): Promise<ObserverMemoryRow[]> {
  const rows: ObserverMemoryRow[] = [];
  for (const state of ["starting", "ready"] as const) rows.push(await one(state, pods, nodes));
  return rows;
}
