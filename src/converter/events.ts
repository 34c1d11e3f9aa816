// What a registry tells the converter, parsed into one shape: "repository:tag now
// points at digest". Pure functions over already-decoded JSON and the request's
// headers; the HTTP receivers (receivers.ts) only authenticate, bound and call these.
//
// Formats (fixtures and their sources: test/fixtures/registry-events/SOURCES.md):
// - CNCF distribution notifications: an envelope {"events": [...]} sent with the media
//   type application/vnd.docker.distribution.events.v1+json (2.x) or v2 (3.x).
// - Harbor webhooks: the "Default" JSON ({type: PUSH_ARTIFACT, event_data}) and
//   CloudEvents 1.0 (type harbor.artifact.pushed), structured (application/cloudevents+json,
//   what Harbor sends) or binary (ce-* headers, the data as the body).
import { ApparateError } from "../errors.js";
import { isValidDomain, isValidTag, parseReference } from "../image/reference.js";

/** A bad payload: the receiver answers 400 with this message. */
export class EventPayloadError extends ApparateError {}

export type EventSourceKind = "distribution" | "harbor";

/** One tag pushed: the unit of work the converter queues. */
export interface PushEvent {
  /** The registry host as the event names it (request host or resource URL), when it does. */
  registry?: string;
  repository: string;
  tag: string;
  /** The manifest (or index) digest the tag points at. */
  digest: string;
  mediaType?: string;
  /** Who pushed, for the loop guard against the converter's own pushes. */
  actor?: string;
  /** The sender's event id, for logs. */
  id?: string;
}

export interface ParsedEvents {
  pushes: PushEvent[];
  /** Events that are fine but not work (pulls, blob pushes, by-digest pushes), with why. */
  ignored: string[];
}

export const DISTRIBUTION_MEDIA_TYPES = [
  "application/vnd.docker.distribution.events.v1+json",
  "application/vnd.docker.distribution.events.v2+json",
] as const;

/** Manifests and indexes: the targets whose push means "a new image under a tag". */
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);

const DIGEST = /^sha256:[a-f0-9]{64}$|^sha384:[a-f0-9]{96}$|^sha512:[a-f0-9]{128}$/;
/** Bounds the work one request can create (a registry batches, but not thousands). */
export const MAX_EVENTS_PER_REQUEST = 1000;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function bad(message: string, input?: unknown): never {
  throw new EventPayloadError("event-invalid", message, input);
}

function checkRepository(repo: string, where: string): void {
  // The reference grammar decides (lower case path components, length): one definition.
  try { parseReference(`example.invalid/${repo}`); } catch { bad(`${where}: ${JSON.stringify(repo.slice(0, 300))} is not a repository name`); }
}

/** Parses a distribution notification envelope. Throws EventPayloadError when it is not one. */
export function parseDistributionEnvelope(body: unknown): ParsedEvents {
  if (!isObject(body)) bad("the body must be a JSON object with an \"events\" array");
  const events = body.events;
  if (!Array.isArray(events)) bad("\"events\" must be an array");
  if (events.length > MAX_EVENTS_PER_REQUEST) bad(`too many events in one envelope (${events.length} > ${MAX_EVENTS_PER_REQUEST})`);
  const out: ParsedEvents = { pushes: [], ignored: [] };
  events.forEach((e, i) => {
    const at = `events[${i}]`;
    if (!isObject(e)) bad(`${at} must be an object`);
    const action = str(e.action);
    if (!action) bad(`${at}.action is missing`);
    const target = e.target;
    if (!isObject(target)) bad(`${at}.target must be an object`);
    const repository = str(target.repository);
    if (action !== "push") { out.ignored.push(`${at}: action ${action}`); return; }
    if (!repository) bad(`${at}.target.repository is missing`);
    checkRepository(repository, `${at}.target.repository`);
    const mediaType = str(target.mediaType);
    if (!mediaType || !MANIFEST_MEDIA_TYPES.has(mediaType)) { out.ignored.push(`${at}: push of ${mediaType ?? "an unknown media type"} (not a manifest or index)`); return; }
    const digest = str(target.digest);
    if (!digest || !DIGEST.test(digest)) bad(`${at}.target.digest ${JSON.stringify(target.digest)} is not a digest`);
    // distribution puts the tag on the target (2.7+) and on the event (the documented field).
    const tag = str(target.tag) ?? str(e.tag);
    if (!tag) { out.ignored.push(`${at}: push by digest (no tag)`); return; }
    if (!isValidTag(tag)) bad(`${at}.target.tag ${JSON.stringify(tag.slice(0, 200))} is not a tag`);
    const request = isObject(e.request) ? e.request : {};
    const host = str(request.host);
    const actor = isObject(e.actor) ? str(e.actor.name) : undefined;
    out.pushes.push({
      repository, tag, digest, mediaType,
      ...(host && isValidDomain(host) ? { registry: host } : {}),
      ...(actor ? { actor } : {}),
      ...(str(e.id) ? { id: str(e.id)! } : {}),
    });
  });
  return out;
}

