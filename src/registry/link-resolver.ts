// The webhook's view of the conversion links (issue 27): "which eStargz image did the
// digest X become?" Read from the registry (referrers API, then the referrers tag schema),
// and trusted only after Y itself was read by digest and checked (referrers.verifyTarget).
// Answers are LookupResults so that the handler, the cap, the deadline and the plan memo
// treat a pinned image exactly like a tag: "exists" with Y's digest, "absent" (no link, or
// a link refused, with the reason), "unknown". A verified link never changes (both ends
// are digests), so it is cached for the process lifetime, bounded in count; absent and
// unknown answers expire as the tag answers do. One lookup per key at a time (coalesced),
// the same per-registry breaker and request slots as the tag lookups.
import { LRUCache } from "lru-cache";
import { createHash } from "node:crypto";
import type { Dispatcher } from "undici";
import type { ImageReference } from "../image/reference.js";
import type { Metrics } from "../observability/metrics.js";
import type { CircuitBreaker } from "./breaker.js";
import { errorReason, RegistryAuthError, type RegistryClient } from "./client.js";
import { credentialFingerprint, type Credential } from "./credentials.js";
import { LINK_ARTIFACT_TYPE, linksIn, parseReferrersList, referrersTag, imageChildren, shortDigest, verifyTarget, type Link } from "./referrers.js";
import { raceSignal, type TagLookup, type TagResolver } from "./resolver.js";
import { MANIFEST_ACCEPT, OCI_INDEX, type LookupResult } from "./result.js";

export interface LinkResolverOptions {
  /** Verified links kept (least recently used dropped first). */
  maxEntries: number;
  negativeTtlMs: number;
  unknownBackoffMs: number;
  metrics?: Metrics;
  /** Links tried per digest, newest first (a refused one does not hide an older good one). */
  maxLinksTried?: number;
  /** Platform manifests of an index read for the check. */
  maxPlatforms?: number;
}

const DOC_MAX_BYTES = 4 << 20;
const sha256 = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

/** A request the registry answered badly: counts against its breaker. */
class RegistryFault extends Error {}

interface Doc { status: number; mediaType: string; body: Buffer }

export class DigestLinkResolver implements TagLookup {
  private readonly cache: LRUCache<string, LookupResult>;
  private readonly inflight = new Map<string, { promise: Promise<LookupResult>; waiters: number }>();

  constructor(private readonly client: RegistryClient, private readonly tags: Pick<TagResolver, "breakerFor">, private readonly opts: LinkResolverOptions) {
    this.cache = new LRUCache({ max: opts.maxEntries, ttlAutopurge: false, ttlResolution: 0, allowStale: false });
  }

  get cacheSize(): number { return this.cache.size; }

  private keyOf(ref: ImageReference, creds: readonly Credential[]): string {
    return `${ref.domain}/${ref.path}@${ref.digest}|${credentialFingerprint(creds)}`;
  }

  peek(ref: ImageReference, creds: readonly Credential[]): LookupResult | undefined {
    const hit = this.cache.get(this.keyOf(ref, creds));
    if (hit) this.opts.metrics?.cache.inc({ result: "hit" });
    return hit;
  }

  async lookup(ref: ImageReference, creds: readonly Credential[], signal: AbortSignal): Promise<LookupResult> {
    if (ref.digest === undefined) return { kind: "absent", reason: "not pinned by digest" };
    const m = this.opts.metrics;
    const key = this.keyOf(ref, creds);
    const hit = this.cache.get(key);
    if (hit) { m?.cache.inc({ result: "hit" }); return hit; }
    const pending = this.inflight.get(key);
    if (pending) { m?.cache.inc({ result: "coalesced" }); pending.waiters++; return raceSignal(pending.promise, signal, () => { pending.waiters--; }); }
    m?.cache.inc({ result: "miss" });
    const breaker = this.tags.breakerFor(ref.domain);
    if (!breaker.allow()) return { kind: "unknown", reason: `circuit breaker open for ${ref.domain} after repeated failures` };
    const entry = { waiters: 1, promise: undefined as unknown as Promise<LookupResult> };
    entry.promise = this.fetch(ref, ref.digest, creds, breaker, key, () => entry.waiters > 0).finally(() => this.inflight.delete(key));
    this.inflight.set(key, entry);
    return raceSignal(entry.promise, signal, () => { entry.waiters--; });
  }

