// A bounded memo of admission answers. A Deployment scaling out sends hundreds of
// reviews whose pods differ only in name and uid; they are planned once. The key is
// exactly what analysePod(), plan(), toPatch() and the credential lookup read from a
// review (never the pod's name or uid); an answer is reused only while every fact it
// was made from is still the same: each registry answer is read again from the
// resolver's cache and must be the very same object (a new answer, an expiry or other
// credentials give another object or none), the image-cache index has the same
// version, and no cache it could have chosen has expired or aged a day since.
// One memo serves one Config (it is built with the handler's dependencies).
import { LRUCache } from "lru-cache";
import type { Config } from "../config/config.js";
import {
  ANNOTATION_ACTIONS, ANNOTATION_IMAGE_CACHE_MATCH, ANNOTATION_INJECT, ANNOTATION_MIRROR_POD,
  ANNOTATION_ORIGINAL_IMAGES, ANNOTATION_USE_IMAGE_CACHE, LABEL_IMAGE_CACHE,
} from "../mutate/annotations.js";
import type { Candidate, PlanInput } from "../mutate/plan.js";
import { CONTAINER_KINDS } from "../mutate/pod.js";
import { annotationsSize, TOTAL_ANNOTATION_SIZE_LIMIT } from "../mutate/validation.js";
import type { LookupResult } from "../registry/result.js";

/** The pod annotations apparate reads or writes (any other annotation cannot change an answer). */
const ANNOTATIONS = [ANNOTATION_INJECT, ANNOTATION_MIRROR_POD, ANNOTATION_ORIGINAL_IMAGES, ANNOTATION_USE_IMAGE_CACHE, ANNOTATION_IMAGE_CACHE_MATCH, ANNOTATION_ACTIONS] as const;

// Markers in the key for "the object is absent" and "the key is absent" (values are strings).
const NONE = 0;
const UNSET = 1;

/**
 * The memo key of a review: everything the answer depends on, in one string. Undefined
 * when the pod is too large to be worth keeping (its key alone would be large).
 */
export function memoKey(input: PlanInput, config: Config, maxLength: number): string | undefined {
  const pod = input.pod;
  const meta = pod.metadata;
  const spec = pod.spec;
  const parts: unknown[] = [
    input.namespace, input.operation, input.subResource ?? NONE,
    // scopeOf() reads one namespace label.
    input.namespaceLabels === undefined ? NONE : input.namespaceLabels[config.namespaceLabelKey] ?? UNSET,
    meta == null ? NONE : UNSET,
    meta?.labels == null ? NONE : meta.labels[LABEL_IMAGE_CACHE] ?? UNSET,
    // scopeOf() reads the opt-out label.
    meta?.labels == null ? NONE : meta.labels[ANNOTATION_INJECT] ?? UNSET,
    // Existing ephemeral containers are never candidates (plan.ts walkContainers).
    input.subResource === "ephemeralcontainers" ? input.oldPod?.spec?.ephemeralContainers?.map((c) => c.name) ?? NONE : NONE,
    // The 256 KiB annotation limit (plan.ts fitted): the size, when near enough to matter.
    nearAnnotationLimit(meta?.annotations),
  ];
  const ann = meta?.annotations;
  if (ann == null) parts.push(NONE); else for (const k of ANNOTATIONS) parts.push(ann[k] ?? UNSET);
  if (spec == null) {
    parts.push(NONE);
  } else {
    for (const kind of CONTAINER_KINDS) {
      const list = spec[kind];
      if (list == null) { parts.push(NONE); continue; }
      parts.push(list.length);
      for (const c of list) parts.push(c.name, c.image ?? NONE);
    }
    const key = config.acceleration.placement.nodeLabelKey;
    parts.push(spec.nodeSelector == null ? NONE : spec.nodeSelector[key] ?? UNSET);
    // Node affinity whole (placement conflicts, the preferred term); other affinity only by presence.
    parts.push(spec.affinity == null ? NONE : spec.affinity.nodeAffinity ?? UNSET);
    // Which credentials the registry answers were asked with.
    parts.push(config.registry.usePodPullSecrets ? spec.imagePullSecrets ?? NONE : NONE);
  }
  const key = JSON.stringify(parts);
  return key.length > maxLength ? undefined : key;
}

// apparate's own annotations are bounded by what the key holds (names and images) plus this.
const NEAR_LIMIT_MARGIN = 4 * 16_384 + 4096;
function nearAnnotationLimit(ann: Readonly<Record<string, string>> | undefined): number {
  const size = annotationsSize(ann);
  return size > TOTAL_ANNOTATION_SIZE_LIMIT - NEAR_LIMIT_MARGIN ? size : NONE;
}

/** What an answer was made from, to check before it is reused. */
export interface Provenance {
  candidates: readonly Candidate[];
  /** The registry answer each candidate was planned with (same order). */
  answers: readonly (LookupResult | undefined)[];
  /** The image-cache index version, when the index was consulted. */
  imageCacheVersion?: number;
  /** ms since epoch from which the answer may differ by the clock alone (cache expiry, age). */
  validUntil: number;
}

interface Entry<T> extends Provenance { value: T }

export interface PlanMemoOptions {
  /** Answers kept (least recently used dropped first). */
  maxEntries?: number;
  /** Pods whose key is longer are planned every time. */
  maxKeyLength?: number;
}

export class PlanMemo<T> {
  // No TTL: an entry's life is decided by its provenance, and lru-cache arms no timer.
  private readonly entries: LRUCache<string, Entry<T>>;
  readonly maxKeyLength: number;

  constructor(opts: PlanMemoOptions = {}) {
    this.entries = new LRUCache({ max: opts.maxEntries ?? 1024 });
    this.maxKeyLength = opts.maxKeyLength ?? 16_384;
  }

  get size(): number { return this.entries.size; }

  key(input: PlanInput, config: Config): string | undefined {
    return memoKey(input, config, this.maxKeyLength);
  }

  /**
   * The remembered answer, when every fact it was made from still holds: `peek` reads a
   * candidate's registry answer from the cache now (never I/O); `imageCacheVersion` is
   * the index's version now (undefined when the feature is off or the index has none).
   */
  reuse(key: string, now: number, imageCacheVersion: number | undefined, peek: (c: Candidate) => LookupResult | undefined): T | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (now >= e.validUntil || e.imageCacheVersion !== imageCacheVersion || !sameAnswers(e, peek)) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  /**
   * Keeps an answer whose registry answers all came from the resolver's cache (as `peek`
   * reads them now). One made without (a deadline, an answer not cached) is not kept:
   * the next review must ask again.
   */
  remember(key: string, value: T, provenance: Provenance, peek: (c: Candidate) => LookupResult | undefined): void {
    if (!sameAnswers(provenance, peek)) return;
    this.entries.set(key, { ...provenance, value });
  }
}

function sameAnswers(e: Provenance, peek: (c: Candidate) => LookupResult | undefined): boolean {
  for (let i = 0; i < e.candidates.length; i++) {
    const now = peek(e.candidates[i]!);
    if (now === undefined || now !== e.answers[i]) return false;
  }
  return true;
}
