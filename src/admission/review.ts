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

const ajv = new Ajv({ allErrors: false, strict: false });
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

/** The pod of a Pod review, or a BadReviewError when the object is not a Pod. */
export function podOf(req: AdmissionRequest): PodLike {
  const o = req.object;
  if (o === null || typeof o !== "object" || Array.isArray(o)) {
    throw new BadReviewError("review-no-object", "AdmissionReview request.object must be a Pod object", req.uid);
  }
  const pod = o as PodLike;
  if (pod.kind !== undefined && pod.kind !== "Pod") {
    throw new BadReviewError("review-not-pod", `AdmissionReview request.object is a ${String(pod.kind)}, not a Pod`, req.uid);
  }
  const spec = pod.spec;
  if (spec !== undefined && (spec === null || typeof spec !== "object" || Array.isArray(spec))) {
    throw new BadReviewError("review-bad-pod", "AdmissionReview request.object.spec must be an object", req.uid);
  }
  for (const k of ["containers", "initContainers", "ephemeralContainers"] as const) {
    const list = spec?.[k];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.some((c) => c === null || typeof c !== "object" || typeof c.name !== "string" || (c.image !== undefined && typeof c.image !== "string"))) {
      throw new BadReviewError("review-bad-pod", `AdmissionReview request.object.spec.${k} must be a list of containers with string name and image`, req.uid);
    }
  }
  const ann = pod.metadata?.annotations;
  if (ann !== undefined && (ann === null || typeof ann !== "object" || Object.values(ann).some((v) => typeof v !== "string"))) {
    throw new BadReviewError("review-bad-pod", "AdmissionReview request.object.metadata.annotations must map strings to strings", req.uid);
  }
  return pod;
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
