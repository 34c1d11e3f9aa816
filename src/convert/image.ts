// Converts an image (OCI or Docker schema 2, one platform or an index) into its
// eStargz "-apparate" variant in the same registry: every layer streamed through the
// eStargz writer straight into a chunked blob upload, layers in parallel (bounded),
// then configs, platform manifests by digest, and the tag last, so that a failure at
// any point leaves no tag pointing at a half-made image. Idempotent: the variant
// records the source digest, and a variant that records the current one is left alone.
import { createHash } from "node:crypto";
import { cpus } from "node:os";
import { ApparateError } from "../errors.js";
import { formatReference, type ImageReference } from "../image/reference.js";
import type { RegistryClient } from "../registry/client.js";
import type { Credential } from "../registry/credentials.js";
import { type FetchedManifest, Repository } from "../registry/push.js";
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from "../registry/result.js";
import { checkEstargzBlob } from "./estargz-check.js";
import { ConvertError, convertLayer, DEFAULT_CHUNK_SIZE, TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, type ConvertedLayer } from "./estargz.js";
import { TarError } from "./tar.js";

export class ImageConvertError extends ApparateError {}

/**
 * Codes of errors another attempt cannot fix: the source digest names immutable bytes, so
 * a manifest, config or layer that cannot be converted now never can. Everything else
 * (network, 5xx, 429, a blob whose bytes did not match its digest) may pass on a retry.
 */
export const PERMANENT_CODES: ReadonlySet<string> = new Set([
  "source-missing", "media-type", "layer-type", "suffix-loop", "no-tag", "tag-too-long", "cross-registry",
  "manifest-invalid", "invalid-json", "no-platforms", "source-diffid", "layer-unconvertible",
]);

/** Whether a conversion failed for good (the same source will fail the same way). */
export function isPermanentConversionError(err: unknown): err is ImageConvertError {
  return err instanceof ImageConvertError && PERMANENT_CODES.has(err.code);
}

/** Whether the registry serves `digest`'s bytes in full: read to the end and hashed. */
async function blobVerifies(repo: Repository, digest: string): Promise<boolean> {
  try {
    const h = createHash("sha256");
    for await (const c of await repo.blobStream(digest)) h.update(c);
    return `sha256:${h.digest("hex")}` === digest;
  } catch {
    return false;
  }
}

export const SOURCE_DIGEST_ANNOTATION = "io.apparate.source-digest";
export const SOURCE_REF_ANNOTATION = "io.apparate.source-ref";
/** sha256 of the prefetch list the variant was made with (one path a line, as given). */
export const PREFETCH_ANNOTATION = "io.apparate.prefetch-list";
export const OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar";
const CONVERTIBLE_LAYERS: ReadonlySet<string> = new Set([OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, OCI_LAYER_TAR, DOCKER_LAYER_TAR]);

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture?: string; os?: string; variant?: string };
  urls?: string[];
  [k: string]: unknown;
}
interface ImageManifest { schemaVersion: number; mediaType?: string; config: Descriptor; layers: Descriptor[]; annotations?: Record<string, string>; subject?: Descriptor }
interface ImageIndex { schemaVersion: number; mediaType?: string; manifests: Descriptor[]; annotations?: Record<string, string>; subject?: Descriptor }

export interface LayerEvent {
  /** e.g. "linux/amd64 layer 2/5" */
  label: string;
  digest: string;
  size: number;
}

export interface ConvertObserver {
  layerStart?(e: LayerEvent): void;
  layerProgress?(e: LayerEvent, read: number, written: number): void;
  layerDone?(e: LayerEvent, outcome: { copied: boolean; digest: string; size: number }): void;
  /** A layer annotated as eStargz whose blob is not one (it is converted instead). */
  layerNotEstargz?(e: LayerEvent, reason: string): void;
}

export interface ConvertImageOptions {
  client: RegistryClient;
  source: ImageReference;
  /** Default: the source's tag + tagSuffix, same repository. */
  target?: ImageReference;
  tagSuffix: string;
  /** Credentials for the source and target registries (first that matches is used). */
  credentials: (ref: ImageReference) => Credential | undefined;
  chunkSize?: number;
  level?: number;
  /** Layers converted at once (default: CPU count + 1, at most 4). */
  concurrency?: number;
  /** Paths the workload reads first: each layer puts them behind .prefetch.landmark. */
  prefetch?: readonly string[];
  dryRun?: boolean;
  signal?: AbortSignal;
  observer?: ConvertObserver;
}

