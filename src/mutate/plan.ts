// The decision core: pure and synchronous. Given a pod, the facts gathered for it
// (registry answers, namespace labels, image caches) and the config, it says what
// changes and why. The server, `apparate explain` and the tests all call plan().
import type { Config } from "../config/config.js";
import { ALWAYS_EXCLUDED_NAMESPACES } from "../config/config.js";
import {
  formatReference, MAX_TAG_LENGTH, parseReferenceCached, ImageReferenceError, withDomain, withTag,
  DEFAULT_TAG, type ImageReference,
} from "../image/reference.js";
import type { LookupResult } from "../registry/result.js";
import { matchRule } from "./rules.js";
import {
  ANNOTATION_ACTIONS, ANNOTATION_INJECT, ANNOTATION_MIRROR_POD, ANNOTATION_ORIGINAL_IMAGES,
} from "./annotations.js";
import type { ImageCacheView } from "../imagecache/policy.js";
import { type ImageCacheDecision, imageCacheFor } from "./image-cache-choice.js";
import { type Placement, placementConflict } from "./placement.js";

export type { ImageCacheDecision } from "./image-cache-choice.js";
export type { Placement } from "./placement.js";
import { CONTAINER_KINDS, containerKey, type ContainerKind, type PodLike } from "./pod.js";

export interface PlanInput {
  pod: PodLike;
  namespace: string;
  operation: "CREATE" | "UPDATE" | string;
  /** "ephemeralcontainers" for the pods/ephemeralcontainers subresource. */
  subResource?: string;
  /** Labels of the pod's namespace; undefined when not known. */
  namespaceLabels?: Readonly<Record<string, string>>;
}

export type ContainerOutcome =
  | "accelerated"           // tag swapped to the -apparate variant
  | "rewritten"             // registry host rewritten only
  | "accelerated+rewritten"
  | "already-handled"       // recorded in original-images, or already an accelerated tag
  | "not-eligible"          // registry not in the allow-list or no rule matches
  | "no-image"
  | "invalid-reference"
  | "digest-pinned"
  | "tag-too-long"
  | "accelerated-absent"    // no OCI -apparate variant in the registry
  | "lookup-unknown"        // registry did not answer in time, or failed
  | "placement-conflict";

export interface ContainerDecision {
  kind: ContainerKind;
  index: number;
  name: string;
  original: string;
  image: string;
  outcome: ContainerOutcome;
  reason: string;
  /** A rule that selected the image, for `explain` and `check-image`. */
  rule?: string;
  /** True when the user should hear about it (an admission warning). */
  warn: boolean;
}

export interface Plan {
  /** Why the whole pod was left alone, when it was. */
  skipped?: string;
  containers: ContainerDecision[];
  placement?: Placement;
  /** Original images to record (merged with any already recorded). */
  originalImages?: Record<string, string>;
  /** Annotations to set on the pod. */
  annotations: Record<string, string>;
  /** Labels to set on the pod (the image-cache outcome, so a label-selected watch can emit events). */
  labels: Record<string, string>;
  warnings: string[];
  imageCache?: ImageCacheDecision;
}

/** Whether apply/patch must write this decision's image into the pod. */
export function changesImage(d: ContainerDecision): boolean {
  return d.image !== d.original && d.outcome !== "already-handled";
}

/** A registry lookup the plan needs: the accelerated reference of a candidate container. */
export interface Candidate {
  kind: ContainerKind;
  index: number;
  name: string;
  original: string;
  ref: ImageReference;
  accelerated: ImageReference;
  /** Fully qualified accelerated reference, the key of Facts.lookups. */
  key: string;
  rule: string;
}

export interface Facts {
  /** Registry answers keyed by Candidate.key; a missing key means unknown. */
  lookups: ReadonlyMap<string, LookupResult>;
  /** The image caches known now; absent when the feature is off. */
  imageCaches?: ImageCacheView;
  /** ms since epoch, for cache expiry. */
  now: number;
}

