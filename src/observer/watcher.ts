// The observer's I/O edge: the Lease, and, on the replica that holds it only, pod,
// node and kubelet-event watches feeding compact records; a periodic tick records
// every pod that became Ready since the Lease's watermark (and at least `grace` ago,
// so its kubelet events have arrived). Only the Lease holder watches and records: a
// replica that is not the holder keeps no pod, node or event state at all, and one
// that loses the Lease stops its watches and drops what it held.
// The watermark moves in the same conditional Lease update, before the pods are
// recorded, so no pod is counted twice across restarts or replicas (a crash between
// the two loses that tick's pods instead).
// What is kept: per pod not yet recorded, a PodStartRecord (pods Ready before the
// watermark, or finished without being Ready, are dropped as they arrive); per node,
// its name while it carries the apparate label (a label-selected, metadata-only
// watch); per starting pod, its parsed kubelet image messages.
import { CoreV1Api, type KubeConfig, type CoreV1Event, setHeaderOptions, type V1Node, type V1Pod } from "@kubernetes/client-node";
import type { Config } from "../config/config.js";
import { ALWAYS_EXCLUDED_NAMESPACES } from "../config/config.js";
import { ACCEPT_METADATA_LIST, startReflector, type Reflector } from "../kube/reflector.js";
import type { Logger } from "../observability/logger.js";
import { parseKubeletMessage, type KubeletImageMessage } from "./kubelet-messages.js";
import { ObserverLease } from "./lease.js";
import { imageStatusOf, podStartRecord, type PodStartRecord } from "./pod-start.js";
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
  /** List page size of the watches (tests use a small one to see several pages). */
  pageSize?: number;
}

/** What the observer holds right now (all zero on a replica without the Lease). */
export interface ObserverHolding {
  watching: boolean;
  /** Pods with a compact record: not yet Ready, or Ready and not yet recorded. */
  pods: number;
  /** Pods with kubelet image messages kept. */
  podsWithPulls: number;
  labelledNodes: number;
}

