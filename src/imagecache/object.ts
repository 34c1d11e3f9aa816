// The ImageCache custom resource (eks.cloud.tencent.com/v1), as the informer sees it.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { ImageCacheSpec } from "./policy.js";

export interface ImageCacheObject extends KubernetesObject {
  spec?: { images?: unknown; imageCacheSize?: unknown; retentionDays?: unknown; imagePullSecrets?: unknown };
  status?: { imcId?: unknown; imcPhase?: unknown; snapshotId?: unknown };
}

export const DEFAULT_CACHE_SIZE_GIB = 20;

/** The fields the policy uses; undefined for an object that cannot be a cache. */
export function imageCacheSpecOf(o: ImageCacheObject): ImageCacheSpec | undefined {
  const name = o.metadata?.name;
  const images = o.spec?.images;
  if (!name || !Array.isArray(images)) return undefined;
  const num = (v: unknown, d: number) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : d);
  const created = Date.parse(String(o.metadata?.creationTimestamp ?? ""));
  const imcId = o.status?.imcId;
  const phase = o.status?.imcPhase;
  return {
    name,
    ...(o.metadata?.uid ? { uid: o.metadata.uid } : {}),
    created: Number.isNaN(created) ? 0 : created,
    images: images.filter((i): i is string => typeof i === "string"),
    size: num(o.spec?.imageCacheSize, DEFAULT_CACHE_SIZE_GIB),
    retentionDays: num(o.spec?.retentionDays, 0),
    ...(typeof imcId === "string" && imcId ? { imcId } : {}),
    ...(typeof phase === "string" ? { phase } : {}),
  };
}
