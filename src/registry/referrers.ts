// The converter's record "source manifest X became eStargz manifest Y", kept in the
// registry as an OCI referrer of X so that any replica, cluster or tool can read it.
//
// The record is a small artifact manifest (artifactType application/vnd.apparate.link.v1)
// whose `subject` is X and whose annotations name Y. Y itself also carries `subject`, but a
// separate artifact keeps the referrers list filterable by type and its descriptor carries
// Y's digest, so a reader needs one request for the list and never opens the artifact.
//
// Registries with the referrers API index the artifact on PUT (they answer `OCI-Subject`).
// Registries without it (Debian's docker-registry, distribution 2.8) get the fallback the
// OCI distribution spec defines (spec.md, "Unavailable Referrers API" / "Referrers Tag
// Schema"): an image index under the tag `<alg>-<encoded>` of X's digest, listing the
// referrer descriptors as the referrers API would, maintained by the client that pushes.
// Readers ask the API first and fall back to the tag on 404, as the spec requires.
//
// Pure parts (tag name, documents, decoding, the trust check on Y) are exported for the
// webhook and the tests; I/O goes through Repository.
import { createHash } from "node:crypto";
import { ApparateError } from "../errors.js";
import { TOC_DIGEST_ANNOTATION } from "../convert/estargz.js";
import { SOURCE_DIGEST_ANNOTATION } from "../convert/image.js";
import type { ImageReference } from "../image/reference.js";
import type { RegistryClient } from "./client.js";
import type { Credential } from "./credentials.js";
import { Repository } from "./push.js";
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from "./result.js";

export const LINK_ARTIFACT_TYPE = "application/vnd.apparate.link.v1";
/** Y's digest, media type and size, on the link artifact and so on its referrer descriptor. */
export const LINK_TARGET_ANNOTATION = "io.apparate.link.target";
export const LINK_TARGET_MEDIA_TYPE_ANNOTATION = "io.apparate.link.target.media-type";
export const LINK_TARGET_SIZE_ANNOTATION = "io.apparate.link.target.size";
/** The OCI image spec's empty descriptor: config (and only layer) of an artifact without content. */
export const EMPTY_JSON = Buffer.from("{}");
export const EMPTY_DESCRIPTOR = Object.freeze({
  mediaType: "application/vnd.oci.empty.v1+json",
  digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  size: 2,
});

/** The most descriptors kept from one referrers list (bounds what a registry can make apparate hold). */
export const MAX_REFERRERS = 1000;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ANY_DIGEST = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

export class ReferrersError extends ApparateError {}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

export interface ImageIndexDoc { schemaVersion: 2; mediaType: string; manifests: Descriptor[]; [k: string]: unknown }

/** One recorded conversion, as read from a referrers list. */
export interface Link {
  source: string;
  target: string;
  targetMediaType: string;
  /** The link artifact's own digest. */
  via: string;
}

const sha256 = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

/**
 * The referrers tag of a digest: the algorithm truncated to 32 characters, "-", the
 * encoded part truncated to 64, characters a tag may not hold replaced by "-"
 * (distribution spec, "Referrers Tag Schema": sha256:aaa… -> sha256-aaa…).
 */
export function referrersTag(digest: string): string {
  const m = ANY_DIGEST.exec(digest);
  if (!m) throw new ReferrersError("digest-invalid", `not a digest: ${JSON.stringify(digest.slice(0, 100))}`, digest);
  return `${m[1]!.slice(0, 32)}-${m[2]!.slice(0, 64)}`.replace(/[^a-zA-Z0-9_.-]/g, "-");
}

/** A tag that only a referrers (or cosign) scheme writes: never an image to convert. */
export function isReferrersTag(tag: string): boolean {
  return /^sha(256|384|512)-[0-9a-f]{64}(\.(sig|att|sbom))?$/.test(tag);
}

/**
 * The link artifact: an OCI image manifest with artifactType, the empty config and layer,
 * `subject` X and Y's descriptor in annotations. No timestamp: the same X -> Y always
 * gives the same bytes, so recording twice adds nothing.
 */
