// The API server's validation rules that apparate's changes to a pod can touch, so
// that a change which would make a valid pod invalid is never made. Each rule names
// its upstream source; the apimachinery ones were read in Debian's
// golang-k8s-apimachinery-dev 0.36.4, the core ones in kubernetes/kubernetes
// pkg/apis/core/validation/validation.go @a7264f95ffc8b56377da16e83461aa59467ebb3e. Pure.
import type { NodeSelectorRequirement, NodeSelectorTerm, PodLike } from "./pod.js";

/** apimachinery pkg/api/validation/objectmeta.go TotalAnnotationSizeLimitB: 256 * (1 << 10). */
export const TOTAL_ANNOTATION_SIZE_LIMIT = 262_144;

// apimachinery pkg/api/validate/content/kube.go labelKeyFmt, and dns.go dns1123SubdomainFmt.
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * content/kube.go IsLabelKey (= IsQualifiedName): an optional DNS-1123 subdomain prefix
 * of at most 253 characters and "/", then a name of at most 63 characters.
 */
export function isQualifiedName(s: string): boolean {
  const parts = s.split("/");
  if (parts.length > 2) return false;
  const name = parts[parts.length - 1]!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)) return false;
  }
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}

/** content/kube.go IsValidLabelValue: empty, or a label name of at most 63 characters. */
export function isLabelValue(s: string): boolean {
  return s === "" || (s.length <= 63 && LABEL_NAME.test(s));
}

/**
 * objectmeta.go ValidateAnnotationsSize: the sum of len(key) + len(value) over all
 * annotations, in bytes (Go's len of a string is its UTF-8 length).
 */
export function annotationsSize(annotations: Readonly<Record<string, string>> | null | undefined): number {
  let total = 0;
  if (annotations) for (const k in annotations) total += Buffer.byteLength(k) + Buffer.byteLength(annotations[k] ?? "");
  return total;
}

/**
 * validation.go ValidateNodeSelectorRequirement: In/NotIn need values, Exists/DoesNotExist
 * take none, Gt/Lt exactly one; the key is a label name (ValidateLabelName). matchFields
 * (validateNodeFieldSelectorRequirement): key metadata.name, In/NotIn, exactly one value.
 */
function requirementErrors(r: NodeSelectorRequirement, field: boolean, at: string): string[] {
  const n = (r.values ?? []).length;
  const out: string[] = [];
  if (field) {
    if (r.key !== "metadata.name") out.push(`${at}.key: only metadata.name is supported in matchFields`);
    if (r.operator !== "In" && r.operator !== "NotIn") out.push(`${at}.operator: ${JSON.stringify(r.operator)} is not In or NotIn`);
    else if (n !== 1) out.push(`${at}.values: must be exactly one value`);
    return out;
  }
  switch (r.operator) {
    case "In": case "NotIn": if (n === 0) out.push(`${at}.values: must be specified when operator is In or NotIn`); break;
    case "Exists": case "DoesNotExist": if (n > 0) out.push(`${at}.values: may not be specified when operator is Exists or DoesNotExist`); break;
    case "Gt": case "Lt": if (n !== 1) out.push(`${at}.values: must be a single value when operator is Gt or Lt`); break;
    default: out.push(`${at}.operator: ${JSON.stringify(r.operator)} is not a valid selector operator`);
  }
  if (!isQualifiedName(r.key)) out.push(`${at}.key: ${JSON.stringify(r.key)} is not a qualified name`);
  return out;
}

function termErrors(t: NodeSelectorTerm, at: string): string[] {
  return [
    ...(t.matchExpressions ?? []).flatMap((r, i) => requirementErrors(r, false, `${at}.matchExpressions[${i}]`)),
    ...(t.matchFields ?? []).flatMap((r, i) => requirementErrors(r, true, `${at}.matchFields[${i}]`)),
  ];
}

/**
 * The violations of the rules apparate's changes can touch, one string each. A pod is
 * judged before and after a change: only what the change introduced counts (see
 * introducedViolations).
 */
