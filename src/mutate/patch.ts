// Turns a Plan into the mutated pod (applyPlan, for `explain` and the tests) and
// into an RFC 6902 patch (toPatch, for the admission response).
import type jsonpatch from "fast-json-patch";
import { ANNOTATION_ORIGINAL_IMAGES } from "./annotations.js";
import { changesImage } from "./changes.js";
import type { Placement, Plan } from "./plan.js";
import type { PodLike } from "./pod.js";

export type PatchOperation = jsonpatch.Operation;

// The decisions both applyPlan and toPatch make; the property tests check that the
// patch toPatch writes for them gives exactly applyPlan's pod.

type Spec = NonNullable<PodLike["spec"]>;

/** Preferred placement adds its term unless the pod already prefers or requires key=value. */
function needsPreferredTerm(spec: Spec, { key, value }: Placement): boolean {
  const present = spec.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution
    ?.some((p) => p.preference.matchExpressions?.some((e) => e.key === key && e.operator === "In" && e.values?.includes(value)));
  return !present && spec.nodeSelector?.[key] !== value;
}

function preferredTerm({ key, value, weight }: Placement) {
  return { weight, preference: { matchExpressions: [{ key, operator: "In", values: [value] }] } };
}

/** The annotations a plan sets, original images included. */
function annotationsOf(plan: Plan): Record<string, string> {
  const ann: Record<string, string> = { ...plan.annotations };
  if (plan.originalImages) ann[ANNOTATION_ORIGINAL_IMAGES] = JSON.stringify(plan.originalImages);
  return ann;
}

export function applyPlan(pod: PodLike, plan: Plan): PodLike {
  const out = structuredClone(pod);
  out.spec ??= {};
  const spec = out.spec;
  for (const d of plan.containers) {
    if (!changesImage(d)) continue;
    const c = spec[d.kind]?.[d.index];
    if (c) c.image = d.image;
  }
  if (plan.placement) {
    const { key, value } = plan.placement;
    if (plan.placement.mode === "required") {
      spec.nodeSelector ??= {};
      spec.nodeSelector[key] ??= value;
    } else if (needsPreferredTerm(spec, plan.placement)) {
      spec.affinity ??= {};
      spec.affinity.nodeAffinity ??= {};
      const na = spec.affinity.nodeAffinity;
      na.preferredDuringSchedulingIgnoredDuringExecution ??= [];
      na.preferredDuringSchedulingIgnoredDuringExecution.push(preferredTerm(plan.placement));
    }
  }
  if (Object.keys(plan.labels).length > 0) {
    out.metadata ??= {};
    const meta = out.metadata;
    meta.labels = { ...(meta.labels ?? {}), ...plan.labels };
  }
  const ann = annotationsOf(plan);
  if (Object.keys(ann).length > 0) {
    out.metadata ??= {};
    const meta = out.metadata;
    meta.annotations = { ...(meta.annotations ?? {}), ...ann };
  }
  return out;
}

/** RFC 6901: "~" and "/" inside a path segment. */
function esc(segment: string): string {
  return segment.replace(/~/g, "~0").replace(/\//g, "~1");
}

/** Sets `entries` on the object at `path`: one "add" per key, or the whole object when absent. */
function addEntries(ops: PatchOperation[], path: string, current: Record<string, string> | null | undefined, entries: Record<string, string>): void {
  const keys = Object.keys(entries);
  if (keys.length === 0) return;
  if (current == null) { ops.push({ op: "add", path, value: { ...entries } }); return; }
  // "add" on an existing member replaces it (RFC 6902 4.1).
  for (const k of keys) if (current[k] !== entries[k]) ops.push({ op: "add", path: `${path}/${esc(k)}`, value: entries[k]! });
}

/**
 * The RFC 6902 patch that turns `pod` into applyPlan(pod, plan), built directly from
 * the plan: cloning and diffing the whole pod cost more than everything else in an
 * admission. The property tests check that applying it gives exactly applyPlan's pod.
 */
export function toPatch(pod: PodLike, plan: Plan): PatchOperation[] {
  const ops: PatchOperation[] = [];
  const spec = pod.spec;
  for (const d of plan.containers) {
    if (!changesImage(d)) continue;
    if (spec?.[d.kind]?.[d.index]) ops.push({ op: "replace", path: `/spec/${d.kind}/${d.index}/image`, value: d.image });
  }
  if (plan.placement && spec) {
    const { key, value } = plan.placement;
    if (plan.placement.mode === "required") {
      if (spec.nodeSelector?.[key] == null) addEntries(ops, "/spec/nodeSelector", spec.nodeSelector, { [key]: value });
    } else if (needsPreferredTerm(spec, plan.placement)) {
      // Add the term at the first level that exists.
      const term = preferredTerm(plan.placement);
      const na = spec.affinity?.nodeAffinity;
      const prefs = na?.preferredDuringSchedulingIgnoredDuringExecution;
      if (spec.affinity == null) ops.push({ op: "add", path: "/spec/affinity", value: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [term] } } });
      else if (na == null) ops.push({ op: "add", path: "/spec/affinity/nodeAffinity", value: { preferredDuringSchedulingIgnoredDuringExecution: [term] } });
      else if (prefs == null) ops.push({ op: "add", path: "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution", value: [term] });
      else ops.push({ op: "add", path: "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/-", value: term });
    }
  }
  const ann = annotationsOf(plan);
  const hasLabels = Object.keys(plan.labels).length > 0;
  const hasAnn = Object.keys(ann).length > 0;
  if (pod.metadata == null) {
    if (hasLabels || hasAnn) ops.push({ op: "add", path: "/metadata", value: { ...(hasLabels ? { labels: { ...plan.labels } } : {}), ...(hasAnn ? { annotations: ann } : {}) } });
  } else {
    addEntries(ops, "/metadata/labels", pod.metadata.labels, plan.labels);
    addEntries(ops, "/metadata/annotations", pod.metadata.annotations, ann);
  }
  return ops;
}

/**
 * The patch as the AdmissionReview response carries it (base64 of its JSON), or undefined
 * when there is nothing to change. Encoded once per answer: the plan memo keeps the
 * encoded bytes, so a pod of a known template costs no serialization at all.
 */
export function encodePatch(ops: readonly PatchOperation[]): string | undefined {
  return ops.length === 0 ? undefined : Buffer.from(JSON.stringify(ops), "utf8").toString("base64");
}
