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
import { changesImage } from "./changes.js";
import { applyPlan } from "./patch.js";
import { annotationsSize, introducedViolations, TOTAL_ANNOTATION_SIZE_LIMIT, validatedParts } from "./validation.js";

export type { ImageCacheDecision } from "./image-cache-choice.js";
export type { Placement } from "./placement.js";
import { CONTAINER_KINDS, containerKey, type ContainerKind, type PodLike } from "./pod.js";

export interface PlanInput {
  pod: PodLike;
  namespace: string;
  operation: "CREATE" | "UPDATE" | string;
  /** "ephemeralcontainers" for the pods/ephemeralcontainers subresource. */
  subResource?: string;
  /** The pod before an UPDATE (the review's oldObject): its ephemeral containers are never changed. */
  oldPod?: PodLike;
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
  | "placement-conflict"
  | "no-labelled-node";     // required placement, and no Ready, schedulable node carries the label

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

export { changesImage } from "./changes.js";

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
  /**
   * Ready, schedulable nodes carrying the placement label (a label-selected node watch);
   * undefined when not known (no watch, or not synced yet): then the label is assumed present.
   */
  labelledNodes?: number;
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
  // The chart's objectSelector excludes such pods too; checked again here (README's promise).
  if (pod.metadata?.labels?.[ANNOTATION_INJECT] === "false") return { skipped: `pod opted out with the label ${ANNOTATION_INJECT}: "false"` };
  if (ann[ANNOTATION_MIRROR_POD] !== undefined) return { skipped: "mirror (static) pod" };
  if (input.operation === "CREATE" && input.subResource) return { skipped: `subresource ${input.subResource}` };
  if (input.operation === "UPDATE" && input.subResource !== "ephemeralcontainers") return { skipped: "only CREATE and ephemeral containers are handled" };
  if (input.subResource === "ephemeralcontainers" && !config.acceleration.ephemeralContainers) {
    return { skipped: "ephemeral containers are not handled (acceleration.ephemeralContainers is false)" };
  }
  // Without the pod as it was, an added ephemeral container cannot be told from an existing one.
  if (input.subResource === "ephemeralcontainers" && !input.oldPod) return { skipped: "ephemeral containers update without oldObject" };
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
  const ephemeralUpdate = input.subResource === "ephemeralcontainers";
  const kinds: readonly ContainerKind[] = ephemeralUpdate ? ["ephemeralContainers"] : CONTAINER_KINDS;
  // The API server refuses any change to an existing ephemeral container
  // (ValidatePodEphemeralContainersUpdate): only the added ones are candidates.
  const existing = ephemeralUpdate ? new Set((input.oldPod?.spec?.ephemeralContainers ?? []).map((c) => c.name)) : undefined;
  for (const kind of kinds) {
    const list = input.pod.spec?.[kind] ?? [];
    for (let index = 0; index < list.length; index++) {
      const c = list[index]!;
      if (existing?.has(c.name)) continue;
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

/**
 * The containers of a pod analysed one at a time: the admission handler walks this in
 * slices, checking its deadline and yielding to the event loop between them.
 */
export function* analysedContainers(input: PlanInput, config: Config): Generator<Analysed> {
  const recorded = recordedOriginals(input.pod);
  const suffix = config.acceleration.tagSuffix;
  for (const walk of walkContainers(input)) {
    const img = walk.image ?? "";
    if (!walk.image) {
      yield { walk, decision: decision(walk, img, img, "no-image", "container has no image", false) };
      continue;
    }
    // Object.hasOwn: container names come from the pod, and "constructor" or "__proto__"
    // would otherwise find Object.prototype's members and count as already handled.
    const key = containerKey(walk.kind, walk.name);
    if (Object.hasOwn(recorded, key) && typeof recorded[key] === "string") {
      yield { walk, decision: decision(walk, recorded[key]!, img, "already-handled", "already handled by apparate", false) };
      continue;
    }
    let ref: ImageReference;
    try {
      ref = parseReferenceCached(walk.image);
    } catch (err) {
      const msg = err instanceof ImageReferenceError ? err.message : String(err);
      yield { walk, decision: decision(walk, img, img, "invalid-reference", msg, true) };
      continue;
    }
    if (ref.tag?.endsWith(suffix)) {
      yield { walk, decision: decision(walk, img, img, "already-handled", `tag already ends with ${suffix}`, false) };
      continue;
    }
    if (!config.acceleration.enabled) { yield { walk, ref }; continue; }
    const rule = matchRule(ref, config);
    if (!rule.matched) {
      yield { walk, ref, ineligible: decision(walk, img, img, "not-eligible", rule.reason, false) };
      continue;
    }
    if (ref.digest !== undefined && !config.acceleration.digestPinned) {
      yield { walk, ref, ineligible: decision(walk, img, img, "digest-pinned", "digest-pinned images are never tag-swapped: the accelerated image has another digest (acceleration.digestPinned is off)", true, rule.rule) };
      continue;
    }
    // Pinned: the candidate keeps the digest X; the registry's conversion link gives Y.
    // A bare digest stays bare (repo@sha256:Y); a tag gets the suffix (repo:tag-apparate@sha256:Y).
    const newTag = ref.digest !== undefined && ref.tag === undefined ? undefined : (ref.tag ?? DEFAULT_TAG) + suffix;
    if (newTag === undefined) {
      const accelerated = ref;
      yield { walk, ref, candidate: { kind: walk.kind, index: walk.index, name: walk.name, original: walk.image, ref, accelerated, key: formatReference(accelerated), rule: rule.rule } };
      continue;
    }
    if (newTag.length > MAX_TAG_LENGTH) {
      yield { walk, ref, ineligible: decision(walk, img, img, "tag-too-long", `tag ${newTag.slice(0, 40)}… would exceed ${MAX_TAG_LENGTH} characters`, true, rule.rule) };
      continue;
    }
    const accelerated = withTag(ref, newTag);
    yield {
      walk, ref,
      candidate: { kind: walk.kind, index: walk.index, name: walk.name, original: walk.image, ref, accelerated, key: formatReference(accelerated), rule: rule.rule },
    };
  }
}

function analyse(input: PlanInput, config: Config): Analysed[] {
  return [...analysedContainers(input, config)];
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
  // Required placement on a cluster where no Ready node carries the label would leave the pod Pending.
  const noNode = !isEphemeral && placementMode === "required" && facts.labelledNodes === 0;

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
      } else if (noNode) {
        outcome = "no-labelled-node"; warn = true;
        reason = `not accelerated: no Ready, schedulable node carries ${labelKey}=${labelValue} (placement mode required)`;
      } else if (!answer || answer.kind === "unknown") {
        outcome = "lookup-unknown"; warn = true;
        const why = answer?.reason ?? "deadline exceeded";
        reason = `not accelerated: could not check ${SHORT(a.candidate.key)}${why === "deadline exceeded" ? " in time" : ""} (${why})`;
      } else if (a.ref.digest !== undefined) {
        // Pinned (acceleration.digestPinned): follow the verified link X -> Y, or stay pinned to X.
        if (answer.kind === "exists" && answer.digest !== undefined && answer.digest !== a.ref.digest) {
          result = { ...a.candidate.accelerated, digest: answer.digest }; outcome = "accelerated"; swapped++;
          reason = `accelerated: ${a.ref.digest} was converted to ${answer.digest} (${answer.mediaType} of eStargz layers naming it as its source; link verified)`;
        } else {
          outcome = "digest-pinned"; warn = true;
          reason = `digest-pinned, not accelerated: ${answer.kind === "absent" ? answer.reason : `no converted digest known for ${a.ref.digest}`}`;
        }
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
    annotations[ANNOTATION_ACTIONS] = mergeActions(input.pod.metadata?.annotations?.[ANNOTATION_ACTIONS], counts, placement?.mode);
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
  const result: Plan = {
    containers: decisions,
    ...(imageCache ? { imageCache } : {}),
    ...(placement ? { placement } : {}),
    ...(originalImages ? { originalImages } : {}),
    annotations,
    labels,
    warnings,
  };
  if (changed.length === 0 && Object.keys(annotations).length === 0 && Object.keys(labels).length === 0) return result;
  return fitted(input, result);
}

/**
 * apparate.io/actions after this admission: the counts already recorded (an earlier
 * invocation, before another webhook added containers) plus this one's.
 */
export function mergeActions(recorded: string | undefined, counts: ReadonlyMap<string, number>, placement: string | undefined): string {
  const merged = new Map<string, string>();
  for (const part of (recorded ?? "").split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) merged.set(part.slice(0, eq), part.slice(eq + 1));
  }
  for (const [k, n] of counts) {
    const before = Number(merged.get(k));
    merged.set(k, String((Number.isInteger(before) && before > 0 ? before : 0) + n));
  }
  if (placement) merged.set("placement", placement);
  return [...merged].map(([k, v]) => `${k}=${v}`).join(",");
}

function untouched(why: string): Plan {
  return { skipped: why, containers: [], annotations: {}, labels: {}, warnings: [`apparate: pod left unchanged: ${why}`] };
}

/**
 * The plan, made to pass the API server's validation of what it touches. Annotations
 * over the 256 KiB total: apparate.io/actions (a summary) is dropped first; if the
 * rest still does not fit, or any other rule would break, the pod is left alone.
 */
function fitted(input: PlanInput, p: Plan): Plan {
  const before = validatedParts(input.pod);
  const existing = input.pod.metadata?.annotations;
  const ours = { ...p.annotations, ...(p.originalImages ? { [ANNOTATION_ORIGINAL_IMAGES]: JSON.stringify(p.originalImages) } : {}) };
  const sizeWith = (add: Record<string, string>) => {
    let total = annotationsSize(existing);
    for (const k of Object.keys(add)) if (existing && Object.hasOwn(existing, k)) total -= Buffer.byteLength(k) + Buffer.byteLength(existing[k]!);
    return total + annotationsSize(add);
  };
  if (sizeWith(ours) > TOTAL_ANNOTATION_SIZE_LIMIT && annotationsSize(existing) <= TOTAL_ANNOTATION_SIZE_LIMIT && ANNOTATION_ACTIONS in p.annotations) {
    const { [ANNOTATION_ACTIONS]: _dropped, ...rest } = p.annotations;
    p = { ...p, annotations: rest, warnings: [...p.warnings, `apparate: ${ANNOTATION_ACTIONS} not recorded: the pod's annotations would exceed ${TOTAL_ANNOTATION_SIZE_LIMIT} bytes`] };
  }
  const broken = introducedViolations(before, applyPlan(before, p), input.oldPod && validatedParts(input.oldPod));
  if (broken.length > 0) return untouched(`the change would make it invalid (${broken[0]})`);
  return p;
}

