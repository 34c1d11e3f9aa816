// Which ImageCache a pod uses (seed 002's auto-match policy, applied by
// imagecache/policy.ts) and what that writes on the pod. Pure: the clock comes in.
import type { Config } from "../config/config.js";
import { type ImageCacheView, isUsable } from "../imagecache/policy.js";
import { ANNOTATION_IMAGE_CACHE_MATCH, ANNOTATION_USE_IMAGE_CACHE, LABEL_IMAGE_CACHE } from "./annotations.js";
import type { PodLike } from "./pod.js";

export interface ImageCacheDecision {
  result: "used" | "missed" | "manual" | "manual-not-ready";
  reason: string;
  cache?: string;
  imcId?: string;
}

export interface ImageCacheOutcome {
  decision: ImageCacheDecision;
  annotations: Record<string, string>;
  labels: Record<string, string>;
  warning: string;
}

/**
 * The cache for a pod whose containers will pull `decisions`' images (after
 * apparate's own swaps and rewrites: those are the images the node pulls).
 */
export function imageCacheFor(
  pod: PodLike,
  decisions: readonly { kind: string; image: string }[],
  view: ImageCacheView,
  now: number,
  config: Config,
): ImageCacheOutcome {
  const images = decisions.filter((d) => d.kind !== "ephemeralContainers" && d.image).map((d) => d.image);
  const ann = pod.metadata?.annotations ?? {};
  const annotations: Record<string, string> = {};
  const labels: Record<string, string> = {};
  const match = ann[ANNOTATION_IMAGE_CACHE_MATCH];
  const use = ann[ANNOTATION_USE_IMAGE_CACHE];
  const prior = match !== undefined && use !== undefined ? priorChoice(match, use) : undefined;
  // A pod apparate already chose for (a reinvocation, a repeated review) keeps that choice as it is.
  const decision = prior ?? chooseImageCache(pod, images, view, config, now);
  if (decision.result === "used" && !prior) {
    const c = view.byId(decision.imcId!)!;
    const value = config.imageCache.write === "id" ? c.imcId! : "auto";
    if (use !== value) annotations[ANNOTATION_USE_IMAGE_CACHE] = value;
    annotations[ANNOTATION_IMAGE_CACHE_MATCH] = JSON.stringify({
      cache: c.name, imcId: c.imcId, images: images.length, sizeGiB: c.size,
      ageDays: Math.floor((now - c.created) / 86_400_000), mode: config.imageCache.matchMode,
    });
  }
  if (pod.metadata?.labels?.[LABEL_IMAGE_CACHE] !== decision.result) labels[LABEL_IMAGE_CACHE] = decision.result;
  return { decision, annotations, labels, warning: `apparate: image cache: ${decision.reason}` };
}

function priorChoice(match: string, value: string): ImageCacheDecision | undefined {
  try {
    const m = JSON.parse(match) as { cache?: unknown; imcId?: unknown };
    if (typeof m.cache !== "string" || typeof m.imcId !== "string") return undefined;
    return { result: "used", reason: `${m.imcId} (${m.cache}) already chosen by apparate`, cache: m.cache, imcId: value === "auto" ? m.imcId : value };
  } catch {
    return undefined; // a hand-edited, broken annotation: decide again
  }
}

function chooseImageCache(pod: PodLike, images: string[], view: ImageCacheView, config: Config, now: number): ImageCacheDecision {
  const ic = config.imageCache;
  const current = pod.metadata?.annotations?.[ANNOTATION_USE_IMAGE_CACHE];
  if (current !== undefined && current !== "auto") {
    // A manual choice is the user's: never overwritten, only checked.
    const c = view.byId(current);
    if (!c || !isUsable(c, ic.readyPhase, now)) {
      return { result: "manual-not-ready", reason: `${current} is not a ready image cache; the platform will pull images normally` };
    }
    return { result: "manual", reason: `${current} chosen by the pod`, cache: c.name, imcId: current };
  }
  const m = view.match(images, { readyPhase: ic.readyPhase, matchMode: ic.matchMode, latestTag: ic.latestTag, now });
  if (m.kind === "none") return { result: "missed", reason: `no cache used: ${m.reason}` };
  return {
    result: "used", cache: m.cache.name, imcId: m.cache.imcId!,
    reason: `${m.cache.imcId} (${m.cache.name}, ${m.cache.size} GiB) holds ${m.covered.length} of ${m.covered.length + m.uncovered.length} images`,
  };
}
