// What a started pod's own record says (pure): its acceleration mode, from what
// the webhook wrote on it, and the times of its start phases, from its conditions
// and container statuses. The watcher feeds it; the tests feed it recorded pods.
import type { V1Pod } from "@kubernetes/client-node";
import type { Config } from "../config/config.js";
import { DEFAULT_TAG, parseReferenceCached } from "../image/reference.js";
import { ANNOTATION_ACTIONS, ANNOTATION_ORIGINAL_IMAGES, LABEL_IMAGE_CACHE } from "../mutate/annotations.js";
import { matchRule } from "../mutate/rules.js";

/** How the webhook sped a pod up; one per pod so that series stay bounded. */
export const ACCELERATIONS = ["estargz", "image-cache", "mirror", "none"] as const;
export type Acceleration = (typeof ACCELERATIONS)[number];

/**
 * Start phases, each in seconds from the pod's creation (so "ready" is the whole
 * start and the phases of one pod never decrease).
 */
export const PHASES = ["scheduled", "sandbox_ready", "first_container_started", "containers_ready", "ready"] as const;
export type Phase = (typeof PHASES)[number];

/** apparate.io/actions is "accelerated=2,rewritten=1,placement=preferred". */
export function actionsOf(pod: V1Pod): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of (pod.metadata?.annotations?.[ANNOTATION_ACTIONS] ?? "").split(",")) {
    const [k, v] = part.split("=");
    if (!k) continue;
    const n = Number(v);
    out.set(k.trim(), Number.isFinite(n) ? n : 1);
  }
  return out;
}

/**
 * The pod's mode. A pod with a swapped image counts as eStargz even when it also
 * uses a cache or a mirror: lazy loading changes the start the most, and one mode
 * per pod keeps one observation per pod.
 */
export function accelerationOf(pod: V1Pod): Acceleration {
  const a = actionsOf(pod);
  if ((a.get("accelerated") ?? 0) > 0 || (a.get("accelerated+rewritten") ?? 0) > 0) return "estargz";
  const cache = pod.metadata?.labels?.[LABEL_IMAGE_CACHE];
  if (cache === "used" || cache === "manual") return "image-cache";
  if ((a.get("rewritten") ?? 0) > 0) return "mirror";
  return "none";
}

function seconds(from: number, at: Date | string | undefined): number | undefined {
  if (at === undefined) return undefined;
  const t = new Date(at).getTime();
  if (!Number.isFinite(t)) return undefined;
  return Math.max(0, (t - from) / 1000);
}

function conditionTime(pod: V1Pod, type: string): Date | string | undefined {
  const c = pod.status?.conditions?.find((x) => x.type === type && x.status === "True");
  return c?.lastTransitionTime;
}

/** When the pod became Ready (ms since epoch); undefined while it is not. */
export function readyAt(pod: V1Pod): number | undefined {
  const t = conditionTime(pod, "Ready");
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isFinite(ms) ? ms : undefined;
}

/** The first app container's start: after init containers, restarts looked through. */
function firstStarted(pod: V1Pod): Date | string | undefined {
  let first: number | undefined;
  let value: Date | string | undefined;
  for (const s of pod.status?.containerStatuses ?? []) {
    const candidates = [s.state?.running?.startedAt, s.state?.terminated?.startedAt, s.lastState?.terminated?.startedAt];
    for (const c of candidates) {
      if (c === undefined) continue;
      const ms = new Date(c).getTime();
      if (Number.isFinite(ms) && (first === undefined || ms < first)) { first = ms; value = c; }
    }
  }
  return value;
}

/** Seconds from creation to each phase the pod's record shows (older clusters lack sandbox_ready). */
export function phasesOf(pod: V1Pod): Partial<Record<Phase, number>> {
  const created = pod.metadata?.creationTimestamp;
  if (created === undefined) return {};
  const t0 = new Date(created).getTime();
  if (!Number.isFinite(t0)) return {};
  const out: Partial<Record<Phase, number>> = {};
  const put = (p: Phase, v: number | undefined) => { if (v !== undefined) out[p] = v; };
  put("scheduled", seconds(t0, conditionTime(pod, "PodScheduled")));
  put("sandbox_ready", seconds(t0, conditionTime(pod, "PodReadyToStartContainers")));
  put("first_container_started", seconds(t0, firstStarted(pod)));
  put("containers_ready", seconds(t0, conditionTime(pod, "ContainersReady")));
  put("ready", seconds(t0, conditionTime(pod, "Ready")));
  return out;
}