interface Scope { skipped?: string }

/** Decides whether a pod is in apparate's scope at all. */
export function scopeOf(input: PlanInput, config: Config): Scope {
  const { pod, namespace } = input;
  if (ALWAYS_EXCLUDED_NAMESPACES.includes(namespace) || namespace === config.releaseNamespace) {
    return { skipped: `namespace ${namespace} is never mutated` };
  }
  const inList = config.namespaces.has(namespace);
  const labelled = input.namespaceLabels?.[config.namespaceLabelKey] === config.namespaceLabelValue;
  if (!inList && !labelled) return { skipped: `namespace ${namespace} is not enabled` };
  const ann = pod.metadata?.annotations ?? {};
  if (ann[ANNOTATION_INJECT] === "false") return { skipped: `pod opted out with ${ANNOTATION_INJECT}: "false"` };
  if (ann[ANNOTATION_MIRROR_POD] !== undefined) return { skipped: "mirror (static) pod" };
  if (input.operation === "CREATE" && input.subResource) return { skipped: `subresource ${input.subResource}` };
  if (input.operation === "UPDATE" && input.subResource !== "ephemeralcontainers") return { skipped: "only CREATE and ephemeral containers are handled" };
  if (input.subResource === "ephemeralcontainers" && !config.acceleration.ephemeralContainers) {
    return { skipped: "ephemeral containers are not handled (acceleration.ephemeralContainers is false)" };
  }
  return {};
}

function recordedOriginals(pod: PodLike): Record<string, string> {
  const raw = pod.metadata?.annotations?.[ANNOTATION_ORIGINAL_IMAGES];
  if (!raw) return {};
  try {
    const v = JSON.parse(raw) as unknown;
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v).filter(([, s]) => typeof s === "string")) as Record<string, string>;
    }
  } catch { /* a hand-edited, broken annotation is treated as absent */ }
  return {};
}

interface Walk {
  kind: ContainerKind;
  index: number;
  name: string;
  image: string | undefined;
}

function* walkContainers(input: PlanInput): Generator<Walk> {
  const kinds: readonly ContainerKind[] = input.subResource === "ephemeralcontainers" ? ["ephemeralContainers"] : CONTAINER_KINDS;
  for (const kind of kinds) {
    const list = input.pod.spec?.[kind] ?? [];
    for (let index = 0; index < list.length; index++) {
      const c = list[index]!;
      yield { kind, index, name: c.name, image: c.image };
    }
  }
}

/** One decision, built with a fixed shape (object spreads here dominated planning time). */
function decision(walk: Walk, original: string, image: string, outcome: ContainerOutcome, reason: string, warn: boolean, rule?: string): ContainerDecision {
  return { kind: walk.kind, index: walk.index, name: walk.name, original, image, outcome, reason, warn, rule };
}

export type Analysed =
  | { walk: Walk; decision: ContainerDecision }
  | { walk: Walk; ref: ImageReference; candidate?: Candidate; ineligible?: ContainerDecision };

