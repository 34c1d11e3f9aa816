// The observer's I/O edge: pod, node and kubelet-event watches, the Lease, and a
// periodic tick that records every pod that became Ready since the Lease's
// watermark (and at least `grace` ago, so its kubelet events have arrived).
// Only the Lease holder records; the watermark moves in the same conditional Lease
// update, before the pods are recorded, so no pod is counted twice across restarts
// or replicas (a crash between the two loses that tick's pods instead).
import { CoreV1Api, type KubeConfig, type CoreV1Event, type V1Node, type V1Pod } from "@kubernetes/client-node";
import type { Config } from "../config/config.js";
import { ALWAYS_EXCLUDED_NAMESPACES } from "../config/config.js";
import { startInformer, type ManagedInformer } from "../kube/informer.js";
import type { Logger } from "../observability/logger.js";
import { parseKubeletMessage, type KubeletImageMessage } from "./kubelet-messages.js";
import { ObserverLease } from "./lease.js";
import { accelerationOf, imageStatus, phasesOf, readyAt } from "./pod-start.js";
import type { ImagePull, PodStart, StartRecorder } from "./recorder.js";

export interface StartObserverOptions {
  identity: string;
  namespace: string;
  leaseName: string;
  leaseDurationSeconds: number;
  /** How long after Ready a pod is recorded: its kubelet events must have arrived. */
  graceMs: number;
  tickMs: number;
  /** Whether the webhook handles this namespace (list or label). */
  enabledNamespace(namespace: string): boolean;
  now?: () => number;
}

