// ImageCacheUsed / ImageCacheMissed events (seed 002's event name). A pod has no
// name or uid during admission when it comes from generateName, so the events are
// emitted after creation, from a pod watch selected by the apparate.io/image-cache
// label. Event names are deterministic per pod, so several webhook replicas (or a
// relist) never emit twice: the second create gets 409 and is ignored.
import { CoreV1Api, type KubeConfig, type V1Pod, type CoreV1Event } from "@kubernetes/client-node";
import { ANNOTATION_IMAGE_CACHE_MATCH, ANNOTATION_USE_IMAGE_CACHE, LABEL_IMAGE_CACHE } from "../mutate/annotations.js";
import type { Logger } from "../observability/logger.js";
import { startInformer, type ManagedInformer } from "../kube/informer.js";
import { isAlreadyExists } from "../kube/status.js";

export interface CacheEvent { reason: "ImageCacheUsed" | "ImageCacheMissed"; type: "Normal" | "Warning"; message: string }

/** The event a pod deserves, from what the webhook wrote on it (pure). */
export function eventFor(pod: V1Pod): CacheEvent | undefined {
  const result = pod.metadata?.labels?.[LABEL_IMAGE_CACHE];
  const id = pod.metadata?.annotations?.[ANNOTATION_USE_IMAGE_CACHE];
  switch (result) {
    case "used": {
      let detail = "";
      try {
        const m = JSON.parse(pod.metadata?.annotations?.[ANNOTATION_IMAGE_CACHE_MATCH] ?? "{}") as { cache?: string; images?: number; sizeGiB?: number };
        detail = m.cache ? ` (ImageCache ${m.cache}, ${m.images} images, ${m.sizeGiB} GiB)` : "";
      } catch { /* annotation edited by hand */ }
      return { reason: "ImageCacheUsed", type: "Normal", message: `Image cache ${id} chosen by apparate${detail}` };
    }
    case "manual": return { reason: "ImageCacheUsed", type: "Normal", message: `Image cache ${id} chosen by the pod` };
    case "manual-not-ready": return { reason: "ImageCacheMissed", type: "Warning", message: `Image cache ${id} is not a ready image cache; images are pulled normally` };
    case "missed": return { reason: "ImageCacheMissed", type: "Warning", message: "No ready image cache holds the pod's images; images are pulled normally" };
    default: return undefined;
  }
}

export function startImageCacheEvents(kc: KubeConfig, logger: Logger): ManagedInformer<V1Pod> {
  const core = kc.makeApiClient(CoreV1Api);
  const done = new Set<string>();
  const emit = async (pod: V1Pod) => {
    const uid = pod.metadata?.uid;
    const name = pod.metadata?.name;
    const namespace = pod.metadata?.namespace;
    const ev = eventFor(pod);
    if (!uid || !name || !namespace || !ev || done.has(uid)) return;
    done.add(uid);
    if (done.size > 50_000) done.delete(done.values().next().value!);
    const now = new Date();
    const body: CoreV1Event = {
      metadata: { name: `${name}.apparate-image-cache`, namespace },
      involvedObject: { apiVersion: "v1", kind: "Pod", name, namespace, uid },
      reason: ev.reason, message: ev.message, type: ev.type,
      source: { component: "apparate" }, reportingComponent: "apparate", reportingInstance: process.env.POD_NAME ?? "apparate",
      firstTimestamp: now, lastTimestamp: now, count: 1,
    };
    try {
      await core.createNamespacedEvent({ namespace, body });
    } catch (err) {
      if (!isAlreadyExists(err)) logger.warn({ pod: `${namespace}/${name}`, err }, "cannot emit image cache event");
    }
  };
  return startInformer<V1Pod>(kc, "pods(image-cache)", "/api/v1/pods",
    () => core.listPodForAllNamespaces({ labelSelector: LABEL_IMAGE_CACHE }), logger, {
      labelSelector: LABEL_IMAGE_CACHE,
      onSetup: (inf) => { inf.on("add", (p) => void emit(p)); inf.on("update", (p) => void emit(p)); },
    });
}