export function linkManifest(source: Descriptor, target: Descriptor): Buffer {
  for (const d of [source, target]) {
    if (!DIGEST.test(d.digest)) throw new ReferrersError("digest-invalid", `not a sha256 digest: ${JSON.stringify(d.digest.slice(0, 100))}`, d.digest);
  }
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: LINK_ARTIFACT_TYPE,
    config: EMPTY_DESCRIPTOR,
    layers: [EMPTY_DESCRIPTOR],
    subject: { mediaType: source.mediaType, digest: source.digest, size: source.size },
    annotations: {
      [LINK_TARGET_ANNOTATION]: target.digest,
      [LINK_TARGET_MEDIA_TYPE_ANNOTATION]: target.mediaType,
      [LINK_TARGET_SIZE_ANNOTATION]: String(target.size),
    },
  }));
}

/** The descriptor of a manifest in a referrers list: artifactType and its annotations (spec, "Listing Referrers"). */
export function referrerDescriptor(manifest: Buffer): Descriptor {
  const doc = JSON.parse(manifest.toString("utf8")) as { mediaType?: string; artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string> };
  const artifactType = doc.artifactType ?? doc.config?.mediaType;
  return {
    mediaType: doc.mediaType ?? OCI_MANIFEST, digest: sha256(manifest), size: manifest.length,
    ...(artifactType ? { artifactType } : {}), ...(doc.annotations ? { annotations: doc.annotations } : {}),
  };
}