/** What a person reads about one image in `apparate report`. */
export interface ImageStatus {
  status: "estargz" | "mirror" | "not accelerated";
  /** What would make it faster; absent when nothing obvious. */
  advice?: "no -apparate variant" | "node not labelled" | "no rule matches" | "acceleration disabled" | "not an image reference";
}

/**
 * An image's acceleration status and what would help, from the pod (was it swapped
 * or rewritten?), the node (does it lazy-load?) and the webhook's own rules.
 */
export function imageStatus(pod: V1Pod, image: string, nodeAccelerated: boolean, config: Config): ImageStatus {
  return imageStatusOf(originalImagesOf(pod), image, nodeAccelerated, config);
}

/** The images the user wrote where the webhook rewrote them (apparate.io/original-images); empty when none. */
export function originalImagesOf(pod: V1Pod): string[] {
  return Object.values(safeJson(pod.metadata?.annotations?.[ANNOTATION_ORIGINAL_IMAGES])).filter((v) => typeof v === "string");
}

/** imageStatus from the images the user wrote (what the observer keeps of a pod). */
export function imageStatusOf(originals: readonly string[], image: string, nodeAccelerated: boolean, config: Config): ImageStatus {
  const suffix = config.acceleration.tagSuffix;
  let ref: ReturnType<typeof parseReferenceCached>;
  try { ref = parseReferenceCached(image); } catch { return { status: "not accelerated", advice: "not an image reference" }; }
  if ((ref.tag ?? DEFAULT_TAG).endsWith(suffix)) {
    // Without the snapshotter the node pulls the eStargz image in full.
    return nodeAccelerated ? { status: "estargz" } : { status: "estargz", advice: "node not labelled" };
  }
  const rewritten = [...config.rewrite.registries.values()].some((t) => t.domain === ref.domain);
  const status: ImageStatus["status"] = rewritten ? "mirror" : "not accelerated";
  if (!config.acceleration.enabled) return { status, advice: "acceleration disabled" };
  // A rewritten image is judged by the name the user wrote (recorded by the webhook).
  let judged = ref;
  if (rewritten) {
    for (const o of originals) {
      try {
        const r = parseReferenceCached(o);
        if (ref.path.endsWith(r.path) && (r.tag ?? DEFAULT_TAG) === (ref.tag ?? DEFAULT_TAG)) { judged = r; break; }
      } catch { /* a hand-edited annotation */ }
    }
  }
  const rule = matchRule(judged, config);
  if (!rule.matched) return { status, advice: "no rule matches" };
  return { status, advice: "no -apparate variant" };
}

function safeJson(raw: string | undefined): Record<string, string> {
  if (!raw) return {};
  try {
    const v = JSON.parse(raw) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, string>) : {};
  } catch { return {}; }
}

/**
 * What the observer keeps of a pod until it records its start: only what the report
 * needs (a few hundred bytes), never the object (several KiB), so that the Lease
 * holder's memory stays small in a cluster of 100,000 pods.
 */
export interface PodStartRecord {
  namespace: string;
  node: string;
  acceleration: Acceleration;
  /** ms since epoch; undefined while not Ready. */
  readyAt: number | undefined;
  phases: Partial<Record<Phase, number>>;
  /** apparate.io/original-images' values, only where the webhook wrote it. */
  originals?: string[];
  /** Succeeded or Failed without being Ready: its start will never be recorded. */
  finished: boolean;
}

export function podStartRecord(pod: V1Pod): PodStartRecord {
  const ready = readyAt(pod);
  const originals = originalImagesOf(pod);
  const phase = pod.status?.phase;
  return {
    namespace: pod.metadata?.namespace ?? "",
    node: pod.spec?.nodeName ?? "",
    acceleration: accelerationOf(pod),
    readyAt: ready,
    phases: phasesOf(pod),
    ...(originals.length > 0 ? { originals } : {}),
    finished: ready === undefined && (phase === "Succeeded" || phase === "Failed"),
  };
}
