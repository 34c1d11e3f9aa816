// Whether a decision changes the pod's image; shared by plan() and the patch writers
// (its own module, so that plan.ts may use patch.ts without an import cycle).
import type { ContainerDecision } from "./plan.js";

/** Whether apply/patch must write this decision's image into the pod. */
export function changesImage(d: ContainerDecision): boolean {
  return d.image !== d.original && d.outcome !== "already-handled";
}