function analyse(input: PlanInput, config: Config): Analysed[] {
  const recorded = recordedOriginals(input.pod);
  const suffix = config.acceleration.tagSuffix;
  const out: Analysed[] = [];
  for (const walk of walkContainers(input)) {
    const img = walk.image ?? "";
    if (!walk.image) {
      out.push({ walk, decision: decision(walk, img, img, "no-image", "container has no image", false) });
      continue;
    }
    // Object.hasOwn: container names come from the pod, and "constructor" or "__proto__"
    // would otherwise find Object.prototype's members and count as already handled.
    const key = containerKey(walk.kind, walk.name);
    if (Object.hasOwn(recorded, key) && typeof recorded[key] === "string") {
      out.push({ walk, decision: decision(walk, recorded[key]!, img, "already-handled", "already handled by apparate", false) });
      continue;
    }
    let ref: ImageReference;
    try {
      ref = parseReferenceCached(walk.image);
    } catch (err) {
      const msg = err instanceof ImageReferenceError ? err.message : String(err);
      out.push({ walk, decision: decision(walk, img, img, "invalid-reference", msg, true) });
      continue;
    }
    if (ref.tag?.endsWith(suffix)) {
      out.push({ walk, decision: decision(walk, img, img, "already-handled", `tag already ends with ${suffix}`, false) });
      continue;
    }
    if (!config.acceleration.enabled) { out.push({ walk, ref }); continue; }
    const rule = matchRule(ref, config);
    if (!rule.matched) {
      out.push({ walk, ref, ineligible: decision(walk, img, img, "not-eligible", rule.reason, false) });
      continue;
    }
    if (ref.digest !== undefined) {
      out.push({ walk, ref, ineligible: decision(walk, img, img, "digest-pinned", "digest-pinned images are never tag-swapped: the accelerated image has another digest", true, rule.rule) });
      continue;
    }
    const newTag = (ref.tag ?? DEFAULT_TAG) + suffix;
    if (newTag.length > MAX_TAG_LENGTH) {
      out.push({ walk, ref, ineligible: decision(walk, img, img, "tag-too-long", `tag ${newTag.slice(0, 40)}… would exceed ${MAX_TAG_LENGTH} characters`, true, rule.rule) });
      continue;
    }
    const accelerated = withTag(ref, newTag);
    out.push({
      walk, ref,
      candidate: { kind: walk.kind, index: walk.index, name: walk.name, original: walk.image, ref, accelerated, key: formatReference(accelerated), rule: rule.rule },
    });
  }
  return out;
}

/**
 * What plan() needs to know about a pod before any I/O: its scope, every container
 * analysed once, and the registry lookups to make. The handler computes it once and
 * hands it to both the fact gathering and plan().
 */
export interface PodAnalysis {
  skipped?: string;
  items: Analysed[];
  candidates: Candidate[];
}

export function analysePod(input: PlanInput, config: Config): PodAnalysis {
  const scope = scopeOf(input, config);
  if (scope.skipped) return { skipped: scope.skipped, items: [], candidates: [] };
  const items = analyse(input, config);
  const candidates: Candidate[] = [];
  for (const a of items) if ("candidate" in a && a.candidate) candidates.push(a.candidate);
  return { items, candidates };
}

/** The registry lookups plan() will want answered. Empty when the pod is out of scope. */
export function candidatesOf(input: PlanInput, config: Config): Candidate[] {
  return analysePod(input, config).candidates;
}

function rewriteHost(ref: ImageReference, config: Config): ImageReference | undefined {
  const to = config.rewrite.registries.get(ref.domain);
  if (to === undefined) return undefined;
  // A mirror must be asked for the tag the runtime would pull: no tag means latest.
  const tagged = ref.tag === undefined && ref.digest === undefined ? withTag(ref, DEFAULT_TAG) : ref;
  const moved = withDomain(tagged, to.domain);
  return to.prefix ? { ...moved, path: `${to.prefix}/${moved.path}` } : moved;
}

const SHORT = (s: string) => (s.length > 100 ? s.slice(0, 100) + "…" : s);

