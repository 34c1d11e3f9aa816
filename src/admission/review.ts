// AdmissionReview v1: validation of what the API server sends, and the response
// shape. Malformed input is a BadReviewError (HTTP 400 with the reason).
import { Ajv } from "ajv";
import { ApparateError } from "../errors.js";
import { encodePatch, type PatchOperation } from "../mutate/patch.js";
import type { PodLike } from "../mutate/pod.js";

export class BadReviewError extends ApparateError {}

export interface AdmissionRequest {
  uid: string;
  kind: { group: string; version: string; kind: string };
  resource?: { group: string; version: string; resource: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation: string;
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
  userInfo?: { username?: string };
}

const reviewSchema = {
  type: "object",
  required: ["apiVersion", "kind", "request"],
  properties: {
    apiVersion: { const: "admission.k8s.io/v1" },
    kind: { const: "AdmissionReview" },
    request: {
      type: "object",
      required: ["uid", "kind", "operation"],
      properties: {
        uid: { type: "string", minLength: 1, maxLength: 256 },
        kind: {
          type: "object", required: ["kind"],
          properties: { group: { type: "string" }, version: { type: "string" }, kind: { type: "string" } },
        },
        resource: { type: "object" },
        subResource: { type: "string" },
        namespace: { type: "string" },
        operation: { type: "string" },
        dryRun: { type: "boolean" },
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: false, strict: false, verbose: true });
const validateReview = ajv.compile(reviewSchema);

export function parseReview(body: unknown): AdmissionRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new BadReviewError("review-not-object", "body must be a JSON AdmissionReview object", typeof body);
  }
  if (!validateReview(body)) {
    const e = validateReview.errors?.[0];
    const where = e?.instancePath ? e.instancePath.slice(1).replace(/\//g, ".") : "(root)";
    const missing = e?.keyword === "required" ? `.${(e.params as { missingProperty: string }).missingProperty}` : "";
    const detail = e?.keyword === "const" ? `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` : e?.message ?? "invalid";
    throw new BadReviewError("review-invalid", `AdmissionReview ${where}${missing}: ${detail}`, body);
  }
  return (body as { request: AdmissionRequest }).request;
}

export function isPodRequest(req: AdmissionRequest): boolean {
  return req.kind.kind === "Pod" && (req.kind.group ?? "") === "" && (!req.resource || req.resource.resource === "pods");
}

// The fields of a Pod that the planner and the patch read, with the types they assume.
// The API server rejects most wrong types itself; this is defence in depth, so only
// these fields are checked (everything else passes through untouched), compiled once.
const stringMap = { type: "object", additionalProperties: { type: "string" } } as const;
const requirements = {
  type: "array",
  items: {
    type: "object",
    properties: { key: { type: "string" }, operator: { type: "string" }, values: { type: "array", items: { type: "string" } } },
  },
} as const;
const term = { type: "object", properties: { matchExpressions: requirements, matchFields: requirements } } as const;
const containers = {
  type: "array",
  items: {
    type: "object", required: ["name"],
    properties: { name: { type: "string" }, image: { type: "string" }, imagePullPolicy: { type: "string" } },
  },
} as const;
const podSchema = {
  type: "object",
  properties: {
    kind: { type: "string" },
    metadata: {
      type: "object",
      properties: {
        name: { type: "string" }, generateName: { type: "string" }, namespace: { type: "string" },
        labels: stringMap, annotations: stringMap,
      },
    },
    spec: {
      type: "object",
      properties: {
        containers, initContainers: containers, ephemeralContainers: containers,
        nodeSelector: stringMap,
        imagePullSecrets: { type: "array", items: { type: "object", properties: { name: { type: "string" } } } },
        affinity: {
          type: "object",
          properties: {
            nodeAffinity: {
              type: "object",
              properties: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  type: "object", properties: { nodeSelectorTerms: { type: "array", items: term } },
                },
                preferredDuringSchedulingIgnoredDuringExecution: {
                  type: "array",
                  items: { type: "object", required: ["preference"], properties: { weight: { type: "integer" }, preference: term } },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;
const validatePod = ajv.compile(podSchema);

// A path names keys from the pod; bounded so that a hostile key cannot make the answer large.
const MAX_PATH_LENGTH = 200;

/** "spec.nodeSelector.disktype" from ajv's "/spec/nodeSelector/disktype", array indexes as [i]. */
function dottedPath(instancePath: string): string {
  const parts = instancePath.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  const path = parts.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("");
  return path.length > MAX_PATH_LENGTH ? path.slice(0, MAX_PATH_LENGTH - 1) + "…" : path;
}

/** The pod of a Pod review, or a BadReviewError naming the first field of the wrong type. */
export function podOf(req: AdmissionRequest): PodLike {
  const o = req.object;
  if (o === null || typeof o !== "object" || Array.isArray(o)) {
    throw new BadReviewError("review-no-object", "AdmissionReview request.object must be a Pod object", req.uid);
  }
  const pod = o as PodLike;
  if (pod.kind !== undefined && pod.kind !== "Pod") {
    throw new BadReviewError("review-not-pod", `AdmissionReview request.object is a ${String(pod.kind).slice(0, 64)}, not a Pod`, req.uid);
  }
  if (!validatePod(pod)) {
    const e = validatePod.errors![0]!;
    const missing = e.keyword === "required" ? `.${(e.params as { missingProperty: string }).missingProperty}` : "";
    // ajv says "must be object" of arrays too; say what was found.
    const found = e.keyword === "type" ? ` (found ${foundType(e.data)})` : "";
    throw new BadReviewError("review-bad-pod", `AdmissionReview request.object${dottedPath(e.instancePath)}${missing}: ${e.message ?? "invalid"}${found}`, req.uid);
  }
  return pod;
}

/**
 * The pod before an UPDATE (request.oldObject), checked like the object; undefined when
 * the review carries none.
 */
export function oldPodOf(req: AdmissionRequest): PodLike | undefined {
  const o = req.oldObject;
  if (o === null || o === undefined) return undefined;
  if (typeof o !== "object" || Array.isArray(o) || !validatePod(o)) {
    throw new BadReviewError("review-bad-old-pod", "AdmissionReview request.oldObject must be a Pod object", req.uid);
  }
  return o as PodLike;
}

function foundType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

export interface AdmissionResponseBody {
  apiVersion: "admission.k8s.io/v1";
  kind: "AdmissionReview";
  response: {
    uid: string;
    allowed: true;
    patchType?: "JSONPatch";
    patch?: string;
    warnings?: string[];
    auditAnnotations?: Record<string, string>;
  };
}

// The API server truncates long warnings; keep each short and the list bounded.
const MAX_WARNINGS = 20;
const MAX_WARNING_LENGTH = 256;

/** `patch`: the operations, or already encoded (encodePatch). */
export function allowResponse(uid: string, patch: PatchOperation[] | string | undefined, warnings: string[], audit?: Record<string, string>): AdmissionResponseBody {
  const w = warnings.slice(0, MAX_WARNINGS).map((s) => (s.length > MAX_WARNING_LENGTH ? s.slice(0, MAX_WARNING_LENGTH - 1) + "…" : s));
  const response: AdmissionResponseBody["response"] = { uid, allowed: true };
  const encoded = typeof patch === "string" ? patch : patch ? encodePatch(patch) : undefined;
  if (encoded) { response.patchType = "JSONPatch"; response.patch = encoded; }
  if (w.length > 0) response.warnings = w;
  if (audit && Object.keys(audit).length > 0) response.auditAnnotations = audit;
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response };
}
