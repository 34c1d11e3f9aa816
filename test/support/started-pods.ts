// Pods as the API server shows them once kubelet has started them, for the observer tests.
import type { V1Pod } from "@kubernetes/client-node";

/** A pod as the API server shows it once kubelet has started it (a 1.29+ kubelet's conditions). */
export function startedPod(opts: { name?: string; uid?: string; namespace?: string; nodeName?: string; t0?: string; annotations?: Record<string, string>; labels?: Record<string, string>; sandbox?: boolean; images?: string[] } = {}): V1Pod {
  const at = (s: number) => new Date(Date.parse(opts.t0 ?? "2026-01-10T10:00:00Z") + s * 1000).toISOString().replace(/\.000Z$/, "Z");
  const conditions = [
    { type: "PodScheduled", status: "True", lastTransitionTime: at(1) },
    ...(opts.sandbox === false ? [] : [{ type: "PodReadyToStartContainers", status: "True", lastTransitionTime: at(3) }]),
    { type: "Initialized", status: "True", lastTransitionTime: at(6) },
    { type: "ContainersReady", status: "True", lastTransitionTime: at(20) },
    { type: "Ready", status: "True", lastTransitionTime: at(20) },
  ];
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: { name: opts.name ?? "web-1", namespace: opts.namespace ?? "default", uid: opts.uid ?? "u-1", creationTimestamp: at(0) as unknown as Date, annotations: opts.annotations ?? {}, labels: opts.labels ?? {} },
    spec: { nodeName: opts.nodeName ?? "n1", initContainers: [{ name: "init", image: "busybox:1.36" }], containers: (opts.images ?? ["nginx:1.27", "sidecar:1"]).map((image, i) => ({ name: `c${i}`, image })) },
    status: {
      phase: "Running",
      conditions: conditions as never,
      initContainerStatuses: [{ name: "init", image: "busybox:1.36", imageID: "", ready: true, restartCount: 0, state: { terminated: { exitCode: 0, startedAt: at(4) as never, finishedAt: at(5) as never } } }],
      containerStatuses: [
        { name: "c0", image: "nginx:1.27", imageID: "", ready: true, restartCount: 1, state: { running: { startedAt: at(15) as never } }, lastState: { terminated: { exitCode: 1, startedAt: at(12) as never, finishedAt: at(13) as never } } },
        { name: "c1", image: "sidecar:1", imageID: "", ready: true, restartCount: 0, state: { running: { startedAt: at(9) as never } } },
      ],
    },
  };
}