  private async fetch(ref: ImageReference, source: string, creds: readonly Credential[], breaker: CircuitBreaker, key: string, wanted: () => boolean): Promise<LookupResult> {
    const attempts: Array<Credential | undefined> = creds.length > 0 ? [...creds] : [undefined];
    let r: LookupResult = { kind: "unknown", reason: "not asked" };
    let sent = false;
    for (const cred of attempts) {
      const answer = await this.client.runLimited(ref.domain, async () => {
        sent = true;
        try {
          return await this.resolve(ref, source, cred);
        } catch (err) {
          if (err instanceof RegistryAuthError || (err as { status?: number }).status === 401 || (err as { status?: number }).status === 403) return { kind: "unknown", reason: "unauthorized: credentials rejected" } as const;
          if (err instanceof RegistryFault) { breaker.failure(); return { kind: "unknown", reason: err.message } as const; }
          breaker.failure();
          return { kind: "unknown", reason: `link lookup failed: ${errorReason(err)}` } as const;
        }
      }, wanted);
      if (answer === undefined) { breaker.releaseTrial(); return { kind: "unknown", reason: "deadline exceeded" }; }
      r = answer;
      if (!(r.kind === "unknown" && r.reason.startsWith("unauthorized"))) break;
    }
    if (!sent) return r;
    if (r.kind !== "unknown") breaker.success();
    this.opts.metrics?.lookups.inc({ registry: "digest-link", result: r.kind });
    // A verified link never changes: no TTL, only the count bound.
    if (r.kind === "exists") this.cache.set(key, r);
    else {
      const ttl = r.kind === "absent" ? this.opts.negativeTtlMs : this.opts.unknownBackoffMs;
      if (ttl > 0) this.cache.set(key, r, { ttl });
    }
    return r;
  }

  /** The referrers list, the links in it newest first, each checked until one holds. */
  private async resolve(ref: ImageReference, source: string, cred: Credential | undefined): Promise<LookupResult> {
    const list = await this.referrers(ref, source, cred);
    if (!list) return { kind: "absent", reason: `no conversion of ${shortDigest(source)} is recorded in the registry` };
    const links = linksIn(list, source).slice(0, this.opts.maxLinksTried ?? 3);
    if (links.length === 0) return { kind: "absent", reason: `no conversion of ${shortDigest(source)} is recorded in the registry` };
    let refused = "";
    for (const link of links) {
      const why = await this.check(ref, link, cred);
      if (why === undefined) return { kind: "exists", mediaType: link.targetMediaType, digest: link.target };
      refused ||= `the recorded conversion ${shortDigest(link.target)} was refused: ${why}`;
    }
    return { kind: "absent", reason: refused };
  }

  /** Why Y may not be trusted, or undefined. */
  private async check(ref: ImageReference, link: Link, cred: Credential | undefined): Promise<string | undefined> {
    const top = await this.manifest(ref, link.target, cred);
    if (!top) return "it does not exist";
    let children: Map<string, { mediaType: string; body: Buffer }> | undefined;
    if (top.mediaType === OCI_INDEX) {
      let doc: { manifests?: never[] };
      try { doc = JSON.parse(top.body.toString("utf8")) as typeof doc; } catch { return "it is not JSON"; }
      const kids = imageChildren(doc).slice(0, this.opts.maxPlatforms ?? 16);
      children = new Map();
      const got = await Promise.all(kids.map((k) => this.manifest(ref, k.digest, cred)));
      kids.forEach((k, i) => { const g = got[i]; if (g) children!.set(k.digest, g); });
    }
    const v = verifyTarget(link.source, top, children);
    return v.ok ? undefined : v.reason;
  }