export const HARBOR_PUSH_TYPES = new Set(["PUSH_ARTIFACT", "harbor.artifact.pushed"]);

/** Harbor's event_data (Default) or CloudEvents data: the same object in both formats. */
function parseHarborData(data: unknown, where: string, meta: { id?: string; operator?: string }): ParsedEvents {
  if (!isObject(data)) bad(`${where} must be an object`);
  const repo = data.repository;
  if (!isObject(repo)) bad(`${where}.repository must be an object`);
  const fullName = str(repo.repo_full_name) ?? (str(repo.namespace) && str(repo.name) ? `${repo.namespace as string}/${repo.name as string}` : undefined);
  if (!fullName) bad(`${where}.repository.repo_full_name is missing`);
  checkRepository(fullName, `${where}.repository.repo_full_name`);
  const resources = data.resources;
  if (!Array.isArray(resources)) bad(`${where}.resources must be an array`);
  if (resources.length > MAX_EVENTS_PER_REQUEST) bad(`too many resources (${resources.length} > ${MAX_EVENTS_PER_REQUEST})`);
  const out: ParsedEvents = { pushes: [], ignored: [] };
  resources.forEach((r, i) => {
    const at = `${where}.resources[${i}]`;
    if (!isObject(r)) bad(`${at} must be an object`);
    const digest = str(r.digest);
    if (!digest || !DIGEST.test(digest)) bad(`${at}.digest ${JSON.stringify(r.digest)} is not a digest`);
    const tag = str(r.tag);
    const url = str(r.resource_url);
    // A push by digest: Harbor puts the digest where the tag goes, and "@" in the URL.
    if (!tag || DIGEST.test(tag) || url?.includes("@")) { out.ignored.push(`${at}: push by digest (no tag)`); return; }
    if (!isValidTag(tag)) bad(`${at}.tag ${JSON.stringify(tag.slice(0, 200))} is not a tag`);
    let registry: string | undefined;
    if (url) {
      try { registry = parseReference(url).domain; } catch { /* the configured registry decides */ }
    }
    out.pushes.push({
      repository: fullName, tag, digest,
      ...(registry ? { registry } : {}),
      ...(meta.operator ? { actor: meta.operator } : {}),
      ...(meta.id ? { id: meta.id } : {}),
    });
  });
  return out;
}

export type Headers = Readonly<Record<string, string | string[] | undefined>>;
const header = (h: Headers, name: string): string | undefined => {
  const v = h[name];
  return str(Array.isArray(v) ? v[0] : v);
};

/**
 * Parses a Harbor webhook: Default JSON, CloudEvents structured, or CloudEvents binary
 * (recognised by its ce-specversion header). Events other than a push are ignored.
 */
export function parseHarborWebhook(body: unknown, headers: Headers): ParsedEvents {
  const ceVersion = header(headers, "ce-specversion");
  if (ceVersion !== undefined) {
    if (ceVersion !== "1.0") bad(`ce-specversion ${JSON.stringify(ceVersion)} is not 1.0`);
    const type = header(headers, "ce-type");
    if (!type) bad("ce-type header is missing");
    if (!HARBOR_PUSH_TYPES.has(type)) return { pushes: [], ignored: [`event type ${type}`] };
    const id = header(headers, "ce-id");
    const operator = header(headers, "ce-operator");
    return parseHarborData(body, "body", { ...(id ? { id } : {}), ...(operator ? { operator } : {}) });
  }
  if (!isObject(body)) bad("the body must be a JSON object");
  if (body.specversion !== undefined) {
    if (body.specversion !== "1.0") bad(`specversion ${JSON.stringify(body.specversion)} is not 1.0`);
    const type = str(body.type);
    if (!type) bad("type is missing");
    if (!HARBOR_PUSH_TYPES.has(type)) return { pushes: [], ignored: [`event type ${type}`] };
    const id = str(body.id);
    const operator = str(body.operator);
    return parseHarborData(body.data, "data", { ...(id ? { id } : {}), ...(operator ? { operator } : {}) });
  }
  const type = str(body.type);
  if (!type) bad("type is missing");
  if (!HARBOR_PUSH_TYPES.has(type)) return { pushes: [], ignored: [`event type ${type}`] };
  const operator = str(body.operator);
  return parseHarborData(body.event_data, "event_data", operator ? { operator } : {});
}