export interface ConvertImageResult {
  result: "converted" | "up-to-date" | "dry-run";
  source: string;
  sourceDigest: string;
  target: string;
  /** The target manifest's digest (converted or found up to date); none on a dry run. */
  digest?: string;
  platforms: string[];
  layers: Array<{ platform: string; source: string; digest?: string; copied: boolean; sourceSize: number; size?: number }>;
  bytesIn: number;
  bytesOut: number;
  /** Whether the registry recorded the `subject` (referrers); false when it refused or ignored it. */
  subject?: boolean;
}

/** The default target: same repository, tag + suffix; refuses a tag that already has it. */
export function targetFor(source: ImageReference, tagSuffix: string): ImageReference {
  if (!source.tag) throw new ImageConvertError("no-tag", `${formatReference(source)} has no tag: give the target explicitly`, formatReference(source));
  if (source.tag.endsWith(tagSuffix)) {
    throw new ImageConvertError("suffix-loop", `${formatReference(source)}: the tag already ends with ${JSON.stringify(tagSuffix)}; converting it again would loop`, source.tag);
  }
  const tag = source.tag + tagSuffix;
  if (tag.length > 128) throw new ImageConvertError("tag-too-long", `${source.tag}${tagSuffix} is longer than 128 characters`, tag);
  return { domain: source.domain, path: source.path, tag };
}

function parseJson<T>(b: Buffer, what: string): T {
  try { return JSON.parse(b.toString("utf8")) as T; } catch (err) {
    throw new ImageConvertError("invalid-json", `${what} is not valid JSON`, what, { cause: err });
  }
}