/** The referrers list with `d` in it; the same list (by identity) when it is there already. */
export function withReferrer(list: ImageIndexDoc | undefined, d: Descriptor): ImageIndexDoc {
  const base: ImageIndexDoc = list ?? { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
  if (base.manifests.some((m) => m.digest === d.digest)) return base;
  return { ...base, manifests: [...base.manifests, d] };
}

/** Parses a referrers list (an OCI image index); undefined when the document is not one. */
export function parseReferrersList(body: Buffer, mediaType: string | undefined): ImageIndexDoc | undefined {
  if (mediaType && mediaType !== OCI_INDEX) return undefined;
  let doc: unknown;
  try { doc = JSON.parse(body.toString("utf8")); } catch { return undefined; }
  if (typeof doc !== "object" || doc === null) return undefined;
  const d = doc as { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown };
  if (d.schemaVersion !== 2 || !Array.isArray(d.manifests)) return undefined;
  if (d.mediaType !== undefined && d.mediaType !== OCI_INDEX) return undefined;
  return { ...(doc as ImageIndexDoc), mediaType: OCI_INDEX };
}

/**
 * The links of `source` in a referrers list: descriptors of the link type whose target
 * is a well-formed digest and an OCI manifest or index. Most recent (last listed) first.
 */
export function linksIn(list: ImageIndexDoc, source: string): Link[] {
  const out: Link[] = [];
  for (const m of list.manifests.slice(0, MAX_REFERRERS)) {
    if (typeof m !== "object" || m === null || m.artifactType !== LINK_ARTIFACT_TYPE) continue;
    const a = m.annotations;
    const target = a?.[LINK_TARGET_ANNOTATION];
    const mt = a?.[LINK_TARGET_MEDIA_TYPE_ANNOTATION];
    if (typeof target !== "string" || !DIGEST.test(target) || target === source) continue;
    if (mt !== OCI_MANIFEST && mt !== OCI_INDEX) continue;
    if (typeof m.digest !== "string" || !DIGEST.test(m.digest)) continue;
    out.push({ source, target, targetMediaType: mt, via: m.digest });
  }
  return out.reverse();
}

/** Why a linked manifest may not be trusted; undefined when it may. */
export type TargetVerdict = { ok: true } | { ok: false; reason: string };

interface ManifestDoc { mediaType?: string; layers?: Descriptor[]; manifests?: Descriptor[]; annotations?: Record<string, string>; subject?: { digest?: string } }

function parseDoc(body: Buffer): ManifestDoc | undefined {
  try {
    const d = JSON.parse(body.toString("utf8")) as unknown;
    return typeof d === "object" && d !== null ? d as ManifestDoc : undefined;
  } catch { return undefined; }
}

/** A digest as people compare them (warnings are clipped: whole digests would not fit). */
export const shortDigest = (d: string) => (DIGEST.test(d) ? `${d.slice(0, 19)}…` : "another manifest");

/** Whether `body` (media type `mediaType`) names `source` as what it was made from. */
function namesSource(doc: ManifestDoc, source: string): string | undefined {
  const recorded = doc.annotations?.[SOURCE_DIGEST_ANNOTATION];
  if (recorded !== source) return `it names ${typeof recorded === "string" && DIGEST.test(recorded) ? shortDigest(recorded) : "no source"} as its source, not ${shortDigest(source)}`;
  if (doc.subject?.digest !== undefined && doc.subject.digest !== source) return `its subject is ${shortDigest(String(doc.subject.digest))}, not ${shortDigest(source)}`;
  return undefined;
}

/** An OCI image manifest whose every layer is eStargz (carries the TOC digest annotation). */
function eStargzManifest(doc: ManifestDoc, mediaType: string): string | undefined {
  if (mediaType !== OCI_MANIFEST || (doc.mediaType !== undefined && doc.mediaType !== OCI_MANIFEST)) return `it is a ${mediaType === DOCKER_MANIFEST ? "Docker image manifest" : mediaType === DOCKER_LIST ? "Docker manifest list" : "document of another type"}, not an OCI image manifest`;
  if (!Array.isArray(doc.layers) || doc.layers.length === 0) return "it has no layers";
  const plain = doc.layers.filter((l) => typeof l?.annotations?.[TOC_DIGEST_ANNOTATION] !== "string").length;
  if (plain > 0) return `${plain} of its ${doc.layers.length} layers are not eStargz (no ${TOC_DIGEST_ANNOTATION})`;
  return undefined;
}

/**
 * The webhook's check before following a link X -> Y: Y is an OCI image manifest of
 * eStargz layers, or an OCI index whose every image manifest (`children`, fetched by the
 * caller by digest) is one, and Y names X as its source. The link is only as trustworthy
 * as write access to the repository; the check catches a link to the wrong manifest.
 */
export function verifyTarget(source: string, target: { mediaType: string; body: Buffer }, children?: ReadonlyMap<string, { mediaType: string; body: Buffer }>): TargetVerdict {
  const doc = parseDoc(target.body);
  if (!doc) return { ok: false, reason: "it is not JSON" };
  const named = namesSource(doc, source);
  if (named) return { ok: false, reason: named };
  if (target.mediaType === OCI_MANIFEST) {
    const why = eStargzManifest(doc, target.mediaType);
    return why ? { ok: false, reason: why } : { ok: true };
  }
  if (target.mediaType !== OCI_INDEX || (doc.mediaType !== undefined && doc.mediaType !== OCI_INDEX)) return { ok: false, reason: "it is neither an OCI image manifest nor an OCI image index" };
  const images = imageChildren(doc);
  if (images.length === 0) return { ok: false, reason: "the index lists no image manifests" };
  for (const c of images) {
    const child = children?.get(c.digest);
    if (!child) return { ok: false, reason: `platform manifest ${shortDigest(c.digest)} could not be read` };
    const cd = parseDoc(child.body);
    const why = cd ? eStargzManifest(cd, child.mediaType) : "it is not JSON";
    if (why) return { ok: false, reason: `platform manifest ${shortDigest(c.digest)}: ${why}` };
  }
  return { ok: true };
}

/** The image manifests an index lists (attestations, platform unknown/unknown, left out). */
export function imageChildren(doc: { manifests?: Descriptor[] }): Descriptor[] {
  return (Array.isArray(doc.manifests) ? doc.manifests : [])
    .filter((d) => typeof d?.digest === "string" && DIGEST.test(d.digest) && (d as { platform?: { os?: string } }).platform?.os !== "unknown");
}

// ---- I/O ----------------------------------------------------------------------------

/** Where a link went: the referrers API (the registry indexed `subject`) or the tag schema. */
export type RecordedVia = "referrers-api" | "tag-schema";

/**
 * Records `source` -> `target` as a referrer of `source`: pushes the empty blob and the
 * link artifact by digest; when the registry did not index its `subject` (no OCI-Subject
 * header), adds the artifact's descriptor to the index under the referrers tag.
 */
export async function recordLink(repo: Repository, source: Descriptor, target: Descriptor): Promise<{ via: RecordedVia; link: string }> {
  await repo.putBlob(EMPTY_JSON);
  const body = linkManifest(source, target);
  const link = sha256(body);
  const put = await repo.putManifest(link, OCI_MANIFEST, body);
  if (put.subjectAccepted) return { via: "referrers-api", link };
  const tag = referrersTag(source.digest);
  const current = await repo.manifest(tag);
  let list: ImageIndexDoc | undefined;
  if (current) {
    list = parseReferrersList(current.body, current.mediaType);
    // Spec: a tag holding something other than the expected index is reported, not overwritten.
    if (!list) throw new ReferrersError("referrers-tag-taken", `${repo.name}:${tag} holds a ${current.mediaType || "document"} that is not a referrers index; the link to ${target.digest} was not recorded`, tag);
  }
  const next = withReferrer(list, referrerDescriptor(body));
  if (next !== list) await repo.putManifest(tag, OCI_INDEX, Buffer.from(JSON.stringify(next)));
  return { via: "tag-schema", link };
}

export interface RecordedLink { source: string; target: string; via: RecordedVia }

/**
 * Records every link of a converted image Y (read back by digest): Y's source X -> Y, and
 * for an index each platform manifest's source -> that manifest. Idempotent.
 */
export async function recordConversionLinks(repo: Repository, targetDigest: string): Promise<RecordedLink[]> {
  const top = await repo.manifest(targetDigest);
  if (!top) throw new ReferrersError("target-missing", `${repo.name}@${targetDigest} does not exist`, targetDigest);
  const out: RecordedLink[] = [];
  const record = async (m: { mediaType: string; digest: string; body: Buffer }) => {
    const doc = parseDoc(m.body);
    const source = doc?.annotations?.[SOURCE_DIGEST_ANNOTATION];
    if (!doc || typeof source !== "string" || !DIGEST.test(source)) {
      throw new ReferrersError("source-unknown", `${repo.name}@${m.digest} does not record the digest it was converted from (${SOURCE_DIGEST_ANNOTATION})`, m.digest);
    }
    const src = await repo.manifest(source);
    if (!src) throw new ReferrersError("source-missing", `${repo.name}@${source}, the source of ${m.digest}, does not exist`, source);
    const r = await recordLink(repo, { mediaType: src.mediaType, digest: source, size: src.body.length }, { mediaType: m.mediaType, digest: m.digest, size: m.body.length });
    out.push({ source, target: m.digest, via: r.via });
    return doc;
  };
  const doc = await record(top);
  if (top.mediaType === OCI_INDEX) {
    for (const c of imageChildren(doc)) {
      const child = await repo.manifest(c.digest);
      if (!child) throw new ReferrersError("target-missing", `${repo.name}@${c.digest}, a platform manifest of ${targetDigest}, does not exist`, c.digest);
      await record(child);
    }
  }
  return out;
}

/** recordConversionLinks for an image reference: what `apparate convert` and the converter call after pushing Y. */
export async function recordLinksFor(client: RegistryClient, ref: Pick<ImageReference, "domain" | "path">, cred: Credential | undefined, targetDigest: string, signal: AbortSignal): Promise<RecordedLink[]> {
  return recordConversionLinks(new Repository(client, ref, cred, true, signal), targetDigest);
}