export interface StartObserver {
  /** Whether this replica holds the Lease (and so records). */
  leader(): boolean;
  holder(): string | undefined;
  synced(): boolean;
  /** One election round and recording pass (the timer calls it; tests too). */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

/** Pods whose pull events are kept while they start; the oldest are dropped beyond it. */
const MAX_PENDING_PODS = 20_000;

export function startStartObserver(kc: KubeConfig, config: Config, logger: Logger, recorder: StartRecorder, opts: StartObserverOptions): StartObserver {
  const core = kc.makeApiClient(CoreV1Api);
  const now = opts.now ?? Date.now;
  const lease = new ObserverLease(kc, { namespace: opts.namespace, name: opts.leaseName, identity: opts.identity, durationSeconds: opts.leaseDurationSeconds }, now);
  const { nodeLabelKey, nodeLabelValue } = config.acceleration.placement;

  // Kubelet image events by pod uid, then by container (fieldPath) or image.
  const pulls = new Map<string, Map<string, KubeletImageMessage>>();
  const onEvent = (ev: CoreV1Event) => {
    const uid = ev.involvedObject?.uid;
    if (!uid || ev.involvedObject?.kind !== "Pod") return;
    const msg = parseKubeletMessage(ev.reason, ev.message);
    if (!msg || msg.kind === "pulling") return;
    let byContainer = pulls.get(uid);
    if (!byContainer) {
      byContainer = new Map();
      pulls.set(uid, byContainer);
      if (pulls.size > MAX_PENDING_PODS) pulls.delete(pulls.keys().next().value!);
    }
    const key = ev.involvedObject.fieldPath ?? msg.image;
    // A restarted container pulls again (pull policy Always); its start is the first pull.
    if (!byContainer.has(key)) byContainer.set(key, msg);
  };

  const informers: ManagedInformer<never>[] = [];
  const pods = startInformer<V1Pod>(kc, "pods(observer)", "/api/v1/pods", () => core.listPodForAllNamespaces(), logger, {
    onSetup: (inf) => inf.on("delete", (p) => { if (p.metadata?.uid) pulls.delete(p.metadata.uid); }),
  });
  const events = startInformer<CoreV1Event>(kc, "events(observer)", "/api/v1/events",
    () => core.listEventForAllNamespaces({ fieldSelector: "reason=Pulled" }), logger, {
      fieldSelector: "reason=Pulled",
      onSetup: (inf) => { inf.on("add", onEvent); inf.on("update", onEvent); },
    });
  // Every node, not a label selector: a node losing the label must be seen (a selector
  // watch would only stop mentioning it).
  const labelled = new Set<string>();
  const onNode = (n: V1Node) => {
    const name = n.metadata?.name;
    if (!name) return;
    if (n.metadata?.labels?.[nodeLabelKey] === nodeLabelValue) labelled.add(name); else labelled.delete(name);
    recorder.metrics.nodesLabelled.set(labelled.size);
  };
  const nodes = startInformer<V1Node>(kc, "nodes(observer)", "/api/v1/nodes", () => core.listNode(), logger, {
    onSetup: (inf) => {
      inf.on("add", onNode);
      inf.on("update", onNode);
      inf.on("delete", (n) => { if (n.metadata?.name) labelled.delete(n.metadata.name); recorder.metrics.nodesLabelled.set(labelled.size); });
    },
  });
  informers.push(pods as never, events as never, nodes as never);
  const synced = () => informers.every((i) => i.synced());

  const inScope = (p: V1Pod): boolean => {
    const ns = p.metadata?.namespace ?? "";
    return !ALWAYS_EXCLUDED_NAMESPACES.includes(ns) && ns !== config.releaseNamespace && opts.enabledNamespace(ns);
  };

  const startOf = (p: V1Pod, ready: number): PodStart => {
    const uid = p.metadata!.uid!;
    const nodeAccelerated = labelled.has(p.spec?.nodeName ?? "");
    const imagePulls: ImagePull[] = [];
    for (const msg of pulls.get(uid)?.values() ?? []) {
      const st = imageStatus(p, msg.image, nodeAccelerated, config);
      imagePulls.push(msg.kind === "pulled"
        ? { image: msg.image, result: "pulled", seconds: msg.pullSeconds, ...(msg.waitingSeconds !== undefined ? { waitingSeconds: msg.waitingSeconds } : {}), ...(msg.sizeBytes !== undefined ? { sizeBytes: msg.sizeBytes } : {}), ...st }
        : { image: msg.image, result: "present", ...st });
    }
    return { uid, namespace: p.metadata?.namespace ?? "", acceleration: accelerationOf(p), nodeAccelerated, readyAt: ready, phases: phasesOf(p), pulls: imagePulls };
  };

  let wasLeader = false;
  let running: Promise<void> | undefined;
  const round = async () => {
    const held = await lease.tick();
    if (held !== wasLeader) logger.info({ holder: lease.holder(), identity: opts.identity }, held ? "observer lease acquired: recording pod starts" : "observer lease held elsewhere: not recording");
    wasLeader = held;
    if (!held || !synced()) return;
    // A Lease without a watermark (made by hand): count from now on.
    const from = lease.watermark() ?? now() - opts.graceMs;
    const cutoff = Math.max(from, now() - opts.graceMs);
    const due: { pod: V1Pod; ready: number }[] = [];
    for (const p of pods.informer.list()) {
      const ready = readyAt(p);
      if (ready === undefined || ready <= from || ready > cutoff || !p.metadata?.uid || !inScope(p)) continue;
      due.push({ pod: p, ready });
    }
    // The watermark first: if the Lease was lost meanwhile, nothing is recorded.
    if (!(await lease.tick(cutoff))) { wasLeader = false; return; }
    due.sort((a, b) => a.ready - b.ready);
    for (const { pod, ready } of due) {
      recorder.record(startOf(pod, ready));
      pulls.delete(pod.metadata!.uid!);
    }
  };
  const tick = async () => {
    if (running) return running;
    running = round().catch((err: unknown) => { wasLeader = false; logger.warn({ err }, "observer round failed"); }).finally(() => { running = undefined; });
    return running;
  };
  const timer = setInterval(() => void tick(), opts.tickMs);
  timer.unref?.();
  void tick();

  return {
    leader: () => lease.holds(),
    holder: () => lease.holder(),
    synced,
    tick,
    stop: async () => {
      clearInterval(timer);
      await running;
      for (const i of informers) i.stop();
      await lease.release();
    },
  };
}
