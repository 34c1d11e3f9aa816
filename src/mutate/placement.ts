// Where a pod with swapped images must run: on nodes the node agent labelled
// (the stargz snapshotter is there). Pure; plan() decides when it applies.
import type { NodeSelectorRequirement, NodeSelectorTerm, PodLike } from "./pod.js";
import { isLabelValue, isQualifiedName } from "./validation.js";

export interface Placement {
  mode: "required" | "preferred";
  key: string;
  value: string;
  weight: number;
}

// Go's strconv.ParseInt(s, 10, 64): an optional sign and decimal digits, within int64.
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
function parseInt64(s: string): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = BigInt(s);
  return n < INT64_MIN || n > INT64_MAX ? undefined : n;
}

/**
 * Whether one matchExpressions requirement parses as the scheduler parses it:
 * k8s.io/apimachinery pkg/labels/selector.go NewRequirement (key a qualified name;
 * In/NotIn at least one value, Exists/DoesNotExist none, Gt/Lt exactly one int64;
 * every value a label value), reached through component-helpers
 * scheduling/corev1/nodeaffinity nodeSelectorRequirementsAsSelector
 * (kubernetes/kubernetes staging/src/k8s.io/component-helpers/scheduling/corev1/nodeaffinity/nodeaffinity.go
 * @d572249d3056b06877dff30c8ddbe30e75d3d353). An unknown operator is a parse error too.
 */
export function requirementParses(r: NodeSelectorRequirement): boolean {
  if (typeof r.key !== "string" || !isQualifiedName(r.key)) return false;
  const values = r.values ?? [];
  switch (r.operator) {
    case "In": case "NotIn": if (values.length === 0) return false; break;
    case "Exists": case "DoesNotExist": if (values.length !== 0) return false; break;
    case "Gt": case "Lt": if (values.length !== 1 || parseInt64(values[0]!) === undefined) return false; break;
    default: return false;
  }
  return values.every((v) => isLabelValue(v));
}

/**
 * labels.Requirement.Matches (pkg/labels/selector.go) against a node whose label `key`
 * is `value`, for a requirement on that key. Gt/Lt compare as int64: a node value that
 * is not an integer ("true") matches neither.
 */
function matchesLabel(r: NodeSelectorRequirement, value: string): boolean {
  const values = r.values ?? [];
  switch (r.operator) {
    case "In": return values.includes(value);
    case "NotIn": return !values.includes(value);
    case "Exists": return true;
    case "DoesNotExist": return false;
    case "Gt": case "Lt": {
      const node = parseInt64(value);
      const bound = parseInt64(values[0] ?? "");
      if (node === undefined || bound === undefined) return false;
      return r.operator === "Gt" ? node > bound : node < bound;
    }
    default: return false;
  }
}

/** matchFields: only In/NotIn with exactly one value parse (nodeSelectorRequirementsAsFieldSelector). */
function fieldRequirementParses(r: NodeSelectorRequirement): boolean {
  return (r.operator === "In" || r.operator === "NotIn") && (r.values ?? []).length === 1;
}

/**
 * Could some node labelled key=value satisfy this term? As the scheduler: an empty term
 * selects nothing; a term with a requirement that does not parse selects nothing; its
 * requirements are ANDed. Requirements on other label keys, and matchFields (the node's
 * name), are about what apparate cannot know, and are taken as satisfiable.
 */
export function termAdmits(t: NodeSelectorTerm, key: string, value: string): boolean {
  const exprs = t.matchExpressions ?? [];
  const fields = t.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  for (const e of exprs) {
    if (!requirementParses(e)) return false;
    if (e.key === key && !matchesLabel(e, value)) return false;
  }
  return fields.every(fieldRequirementParses);
}

/**
 * Why the pod could never land on a node labelled key=value, or undefined when it
 * can. Such a pod gets no swap at all: an eStargz image on a node without the
 * snapshotter would be pulled in full, and a required selector would leave it Pending.
 * The nodeSelector must hold (a map: ANDed), and of a required node affinity's terms
 * (ORed) one must admit the node (nodeaffinity.go RequiredNodeAffinity.Match).
 */
export function placementConflict(pod: PodLike, key: string, value: string): string | undefined {
  const sel = pod.spec?.nodeSelector?.[key];
  if (sel !== undefined && sel !== value) return `nodeSelector ${key}=${sel} conflicts with ${key}=${value}`;
  const required = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  // No terms at all: the API server refuses the pod ("must have at least one node selector term"), not ours to judge.
  const terms = required?.nodeSelectorTerms;
  if (terms && terms.length > 0 && !terms.some((t) => termAdmits(t, key, value))) {
    return `required node affinity excludes ${key}=${value}`;
  }
  return undefined;
}
