// The observer's list-and-watch that keeps no objects (src/kube/reflector.ts), with the
// real @kubernetes/client-node against the API stand-in: paged lists, every object to
// the sink; a forgotten resourceVersion (410) lists again and resets the sink first;
// the API going away and coming back resumes the watch without a list; a label
// selector watch reports an object that loses the label as deleted.
import { Writable } from "node:stream";
import { CoreV1Api, type V1ConfigMap, type V1Node } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startReflector, type Reflector, type ReflectorSink } from "../../src/kube/reflector.js";
import { createLogger } from "../../src/observability/logger.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { waitFor } from "../support/ports.js";

const logger = createLogger({ level: "error", destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

/** A sink that records what it was told: the names it holds now, and how often it was reset. */
function recordingSink<T extends { metadata?: { name?: string } }>() {
  const held = new Set<string>();
  let resets = 0;
  let upserts = 0;
  const sink: ReflectorSink<T> = {
    reset: () => { resets++; held.clear(); },
    upsert: (o) => { upserts++; held.add(o.metadata!.name!); },
    remove: (o) => { held.delete(o.metadata!.name!); },
  };
  return { sink, held, resets: () => resets, upserts: () => upserts };
}

describe("reflector against the API stand-in", () => {
  const api = new KubeApiStandIn();
  let running: Reflector[] = [];
  beforeAll(async () => { await api.start(); });
  afterEach(() => { for (const r of running) r.stop(); running = []; });
  afterAll(async () => { await api.stop(); });
  const core = () => api.kubeConfig().makeApiClient(CoreV1Api);
  const listCalls = (path: string) => api.calls.filter((c) => c.path === path && !c.query.includes("watch=true"));

  it("lists in pages of pageSize, hands every object to the sink, then follows the watch", async () => {
    api.load("configmaps", Array.from({ length: 1234 }, (_, i) => ({ metadata: { name: `cm-${i}`, namespace: `ns-${i % 7}` }, data: { i: String(i) } })));
    const before = listCalls("/api/v1/configmaps").length;
    const s = recordingSink<V1ConfigMap>();
    const c = core();
    const r = startReflector<V1ConfigMap>(api.kubeConfig(), s.sink, logger, { name: "cms", path: "/api/v1/configmaps", pageSize: 100, list: (page) => c.listConfigMapForAllNamespaces(page) });
    running.push(r);
    await waitFor(async () => r.synced(), 10_000, "the list");
    expect(s.held.size).toBe(1234);
    const pages = listCalls("/api/v1/configmaps").slice(before);
    expect(pages).toHaveLength(13);
    expect(pages.every((p) => p.query.includes("limit=100"))).toBe(true);
    expect(pages.slice(1).every((p) => p.query.includes("continue="))).toBe(true);
    api.put("configmaps", { metadata: { name: "late", namespace: "ns-0" } });
    api.remove("configmaps", "cm-0", "ns-0");
    await waitFor(async () => s.held.has("late") && !s.held.has("cm-0"), 5_000, "the watch's events");
    expect(s.resets()).toBe(1);
  });

  it("a watch from a forgotten resourceVersion (410 Gone) lists again, resetting the sink first: what changed meanwhile is right", async () => {
    for (let i = 0; i < 5; i++) api.put("secrets", { metadata: { name: `s-${i}`, namespace: "default" }, type: "Opaque" });
    const s = recordingSink<{ metadata?: { name?: string } }>();
    const c = core();
    const r = startReflector(api.kubeConfig(), s.sink, logger, { name: "secrets", path: "/api/v1/secrets", pageSize: 2, list: (page) => c.listSecretForAllNamespaces(page) });
    running.push(r);
    await waitFor(async () => r.synced(), 10_000, "the list");
    const gone = api.goneCount;
    // The history is compacted while the watch is down, and objects change meanwhile.
    api.compact();
    api.dropWatches();
    api.remove("secrets", "s-1", "default");
    api.put("secrets", { metadata: { name: "s-new", namespace: "default" }, type: "Opaque" });
    await waitFor(async () => s.resets() === 2 && r.synced(), 10_000, "a second list");
    expect(api.goneCount).toBeGreaterThan(gone);
    expect([...s.held].sort()).toEqual(["s-0", "s-2", "s-3", "s-4", "s-new"]);
  });

  it("the API going away and coming back: the watch resumes from its resourceVersion, no second list", async () => {
    api.put("namespaces", { metadata: { name: "first" } });
    const s = recordingSink<{ metadata?: { name?: string } }>();
    const c = core();
    const r = startReflector(api.kubeConfig(), s.sink, logger, { name: "namespaces", path: "/api/v1/namespaces", maxBackoffMs: 500, list: (page) => c.listNamespace(page) });
    running.push(r);
    await waitFor(async () => r.synced() && s.held.has("first"), 10_000, "the list");
    const lists = listCalls("/api/v1/namespaces").length;
    await api.stop();
    await waitFor(async () => !r.connected(), 5_000, "the reflector to notice");
    await api.start();
    api.put("namespaces", { metadata: { name: "second" } });
    await waitFor(async () => s.held.has("second"), 10_000, "the event after the API came back");
    expect(listCalls("/api/v1/namespaces")).toHaveLength(lists);
    expect(s.resets()).toBe(1);
  });

  it("a label-selected watch: a node that loses the label is removed, one that gains it is added (the API server's selector semantics)", async () => {
    const LABEL = "cloud.tencent.com/apparate";
    api.put("nodes", { metadata: { name: "n-on", labels: { [LABEL]: "true" } } });
    api.put("nodes", { metadata: { name: "n-off", labels: {} } });
    const s = recordingSink<V1Node>();
    const c = core();
    const labelSelector = `${LABEL}=true`;
    const r = startReflector<V1Node>(api.kubeConfig(), s.sink, logger, { name: "nodes", path: "/api/v1/nodes", labelSelector, list: (page) => c.listNode({ ...page, labelSelector }) });
    running.push(r);
    await waitFor(async () => r.synced(), 10_000, "the list");
    expect([...s.held]).toEqual(["n-on"]);
    api.put("nodes", { metadata: { name: "n-on", labels: {} } });
    api.put("nodes", { metadata: { name: "n-off", labels: { [LABEL]: "true" } } });
    await waitFor(async () => s.held.has("n-off") && !s.held.has("n-on"), 5_000, "the label changes");
    // The control: a change that keeps the node unlabelled sends nothing on this watch.
    const n = s.upserts();
    api.put("nodes", { metadata: { name: "n-on", labels: { other: "x" } } });
    await new Promise((res) => setTimeout(res, 300));
    expect(s.upserts()).toBe(n);
  });
});
