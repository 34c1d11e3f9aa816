// Turns a Plan into the mutated pod and an RFC 6902 patch. The patch is computed by
// diffing (fast-json-patch), so it is valid against the submitted pod by construction.
import jsonpatch from "fast-json-patch";
import { ANNOTATION_ORIGINAL_IMAGES } from "./annotations.js";
import type { Plan } from "./plan.js";
import type { PodLike } from "./pod.js";

export type PatchOperation = jsonpatch.Operation;

export function applyPlan(pod: PodLike, plan: Plan): PodLike {
  const out = structuredClone(pod);
  const spec = (out.spec ??= {});
  for (const d of plan.containers) {
    if (d.image === d.original || d.outcome === "already-handled") continue;
    const c = spec[d.kind]?.[d.index];
    if (c) c.image = d.image;
  }
  if (plan.placement) {
    const { key, value } = plan.placement;
    if (plan.placement.mode === "required") {
      (spec.nodeSelector ??= {})[key] ??= value;
    } else {
      const na = ((spec.affinity ??= {}).nodeAffinity ??= {});
      const prefs = (na.preferredDuringSchedulingIgnoredDuringExecution ??= []);
      const present = prefs.some((p) => p.preference.matchExpressions?.some((e) => e.key === key && e.operator === "In" && e.values?.includes(value)));
      if (!present && spec.nodeSelector?.[key] !== value) {
        prefs.push({ weight: plan.placement.weight, preference: { matchExpressions: [{ key, operator: "In", values: [value] }] } });
      }
    }
  }
  if (Object.keys(plan.labels).length > 0) {
    const meta = (out.metadata ??= {});
    meta.labels = { ...(meta.labels ?? {}), ...plan.labels };
  }
  const ann: Record<string, string> = { ...plan.annotations };
  if (plan.originalImages) ann[ANNOTATION_ORIGINAL_IMAGES] = JSON.stringify(plan.originalImages);
  if (Object.keys(ann).length > 0) {
    const meta = (out.metadata ??= {});
    meta.annotations = { ...(meta.annotations ?? {}), ...ann };
  }
  return out;
}

export function toPatch(pod: PodLike, plan: Plan): PatchOperation[] {
  return jsonpatch.compare(pod as object, applyPlan(pod, plan) as object);
}