function platformOf(d: Descriptor | undefined, config?: { os?: string; architecture?: string; variant?: string }): string {
  const p = d?.platform ?? config;
  if (!p?.os) return "unknown";
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/** A small promise pool: at most `n` tasks at once, results in order. */
async function pool<T, R>(items: readonly T[], n: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try { out[i] = await fn(items[i]!, i); } catch (err) { failed ??= err; }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}

interface LayerOutcome { descriptor: Descriptor; diffID: string; copied: boolean; converted?: ConvertedLayer }

export async function convertImage(opts: ConvertImageOptions): Promise<ConvertImageResult> {
  const signal = opts.signal ?? new AbortController().signal;
  const source = opts.source;
  const target = opts.target ?? targetFor(source, opts.tagSuffix);
  if (!target.tag) throw new ImageConvertError("no-tag", `the target ${formatReference(target)} needs a tag`, formatReference(target));
  if (target.domain !== source.domain) throw new ImageConvertError("cross-registry", `the target must be in the source's registry (${source.domain}), not ${target.domain}`, target.domain);
  const srcRepo = new Repository(opts.client, source, opts.credentials(source), false, signal);
  const dstRepo = new Repository(opts.client, target, opts.credentials(target), !opts.dryRun, signal);
  const srcName = formatReference(source);
  const dstName = formatReference(target);

  const top = await srcRepo.manifest(source.digest ?? source.tag ?? "latest");
  if (!top) throw new ImageConvertError("source-missing", `${srcName} does not exist`, srcName);
  const result: ConvertImageResult = { result: "converted", source: srcName, sourceDigest: top.digest, target: dstName, platforms: [], layers: [], bytesIn: 0, bytesOut: 0 };

  const prefetchDigest = opts.prefetch?.length ? `sha256:${createHash("sha256").update(opts.prefetch.join("\n")).digest("hex")}` : undefined;
  // Up to date when the target records this very source digest (and prefetch list).
  const existing = await dstRepo.manifest(target.tag).catch((err: unknown) => {
    if ((err as { status?: number }).status === 401 || (err as { status?: number }).status === 403) throw err;
    return undefined;
  });
  if (existing) {
    const ann = parseJson<{ annotations?: Record<string, string> }>(existing.body, `manifest ${dstName}`).annotations ?? {};
    // A run without a list keeps a variant made with one (the push-triggered converter
    // must not undo `apparate convert --prefetch`); a new list makes a new variant.
    if (ann[SOURCE_DIGEST_ANNOTATION] === top.digest && (!prefetchDigest || ann[PREFETCH_ANNOTATION] === prefetchDigest)) return { ...result, result: "up-to-date", digest: existing.digest };
  }

  const isIndex = top.mediaType === OCI_INDEX || top.mediaType === DOCKER_LIST;
  if (!isIndex && top.mediaType !== OCI_MANIFEST && top.mediaType !== DOCKER_MANIFEST) {
    throw new ImageConvertError("media-type", `${srcName} is a ${top.mediaType || "document without media type"}, not an image manifest or index`, top.mediaType);
  }

  const concurrency = opts.concurrency ?? Math.min(4, cpus().length + 1);
  // Shared by every platform: one conversion per distinct source layer.
  const layerCache = new Map<string, Promise<LayerOutcome>>();

  const convertOne = async (m: FetchedManifest, desc: Descriptor | undefined): Promise<{ body: Buffer; digest: string }> => {
    const manifest = parseJson<ImageManifest>(m.body, `manifest ${srcName}@${m.digest}`);
    if (!Array.isArray(manifest.layers) || !manifest.config?.digest) throw new ImageConvertError("manifest-invalid", `${srcName}@${m.digest}: a manifest without config or layers`, m.digest);
    const configBytes = await srcRepo.blobBytes(manifest.config.digest);
    const config = parseJson<{ rootfs?: { diff_ids?: string[] }; os?: string; architecture?: string; variant?: string }>(configBytes, `config ${manifest.config.digest}`);
    const platform = platformOf(desc, config);
    result.platforms.push(platform);
    const diffIDs = config.rootfs?.diff_ids ?? [];
    const n = manifest.layers.length;
    for (const [i, l] of manifest.layers.entries()) {
      if (l.urls?.length || !CONVERTIBLE_LAYERS.has(l.mediaType)) {
        throw new ImageConvertError("layer-type", `${srcName} ${platform} layer ${i + 1}/${n} (${l.digest}) has media type ${l.mediaType}${l.urls?.length ? " with foreign URLs" : ""}, which cannot be converted (gzip or plain tar only)`, l.mediaType);
      }
    }
    if (opts.dryRun) {
      for (const l of manifest.layers) result.layers.push({ platform, source: l.digest, copied: Boolean(l.annotations?.[TOC_DIGEST_ANNOTATION]), sourceSize: l.size });
      return { body: Buffer.alloc(0), digest: "" };
    }
    const outcomes = await pool(manifest.layers, concurrency, (l, i) => {
      const ev: LayerEvent = { label: `${platform} layer ${i + 1}/${n}`, digest: l.digest, size: l.size };
      let p = layerCache.get(l.digest);
      if (!p) {
        p = convertLayerOf(l, diffIDs[i], ev);
        layerCache.set(l.digest, p);
      }
      return p;
    });
    for (const [i, o] of outcomes.entries()) {
      result.layers.push({ platform, source: manifest.layers[i]!.digest, digest: o.descriptor.digest, copied: o.copied, sourceSize: manifest.layers[i]!.size, size: o.descriptor.size });
    }
    const newConfig = { ...(config as Record<string, unknown>), rootfs: { ...(config.rootfs ?? {}), type: "layers", diff_ids: outcomes.map((o) => o.diffID) } };
    const configOut = Buffer.from(JSON.stringify(newConfig));
    const configDigest = await dstRepo.putBlob(configOut);
    const out: ImageManifest = {
      schemaVersion: 2, mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: configOut.length },
      layers: outcomes.map((o) => o.descriptor),
      subject: { mediaType: m.mediaType, digest: m.digest, size: m.body.length },
      annotations: { ...(manifest.annotations ?? {}), [SOURCE_DIGEST_ANNOTATION]: m.digest, [SOURCE_REF_ANNOTATION]: srcName, ...(prefetchDigest ? { [PREFETCH_ANNOTATION]: prefetchDigest } : {}) },
    };
    return { body: Buffer.from(JSON.stringify(out)), digest: "" };
  };

  const convertLayerOf = async (l: Descriptor, diffID: string | undefined, ev: LayerEvent): Promise<LayerOutcome> => {
    opts.observer?.layerStart?.(ev);
    const toc = l.annotations?.[TOC_DIGEST_ANNOTATION];
    // An annotation alone proves nothing: the blob is copied only once its footer and
    // TOC verify against it; otherwise it is converted like any other layer.
    const check = toc && diffID ? await checkEstargzBlob(await srcRepo.blobStream(l.digest), l.digest, toc) : undefined;
    if (check && !check.ok) opts.observer?.layerNotEstargz?.(ev, check.reason);
    if (check?.ok && diffID) {
      // Already eStargz: the same blob, under the OCI media type, with its annotations.
      if (!(await dstRepo.hasBlob(l.digest))) {
        if (target.path === source.path || !(await dstRepo.mountBlob(l.digest, source.path))) {
          throw new ImageConvertError("blob-missing", `${ev.label}: eStargz blob ${l.digest} is not in ${dstName}'s repository and could not be mounted`, l.digest);
        }
      }
      const annotations: Record<string, string> = { ...l.annotations };
      const descriptor: Descriptor = { mediaType: OCI_LAYER_GZIP, digest: l.digest, size: l.size, annotations };
      opts.observer?.layerDone?.(ev, { copied: true, digest: l.digest, size: l.size });
      return { descriptor, diffID, copied: true };
    }
    const upload = await dstRepo.startUpload();
    let converted: ConvertedLayer;
    try {
      const stream = await srcRepo.blobStream(l.digest);
      converted = await convertLayer(stream, upload, {
        ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : { chunkSize: DEFAULT_CHUNK_SIZE }),
        ...(opts.level !== undefined ? { level: opts.level } : {}),
        label: `${srcName} ${ev.label} (${l.digest})`,
        ...(opts.prefetch?.length ? { prefetch: opts.prefetch } : {}),
        onProgress: (r, w) => opts.observer?.layerProgress?.(ev, r, w),
      });
      if (converted.sourceDigest !== l.digest) {
        throw new ImageConvertError("source-digest", `${ev.label}: the registry sent a blob whose digest is ${converted.sourceDigest}, not ${l.digest}`, l.digest);
      }
      if (diffID && converted.sourceDiffID !== diffID) {
        throw new ImageConvertError("source-diffid", `${ev.label} (${l.digest}): uncompressed digest ${converted.sourceDiffID} differs from the config's diff_id ${diffID}`, l.digest);
      }
      await upload.finish(converted.digest);
    } catch (err) {
      await upload.cancel();
      // The layer's contents refused (not gzip, a bad or unsupported tar entry): for good
      // only when the registry serves the blob's very bytes; a stream cut or corrupted on
      // the way is worth another attempt.
      if ((err instanceof TarError || (err instanceof ConvertError && err.code !== "chunk-size")) && !signal.aborted && (await blobVerifies(srcRepo, l.digest))) {
        throw new ImageConvertError("layer-unconvertible", err.message, l.digest, { cause: err });
      }
      throw err;
    }
    result.bytesIn += converted.sourceSize;
    result.bytesOut += converted.size;
    opts.observer?.layerDone?.(ev, { copied: false, digest: converted.digest, size: converted.size });
    return {
      descriptor: {
        mediaType: OCI_LAYER_GZIP, digest: converted.digest, size: converted.size,
        annotations: { [TOC_DIGEST_ANNOTATION]: converted.tocDigest, [UNCOMPRESSED_SIZE_ANNOTATION]: String(converted.uncompressedSize) },
      },
      diffID: converted.diffID, copied: false, converted,
    };
  };

  /** PUTs a manifest, with `subject` when the registry takes it, without when it refuses it. */
  const put = async (reference: string, mediaType: string, body: Buffer): Promise<string> => {
    try {
      const r = await dstRepo.putManifest(reference, mediaType, body);
      result.subject = (result.subject ?? true) && r.subjectAccepted;
      return r.digest;
    } catch (err) {
      if ((err as { status?: number }).status !== 400) throw err;
      const doc = JSON.parse(body.toString("utf8")) as { subject?: unknown };
      delete doc.subject;
      result.subject = false;
      return (await dstRepo.putManifest(reference, mediaType, Buffer.from(JSON.stringify(doc)))).digest;
    }
  };

  if (!isIndex) {
    const { body } = await convertOne(top, undefined);
    if (opts.dryRun) return { ...result, result: "dry-run" };
    result.digest = await put(target.tag, OCI_MANIFEST, body);
    return result;
  }

  const index = parseJson<ImageIndex>(top.body, `index ${srcName}`);
  const children: Descriptor[] = [];
  for (const d of index.manifests ?? []) {
    // Attestations and other non-image entries (platform unknown/unknown) refer to the
    // source images' digests: they are not carried over.
    if (d.platform?.os === "unknown" || (d.mediaType !== OCI_MANIFEST && d.mediaType !== DOCKER_MANIFEST)) continue;
    const child = await srcRepo.manifest(d.digest);
    if (!child) throw new ImageConvertError("source-missing", `${srcName}: platform manifest ${d.digest} does not exist`, d.digest);
    const { body } = await convertOne(child, d);
    if (opts.dryRun) continue;
    const digest = await put(`sha256:${(await import("node:crypto")).createHash("sha256").update(body).digest("hex")}`, OCI_MANIFEST, body);
    const { annotations, platform } = d;
    children.push({ mediaType: OCI_MANIFEST, digest, size: body.length, ...(platform ? { platform } : {}), ...(annotations ? { annotations } : {}) });
  }
  if (opts.dryRun) return { ...result, result: "dry-run" };
  if (children.length === 0) throw new ImageConvertError("no-platforms", `${srcName}: the index lists no image manifests`, srcName);
  const outIndex: ImageIndex = {
    schemaVersion: 2, mediaType: OCI_INDEX, manifests: children,
    subject: { mediaType: top.mediaType, digest: top.digest, size: top.body.length },
    annotations: { ...(index.annotations ?? {}), [SOURCE_DIGEST_ANNOTATION]: top.digest, [SOURCE_REF_ANNOTATION]: srcName, ...(prefetchDigest ? { [PREFETCH_ANNOTATION]: prefetchDigest } : {}) },
  };
  result.digest = await put(target.tag, OCI_INDEX, Buffer.from(JSON.stringify(outIndex)));
  return result;
}