export function plan(input: PlanInput, facts: Facts, config: Config, analysis: PodAnalysis = analysePod(input, config)): Plan {
  if (analysis.skipped) return { skipped: analysis.skipped, containers: [], annotations: {}, labels: {}, warnings: [] };
  const analysed = analysis.items;
  const { key: labelKey, value: labelValue } = { key: config.acceleration.placement.nodeLabelKey, value: config.acceleration.placement.nodeLabelValue };
  const placementMode = config.acceleration.placement.mode;
  const isEphemeral = input.subResource === "ephemeralcontainers";
  // A conflicting node selector means no swap at all: the pod could never reach an apparate node.
  const conflict = !isEphemeral && placementMode !== "none" ? placementConflict(input.pod, labelKey, labelValue) : undefined;

  const decisions: ContainerDecision[] = [];
  let swapped = 0;
  for (const a of analysed) {
    if ("decision" in a) { decisions.push(a.decision); continue; }
    let result: ImageReference | undefined;
    let outcome: ContainerOutcome | undefined;
    let reason = "";
    let warn = false;
    let rule: string | undefined;
    if (a.candidate) {
      rule = a.candidate.rule;
      const answer = facts.lookups.get(a.candidate.key);
      if (conflict) {
        outcome = "placement-conflict"; reason = `not accelerated: ${conflict}`; warn = true;
      } else if (!answer || answer.kind === "unknown") {
        outcome = "lookup-unknown"; warn = true;
        const why = answer?.reason ?? "deadline exceeded";
        reason = `not accelerated: could not check ${SHORT(a.candidate.key)}${why === "deadline exceeded" ? " in time" : ""} (${why})`;
      } else if (answer.kind === "absent") {
        outcome = "accelerated-absent"; warn = true;
        reason = `not accelerated: ${SHORT(a.candidate.key)} ${answer.reason}`;
      } else {
        result = a.candidate.accelerated; outcome = "accelerated"; swapped++;
        reason = `accelerated: ${SHORT(a.candidate.key)} exists (${answer.mediaType})`;
      }
    } else if (a.ineligible) {
      ({ outcome, reason, warn } = a.ineligible);
      rule = a.ineligible.rule;
    }
    const rewritten = rewriteHost(result ?? a.ref, config);
    if (rewritten) {
      result = rewritten;
      outcome = outcome === "accelerated" ? "accelerated+rewritten" : "rewritten";
      reason = `${outcome === "rewritten" ? "" : reason + "; "}registry ${a.ref.domain} rewritten to ${rewritten.domain}`;
      warn = false;
    }
    if (!outcome) { outcome = "not-eligible"; reason = "acceleration is disabled"; }
    decisions.push(decision(a.walk, a.walk.image!, result ? formatReference(result) : a.walk.image!, outcome, reason, warn, rule));
  }

  const changed = decisions.filter(changesImage);
  const annotations: Record<string, string> = {};
  let originalImages: Record<string, string> | undefined;
  if (changed.length > 0 && !isEphemeral) {
    // A prototype-less object: a container named "__proto__" is recorded like any other.
    originalImages = Object.assign(Object.create(null) as Record<string, string>, recordedOriginals(input.pod));
    for (const d of changed) originalImages[containerKey(d.kind, d.name)] = d.original;
  }
  let placement: Placement | undefined;
  if (swapped > 0 && placementMode !== "none" && !isEphemeral) {
    placement = { mode: placementMode, key: labelKey, value: labelValue, weight: config.acceleration.placement.weight };
  }
  const counts = new Map<string, number>();
  for (const d of changed) counts.set(d.outcome, (counts.get(d.outcome) ?? 0) + 1);
  if (counts.size > 0 && !isEphemeral) {
    annotations[ANNOTATION_ACTIONS] = [...counts].map(([k, n]) => `${k}=${n}`).concat(placement ? [`placement=${placement.mode}`] : []).join(",");
  }
  const warnings: string[] = decisions.filter((d) => d.warn).map((d) => `apparate: ${d.kind === "containers" ? "container" : d.kind === "initContainers" ? "init container" : "ephemeral container"} ${d.name}: ${d.reason}`);
  const cache = config.imageCache.enabled && facts.imageCaches && !isEphemeral
    ? imageCacheFor(input.pod, decisions, facts.imageCaches, facts.now, config)
    : undefined;
  const labels: Record<string, string> = cache?.labels ?? {};
  const imageCache = cache?.decision;
  if (cache) {
    Object.assign(annotations, cache.annotations);
    warnings.push(cache.warning);
  }
  return {
    containers: decisions,
    ...(imageCache ? { imageCache } : {}),
    ...(placement ? { placement } : {}),
    ...(originalImages ? { originalImages } : {}),
    annotations,
    labels,
    warnings,
  };
}