export function podViolations(pod: PodLike, old?: PodLike): string[] {
  const out: string[] = [];
  const ann = pod.metadata?.annotations;
  if (ann) {
    // objectmeta.go ValidateAnnotations: a key is a qualified name once lower-cased.
    for (const k of Object.keys(ann)) if (!isQualifiedName(k.toLowerCase())) out.push(`metadata.annotations: key ${JSON.stringify(k)} is not a qualified name`);
    if (annotationsSize(ann) > TOTAL_ANNOTATION_SIZE_LIMIT) out.push(`metadata.annotations: Too long: must have at most ${TOTAL_ANNOTATION_SIZE_LIMIT} bytes`);
  }
  // apimachinery pkg/apis/meta/v1/validation ValidateLabels: for pod labels, and (validation.go
  // ValidatePodSpec, unversionedvalidation.ValidateLabels) for the nodeSelector.
  for (const [where, map] of [["metadata.labels", pod.metadata?.labels], ["spec.nodeSelector", pod.spec?.nodeSelector]] as const) {
    if (!map) continue;
    for (const [k, v] of Object.entries(map)) {
      if (!isQualifiedName(k)) out.push(`${where}: key ${JSON.stringify(k)} is not a qualified name`);
      if (!isLabelValue(v)) out.push(`${where}.${k}: ${JSON.stringify(v)} is not a label value`);
    }
  }
  // validation.go validateNodeAffinity: required terms (at least one), preferred terms with weight 1..100.
  const na = pod.spec?.affinity?.nodeAffinity;
  const required = na?.requiredDuringSchedulingIgnoredDuringExecution;
  if (required) {
    const terms = required.nodeSelectorTerms ?? [];
    if (terms.length === 0) out.push("spec.affinity.nodeAffinity.required: must have at least one node selector term");
    terms.forEach((t, i) => { out.push(...termErrors(t, `spec.affinity.nodeAffinity.required.nodeSelectorTerms[${i}]`)); });
  }
  (na?.preferredDuringSchedulingIgnoredDuringExecution ?? []).forEach((p, i) => {
    const at = `spec.affinity.nodeAffinity.preferred[${i}]`;
    if (!Number.isInteger(p.weight) || p.weight < 1 || p.weight > 100) out.push(`${at}.weight: must be in the range 1-100`);
    out.push(...termErrors(p.preference ?? {}, `${at}.preference`));
  });
  // validation.go ValidatePodEphemeralContainersUpdate: "existing ephemeral containers %q may not be changed".
  if (old) {
    const now = new Map((pod.spec?.ephemeralContainers ?? []).map((c) => [c.name, c]));
    for (const c of old.spec?.ephemeralContainers ?? []) {
      const n = now.get(c.name);
      if (!n || !sameJson(n, c)) out.push(`spec.ephemeralContainers: existing ephemeral containers ${JSON.stringify(c.name)} may not be changed`);
    }
  }
  return out;
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b as object, k) && sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** The violations `after` has that `before` had not: what a change introduced. */
export function introducedViolations(before: PodLike, after: PodLike, old?: PodLike): string[] {
  const had = new Set(podViolations(before, old));
  return podViolations(after, old).filter((v) => !had.has(v));
}

/**
 * The parts of a pod these rules read (apparate's changes touch no other), shallow:
 * judging them costs no copy of the whole pod.
 */
export function validatedParts(pod: PodLike): PodLike {
  const meta = pod.metadata;
  const spec = pod.spec;
  return {
    ...(meta ? { metadata: { ...(meta.annotations ? { annotations: meta.annotations } : {}), ...(meta.labels ? { labels: meta.labels } : {}) } } : {}),
    ...(spec ? {
      spec: {
        ...(spec.nodeSelector ? { nodeSelector: spec.nodeSelector } : {}),
        ...(spec.affinity?.nodeAffinity ? { affinity: { nodeAffinity: spec.affinity.nodeAffinity } } : {}),
        ...(spec.ephemeralContainers ? { ephemeralContainers: spec.ephemeralContainers } : {}),
      },
    } : {}),
  };
}