  /** GET a manifest by digest; undefined on 404; its bytes must hash to the digest. */
  private async manifest(ref: ImageReference, digest: string, cred: Credential | undefined): Promise<{ mediaType: string; body: Buffer } | undefined> {
    const d = await this.get(ref, `/manifests/${digest}`, MANIFEST_ACCEPT, cred);
    if (d.status === 404) return undefined;
    if (d.status !== 200) throw statusError(d.status, `manifest ${digest}`);
    if (sha256(d.body) !== digest) throw new RegistryFault(`the registry sent a manifest whose digest is not ${digest}`);
    return { mediaType: d.mediaType, body: d.body };
  }

  /**
   * The referrers list of `source`: the referrers API (filtered to the link type), or on
   * 404 the index under the referrers tag (distribution spec: a client receiving 404 from
   * the API MUST fall back to the tag; a tag that is not an index means no referrers).
   */
  private async referrers(ref: ImageReference, source: string, cred: Credential | undefined) {
    const api = await this.get(ref, `/referrers/${source}?artifactType=${encodeURIComponent(LINK_ARTIFACT_TYPE)}`, OCI_INDEX, cred);
    if (api.status === 200) return parseReferrersList(api.body, api.mediaType || OCI_INDEX);
    if (api.status !== 404 && api.status !== 400 && api.status !== 405) throw statusError(api.status, "referrers");
    const tag = await this.get(ref, `/manifests/${referrersTag(source)}`, OCI_INDEX, cred);
    if (tag.status === 404) return undefined;
    if (tag.status !== 200) throw statusError(tag.status, "referrers tag");
    return parseReferrersList(tag.body, tag.mediaType);
  }

  private async get(ref: ImageReference, rest: string, accept: string, cred: Credential | undefined): Promise<Doc> {
    const url = `${this.client.origin(ref.domain)}/v2/${ref.path}${rest}`;
    const res: Dispatcher.ResponseData = await this.client.authorizedRequest(ref.domain, `repository:${ref.path}:pull`, cred, { method: "GET", url, headers: { accept } }, AbortSignal.timeout(60_000));
    if (res.statusCode !== 200) { await res.body.dump({ limit: 64 << 10 }).catch(() => undefined); return { status: res.statusCode, mediaType: "", body: Buffer.alloc(0) }; }
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of res.body) {
      n += (c as Buffer).length;
      if (n > DOC_MAX_BYTES) { res.body.destroy(); throw new RegistryFault(`a document larger than ${DOC_MAX_BYTES} bytes`); }
      chunks.push(c as Buffer);
    }
    const ct = res.headers["content-type"];
    const mediaType = (Array.isArray(ct) ? ct[0] : ct)?.split(";")[0]?.trim() ?? "";
    return { status: 200, mediaType, body: Buffer.concat(chunks) };
  }
}

function statusError(status: number, what: string): Error {
  if (status === 401 || status === 403) return Object.assign(new Error("unauthorized"), { status });
  // Only the status is kept: nothing the server wrote reaches a pod's warnings.
  return new RegistryFault(`${what}: registry answered ${status}`);
}

/**
 * The handler's one lookup: a reference with a digest asks for a conversion link, any
 * other for a tag. Keeps the handler, the cap and the plan memo unaware of the difference.
 */
export class ReferenceLookup implements TagLookup {
  constructor(private readonly tags: TagLookup, private readonly links: TagLookup) {}

  lookup(ref: ImageReference, creds: readonly Credential[], signal: AbortSignal): Promise<LookupResult> {
    return (ref.digest !== undefined ? this.links : this.tags).lookup(ref, creds, signal);
  }

  peek(ref: ImageReference, creds: readonly Credential[]): LookupResult | undefined {
    return (ref.digest !== undefined ? this.links : this.tags).peek?.(ref, creds);
  }
}
