// The start-latency observer with the real @kubernetes/client-node against the
// Kubernetes API stand-in: pods and kubelet events replayed in the message forms of
// older and newer kubelets; histogram samples per phase and mode; present images
// apart; a restarted observer and a second replica never count a pod twice.
import { Writable } from "node:stream";
import type { V1Pod } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { ANNOTATION_OBSERVED_UNTIL } from "../../src/observer/lease.js";
import { StartLatencyMetrics, StartRecorder } from "../../src/observer/recorder.js";
import { startStartObserver, type StartObserver } from "../../src/observer/watcher.js";
import type { AddressInfo } from "node:net";
import type { HandlerDeps } from "../../src/admission/handler.js";
import { buildOpsServer } from "../../src/admission/server.js";
import { main } from "../../src/cli/main.js";
import { Metrics } from "../../src/observability/metrics.js";
import type { Report } from "../../src/observer/report.js";
import { startObserverService } from "../../src/observer/service.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { waitFor } from "../support/ports.js";
import { startedPod } from "../support/started-pods.js";

const T0 = Date.parse("2026-01-10T10:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();
const LABEL = "cloud.tencent.com/apparate";
const config = compileConfig({ namespaces: ["default"], acceleration: { registries: ["registry.example.com"] }, rewrite: { registries: { "quay.io": "mirror.example.com" } } });

describe("start-latency observer against the API stand-in", () => {
  const api = new KubeApiStandIn();
  let clock = T0;
  const logs: string[] = [];
  const logger = createLogger({ level: "info", destination: new Writable({ write(c, _e, cb) { logs.push(c.toString()); cb(); } }) });
  const running: StartObserver[] = [];

  function observer(identity: string) {
    const registry = new Registry();
    const recorder = new StartRecorder(new StartLatencyMetrics(registry));
    const o = startStartObserver(api.kubeConfig(), config, logger, recorder, {
      identity, namespace: "apparate-system", leaseName: "apparate-observer", leaseDurationSeconds: 15,
      graceMs: 5_000, tickMs: 3_600_000, enabledNamespace: (ns) => config.namespaces.has(ns), now: () => clock,
    });
    running.push(o);
    return { o, registry, recorder };
  }

  /** A pod created at `at` (ms), Ready 20 s later, with kubelet's Pulled events for its containers. */
  function replay(name: string, at: number, opts: { images: string[]; messages: string[]; node?: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> }) {
    const pod: V1Pod = startedPod({ name, uid: `uid-${name}`, namespace: opts.namespace ?? "default", nodeName: opts.node ?? "n1", t0: iso(at), images: opts.images, annotations: opts.annotations ?? {}, labels: opts.labels ?? {} });
    api.put("pods", pod as never);
    opts.messages.forEach((message, i) => {
      api.put("events", {
        metadata: { name: `${name}.${i}`, namespace: opts.namespace ?? "default" },
        involvedObject: { kind: "Pod", namespace: opts.namespace ?? "default", name, uid: `uid-${name}`, apiVersion: "v1", fieldPath: `spec.containers{c${i}}` },
        reason: "Pulled", message, type: "Normal", source: { component: "kubelet", host: opts.node ?? "n1" }, count: 1,
      });
    });
  }

  beforeAll(async () => {
    await api.start();
    api.put("namespaces", { metadata: { name: "default" } });
    api.put("nodes", { metadata: { name: "n1", labels: { [LABEL]: "true" } } });
    api.put("nodes", { metadata: { name: "n2", labels: {} } });
  });
  afterAll(async () => { for (const o of running) await o.stop(); await api.stop(); });

  const count = async (registry: Registry, metric: string, labels: string) => {
    const line = (await registry.metrics()).split("\n").find((l) => l.startsWith(`${metric}{`) && l.includes(labels));
    return line ? Number(line.split(" ").pop()) : 0;
  };

  it("the first observer takes the Lease with a watermark of its creation, and records only pods Ready after it, in enabled namespaces", async () => {
    const a = observer("replica-a");
    await waitFor(async () => a.o.synced(), 10_000, "observer informers to sync");
    // An old pod, Ready long before apparate watched: never counted.
    replay("old", T0 - 3_600_000, { images: ["nginx:1.27", "sidecar:1"], messages: [] });
    await a.o.tick();
    expect(a.o.leader()).toBe(true);
    const lease = api.get("leases", "apparate-observer", "apparate-system", "coordination.k8s.io")!;
    expect(lease.spec.holderIdentity).toBe("replica-a");
    expect(Date.parse(lease.metadata.annotations[ANNOTATION_OBSERVED_UNTIL])).toBe(T0);

    const at = T0 + 1_000;
    // Newest kubelet form, eStargz on a labelled node.
    replay("lazy", at, {
      images: ["registry.example.com/team/app:1-apparate", "registry.example.com/team/side:2-apparate"],
      annotations: { "apparate.io/actions": "accelerated=2,placement=preferred" },
      messages: [
        'Successfully pulled image "registry.example.com/team/app:1-apparate" in 796ms (1.594s including waiting). Image size: 48123456 bytes.',
        'Successfully pulled image "registry.example.com/team/side:2-apparate" in 204ms (204ms including waiting). Image size: 2048000 bytes.',
      ],
    });
    // Older kubelet (one duration), nothing accelerated, unlabelled node.
    replay("plain", at, { images: ["registry.example.com/team/app:1", "docker.io/library/busybox:1.36"], node: "n2", messages: ['Successfully pulled image "registry.example.com/team/app:1" in 12.5s', 'Successfully pulled image "docker.io/library/busybox:1.36" in 1m2s'] });
    // Everything already on the node (an image cache): counted apart.
    replay("cached", at, { images: ["nginx:1.27", "sidecar:1"], labels: { "apparate.io/image-cache": "used" }, messages: ['Container image "nginx:1.27" already present on machine', 'Container image "sidecar:1" already present on machine'] });
    // 1.28 form, mirror rewrite.
    replay("mirrored", at, { images: ["mirror.example.com/team/tool:2", "sidecar:1"], annotations: { "apparate.io/actions": "rewritten=1", "apparate.io/original-images": JSON.stringify({ "containers/c0": "quay.io/team/tool:2" }) }, messages: ['Successfully pulled image "mirror.example.com/team/tool:2" in 3.2s (4.001s including waiting)'] });
    // Not an enabled namespace; and a pod not Ready yet.
    replay("elsewhere", at, { namespace: "other", images: ["nginx:1.27", "sidecar:1"], messages: ['Successfully pulled image "nginx:1.27" in 1s'] });
    const notReady = startedPod({ name: "starting", uid: "uid-starting", t0: iso(at) });
    notReady.status!.conditions = notReady.status!.conditions!.filter((c) => c.type !== "Ready");
    api.put("pods", notReady as never);
    await waitFor(async () => (await api.list("events")).length >= 8 && a.o.synced(), 5_000, "events");
    await new Promise((r) => setTimeout(r, 300));

    // Ready at T0+21 s: not yet due 3 s later (within the grace), due at T0+30 s.
    clock = T0 + 24_000;
    await a.o.tick();
    expect(a.recorder.window()).toHaveLength(0);
    clock = T0 + 30_000;
    await a.o.tick();
    expect(a.recorder.window().map((s) => s.uid).sort()).toEqual(["uid-cached", "uid-lazy", "uid-mirrored", "uid-plain"]);

    const r = a.registry;
    expect(await count(r, "apparate_pod_start_seconds_count", 'phase="ready",acceleration="estargz",node_accelerated="true",pulled="true"')).toBe(1);
    expect(await count(r, "apparate_pod_start_seconds_sum", 'phase="ready",acceleration="estargz",node_accelerated="true",pulled="true"')).toBe(20);
    expect(await count(r, "apparate_pod_start_seconds_sum", 'phase="first_container_started",acceleration="none",node_accelerated="false",pulled="true"')).toBe(9);
    expect(await count(r, "apparate_pod_start_seconds_sum", 'phase="sandbox_ready",acceleration="mirror",node_accelerated="true",pulled="true"')).toBe(3);
    expect(await count(r, "apparate_pod_start_seconds_count", 'phase="ready",acceleration="image-cache",node_accelerated="true",pulled="false"')).toBe(1);
    expect(await count(r, "apparate_image_pull_seconds_sum", 'acceleration="estargz",size_bucket="10-100MB"')).toBeCloseTo(0.796, 6);
    expect(await count(r, "apparate_image_pull_seconds_sum", 'acceleration="estargz",size_bucket="0-10MB"')).toBeCloseTo(0.204, 6);
    expect(await count(r, "apparate_image_pull_seconds_sum", 'acceleration="none",size_bucket="unknown"')).toBeCloseTo(74.5, 6);
    expect(await count(r, "apparate_image_pull_seconds_sum", 'acceleration="mirror",size_bucket="unknown"')).toBeCloseTo(3.2, 6);
    expect(await count(r, "apparate_image_already_present_total", 'acceleration="image-cache"')).toBe(2);
    expect(await count(r, "apparate_image_pulls_total", 'acceleration="image-cache",result="pulled"')).toBe(0);
    const plain = a.recorder.window().find((s) => s.uid === "uid-plain")!;
    expect(plain.pulls.map((p) => [p.image, p.status, p.advice])).toEqual([
      ["registry.example.com/team/app:1", "not accelerated", "no -apparate variant"],
      ["docker.io/library/busybox:1.36", "not accelerated", "no rule matches"],
    ]);
    expect(a.recorder.window().find((s) => s.uid === "uid-mirrored")!.pulls[0]).toMatchObject({ status: "mirror", seconds: 3.2, waitingSeconds: 4.001 });
    expect(Date.parse(api.get("leases", "apparate-observer", "apparate-system", "coordination.k8s.io")!.metadata.annotations[ANNOTATION_OBSERVED_UNTIL])).toBe(T0 + 25_000);

    // The same pods seen again (a relist, another tick): not counted twice.
    await a.o.tick();
    expect(a.recorder.window()).toHaveLength(4);
    await a.o.stop();
    expect(api.get("leases", "apparate-observer", "apparate-system", "coordination.k8s.io")!.spec.holderIdentity).toBeUndefined();
  });

  it("a restarted observer reads the watermark from the Lease and counts only pods Ready after it", async () => {
    const b = observer("replica-b");
    await waitFor(async () => b.o.synced(), 10_000, "observer informers to sync");
    clock = T0 + 40_000;
    await b.o.tick();
    expect(b.o.leader()).toBe(true);
    expect(b.recorder.window()).toHaveLength(0);
    expect(await count(b.registry, "apparate_pod_starts_total", "")).toBe(0);

    replay("later", T0 + 20_000, { images: ["nginx:1.27", "sidecar:1"], messages: ['Successfully pulled image "nginx:1.27" in 2s (2s including waiting). Image size: 1000 bytes.'] });
    await waitFor(async () => (await api.list("events")).some((e) => e.metadata.name === "later.0"), 5_000, "event");
    await new Promise((r) => setTimeout(r, 300));
    clock = T0 + 50_000;
    await b.o.tick();
    expect(b.recorder.window().map((s) => s.uid)).toEqual(["uid-later"]);
  });

  it("a second replica without the Lease counts nothing, and takes over only once the holder stops renewing", async () => {
    const b = running.at(-1)!;
    const c = observer("replica-c");
    await c.o.tick();
    // Not the holder: no watch, nothing held (issue 25: non-leaders hold no pod cache).
    expect(c.o.holding()).toEqual({ watching: false, pods: 0, podsWithPulls: 0, labelledNodes: 0 });
    expect(c.o.synced()).toBe(false);
    replay("during", T0 + 40_000, { images: ["nginx:1.27", "sidecar:1"], messages: ['Successfully pulled image "nginx:1.27" in 1s'] });
    await new Promise((r) => setTimeout(r, 300));
    clock = T0 + 70_000;
    await b.tick(); // B's own timer renews
    await c.o.tick();
    expect(c.o.leader()).toBe(false);
    expect(c.o.holder()).toBe("replica-b");
    expect(c.recorder.window()).toHaveLength(0);
    expect(b.leader()).toBe(true);

    // The holder dies without releasing: after the lease duration, C takes it and goes on from B's watermark.
    replay("after", T0 + 60_000, { images: ["nginx:1.27", "sidecar:1"], messages: ['Successfully pulled image "nginx:1.27" in 1s'] });
    await new Promise((r) => setTimeout(r, 300));
    clock = T0 + 80_000;
    await c.o.tick();
    expect(c.o.leader()).toBe(false);
    clock = T0 + 90_000;
    await c.o.tick();
    expect(c.o.leader()).toBe(true);
    // The new holder starts its watches now, and records once they have synced.
    await waitFor(async () => c.o.synced(), 10_000, "the new holder's watches to sync");
    await c.o.tick();
    expect(c.recorder.window().map((s) => s.uid)).toEqual(["uid-after"]);
    expect(api.get("leases", "apparate-observer", "apparate-system", "coordination.k8s.io")!.spec.leaseTransitions).toBeGreaterThanOrEqual(2);
    expect(logs.join("")).toContain("observer lease acquired");
  });

  it("as serve runs it: the service records with the real clock, /metrics has the histograms, `apparate report --url` reads /observer/starts", async () => {
    const metrics = new Metrics();
    const svc = startObserverService(api.kubeConfig(), compileConfig({ observer: { graceSeconds: 1, leaseDurationSeconds: 5 } }), logger, metrics, () => ({}));
    const ops = await buildOpsServer({ metrics } as unknown as HandlerDeps, { ready: () => ({ ready: true, reasons: [] }) }, svc.routes);
    await ops.listen({ port: 0, host: "127.0.0.1" });
    try {
      await waitFor(async () => { await svc.observer.tick(); return svc.observer.leader() && svc.observer.synced(); }, 10_000, "the service to hold the Lease");
      // Ready one second from now: after the Lease's watermark, due once the 1 s grace has passed.
      replay("live", Date.now() - 19_000, { images: ["nginx:1.27", "sidecar:1"], annotations: { "apparate.io/actions": "accelerated=1" }, messages: ['Successfully pulled image "nginx:1.27" in 1.5s (1.5s including waiting). Image size: 5000000 bytes.'] });
      const text0 = async () => (await (await fetch(`http://127.0.0.1:${(ops.server.address() as AddressInfo).port}/observer/starts`)).json()) as { starts: unknown[] };
      await waitFor(async () => { await svc.observer.tick(); return (await text0()).starts.length > 0; }, 10_000, "the pod to be recorded");
      const url = `http://127.0.0.1:${(ops.server.address() as AddressInfo).port}`;
      let out = "";
      const code = await main(["report", "--url", url, "--json"], new Writable({ write(c, _e, cb) { out += c.toString(); cb(); } }));
      expect(code).toBe(0);
      const doc = JSON.parse(out) as Report;
      expect(doc.pods).toBe(1);
      expect(doc.phases.find((p) => p.acceleration === "estargz" && p.phase === "ready")).toMatchObject({ pods: 1, p50: 20 });
      expect(doc.images).toEqual([expect.objectContaining({ image: "nginx:1.27", pulls: 1, p50Seconds: 1.5, sizeBytes: 5_000_000 })]);
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(text).toContain('apparate_pod_start_seconds_count{phase="ready",acceleration="estargz",node_accelerated="true",pulled="true"} 1');
    } finally {
      await ops.close();
      await svc.stop();
    }
  });
});
