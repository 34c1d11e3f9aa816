// Where a pod with swapped images must run: on nodes the node agent labelled
// (the stargz snapshotter is there). Pure; plan() decides when it applies.
import type { PodLike } from "./pod.js";

export interface Placement {
  mode: "required" | "preferred";
  key: string;
  value: string;
  weight: number;
}

/**
 * Why the pod could never land on a node labelled key=value, or undefined when it
 * can. Such a pod gets no swap at all: an eStargz image on a node without the
 * snapshotter would be pulled in full, and a required selector would leave it Pending.
 */
export function placementConflict(pod: PodLike, key: string, value: string): string | undefined {
  const sel = pod.spec?.nodeSelector?.[key];
  if (sel !== undefined && sel !== value) return `nodeSelector ${key}=${sel} conflicts with ${key}=${value}`;
  const terms = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms && terms.length > 0) {
    // Terms are ORed, expressions within a term ANDed: one term admitting key=value is enough.
    const admits = terms.some((t) => (t.matchExpressions ?? []).every((e) => {
      if (e.key !== key) return true;
      switch (e.operator) {
        case "In": return (e.values ?? []).includes(value);
        case "NotIn": return !(e.values ?? []).includes(value);
        case "Exists": return true;
        case "DoesNotExist": return false;
        default: return true;
      }
    }));
    if (!admits) return `required node affinity excludes ${key}=${value}`;
  }
  return undefined;
}