export interface StartObserver {
  /** Whether this replica holds the Lease (and so records). */
  leader(): boolean;
  holder(): string | undefined;
  synced(): boolean;
  holding(): ObserverHolding;
  /** One election round and recording pass (the timer calls it; tests too). */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

/** Pods whose pull events are kept while they start; the oldest are dropped beyond it. */
const MAX_PENDING_PODS = 20_000;

/** A metadata-only list through client-node's generated API. */
const metadataOnlyList = setHeaderOptions("Accept", ACCEPT_METADATA_LIST);

export function startStartObserver(kc: KubeConfig, config: Config, logger: Logger, recorder: StartRecorder, opts: StartObserverOptions): StartObserver {
  const core = kc.makeApiClient(CoreV1Api);
  const now = opts.now ?? Date.now;
  const lease = new ObserverLease(kc, { namespace: opts.namespace, name: opts.leaseName, identity: opts.identity, durationSeconds: opts.leaseDurationSeconds }, now);
  const { nodeLabelKey, nodeLabelValue } = config.acceleration.placement;
  const pageSize = opts.pageSize ?? 500;
  const startedAt = now();
  /** Pods Ready at or before this are never recorded (a Lease without a watermark: from now on). */
  const floor = () => lease.watermark() ?? startedAt - opts.graceMs;

  // All state below exists only while this replica holds the Lease.
  const pods = new Map<string, PodStartRecord>();
  const pulls = new Map<string, Map<string, KubeletImageMessage>>();
  const labelled = new Set<string>();
  let reflectors: Reflector[] = [];

  const excluded = (ns: string) => ALWAYS_EXCLUDED_NAMESPACES.includes(ns) || ns === config.releaseNamespace;
  const onPod = (p: V1Pod) => {
    const uid = p.metadata?.uid;
    if (!uid) return;
    const rec = podStartRecord(p);
    if (excluded(rec.namespace) || rec.finished || (rec.readyAt !== undefined && rec.readyAt <= floor())) {
      pods.delete(uid);
      return;
    }
    pods.set(uid, rec);
  };
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
  const nodeGauge = () => recorder.metrics.nodesLabelled.set(labelled.size);

  const startWatching = () => {
    // Only scheduled pods (spec.nodeName set): a start begins on a node.
    const podFields = "spec.nodeName!=";
    const eventFields = "reason=Pulled,involvedObject.kind=Pod";
    const nodeLabels = `${nodeLabelKey}=${nodeLabelValue}`;
    reflectors = [
      startReflector<V1Pod>(kc, { reset: () => pods.clear(), upsert: onPod, remove: (p) => { if (p.metadata?.uid) { pods.delete(p.metadata.uid); pulls.delete(p.metadata.uid); } } }, logger, {
        name: "pods(observer)", path: "/api/v1/pods", fieldSelector: podFields, pageSize,
        list: (page) => core.listPodForAllNamespaces({ ...page, fieldSelector: podFields }),
      }),
      startReflector<CoreV1Event>(kc, { reset: () => pulls.clear(), upsert: onEvent, remove: () => {} }, logger, {
        name: "events(observer)", path: "/api/v1/events", fieldSelector: eventFields, pageSize,
        list: (page) => core.listEventForAllNamespaces({ ...page, fieldSelector: eventFields }),
      }),
      // The labelled nodes' metadata only: the API server sends a node that loses the
      // label as DELETED on a label-selected watch.
      startReflector<V1Node>(kc, {
        reset: () => { labelled.clear(); nodeGauge(); },
        upsert: (n) => { const name = n.metadata?.name; if (!name) return; if (n.metadata?.labels?.[nodeLabelKey] === nodeLabelValue) labelled.add(name); else labelled.delete(name); nodeGauge(); },
        remove: (n) => { if (n.metadata?.name) labelled.delete(n.metadata.name); nodeGauge(); },
      }, logger, {
        name: "nodes(observer)", path: "/api/v1/nodes", labelSelector: nodeLabels, metadataOnly: true, pageSize,
        list: (page) => core.listNode({ ...page, labelSelector: nodeLabels }, metadataOnlyList),
      }),
    ];
  };
  const stopWatching = () => {
    for (const r of reflectors) r.stop();
    reflectors = [];
    pods.clear();
    pulls.clear();
    labelled.clear();
    nodeGauge();
  };
  const synced = () => reflectors.length > 0 && reflectors.every((r) => r.synced());

  const startOf = (uid: string, p: PodStartRecord, ready: number): PodStart => {
    const nodeAccelerated = labelled.has(p.node);
    const imagePulls: ImagePull[] = [];
    for (const msg of pulls.get(uid)?.values() ?? []) {
      const st = imageStatusOf(p.originals ?? [], msg.image, nodeAccelerated, config);
      imagePulls.push(msg.kind === "pulled"
        ? { image: msg.image, result: "pulled", seconds: msg.pullSeconds, ...(msg.waitingSeconds !== undefined ? { waitingSeconds: msg.waitingSeconds } : {}), ...(msg.sizeBytes !== undefined ? { sizeBytes: msg.sizeBytes } : {}), ...st }
        : { image: msg.image, result: "present", ...st });
    }
    return { uid, namespace: p.namespace, acceleration: p.acceleration, nodeAccelerated, readyAt: ready, phases: p.phases, pulls: imagePulls };
  };

  let wasLeader = false;
  let lastHeld = Number.NEGATIVE_INFINITY;
  let running: Promise<void> | undefined;
  const round = async () => {
    let held = false;
    try { held = await lease.tick(); } catch (err) { logger.warn({ err }, "observer lease renewal failed"); }
    const t = now();
    if (held) lastHeld = t;
    if (held !== wasLeader) logger.info({ holder: lease.holder(), identity: opts.identity }, held ? "observer lease acquired: watching and recording pod starts" : "observer lease not held: not watching pods");
    wasLeader = held;
    // A failed renewal keeps the watches while the Lease may still be ours (a relist of
    // every pod costs the API server); another holder, or expiry, stops them at once.
    const ours = held || (lease.holder() === opts.identity && t - lastHeld < opts.leaseDurationSeconds * 1000);
    if (ours && reflectors.length === 0) startWatching();
    if (!ours && reflectors.length > 0) stopWatching();
    if (!held || !synced()) return;
    const from = floor();
    const cutoff = Math.max(from, t - opts.graceMs);
    const due: { uid: string; rec: PodStartRecord; ready: number }[] = [];
    for (const [uid, rec] of pods) {
      const ready = rec.readyAt;
      if (ready === undefined || ready > cutoff) continue;
      if (ready > from && opts.enabledNamespace(rec.namespace)) due.push({ uid, rec, ready });
      else pods.delete(uid);
    }
    // The watermark first: if the Lease was lost meanwhile, nothing is recorded.
    if (!(await lease.tick(cutoff))) { wasLeader = false; stopWatching(); return; }
    lastHeld = t;
    due.sort((a, b) => a.ready - b.ready);
    for (const { uid, rec, ready } of due) {
      recorder.record(startOf(uid, rec, ready));
      pods.delete(uid);
      pulls.delete(uid);
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
    holding: () => ({ watching: reflectors.length > 0, pods: pods.size, podsWithPulls: pulls.size, labelledNodes: labelled.size }),
    tick,
    stop: async () => {
      clearInterval(timer);
      await running;
      stopWatching();
      await lease.release();
    },
  };
}
