// Reading and writing images in a registry (OCI distribution-spec v1.1): manifests and
// blobs by digest, existence checks, cross-repository mounts, blob uploads (monolithic
// for small blobs, chunked PATCH with Content-Range for streamed ones, honouring
// OCI-Chunk-Min-Length), manifest PUTs, cancelled sessions on failure. Authorization
// is RegistryClient's (tokens with the push scope, Basic, cached per scope).
import { createHash } from "node:crypto";
import type { Dispatcher } from "undici";
import { ApparateError } from "../errors.js";
import type { ImageReference } from "../image/reference.js";
import type { RegistryClient } from "./client.js";
import type { Credential } from "./credentials.js";
import { MANIFEST_ACCEPT } from "./result.js";

export class RegistryWriteError extends ApparateError {
  constructor(code: string, message: string, input: unknown, readonly status?: number) {
    super(code, message, input);
  }
}

export interface FetchedManifest { mediaType: string; digest: string; body: Buffer }

/** Small JSON documents only: manifests and configs. */
const MANIFEST_MAX_BYTES = 4 << 20;
/** Transfers may take long; per-request time is bounded by undici's idle timeouts instead. */
const NO_TOTAL_TIMEOUT = 0;
// Small enough to keep a layer's upload buffer modest, large enough for few round trips.
const DEFAULT_PATCH_BYTES = 4 << 20;

const sha256 = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

async function readAll(body: Dispatcher.ResponseData["body"], limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > limit) { body.destroy(); throw new RegistryWriteError("too-large", `${what} is larger than ${limit} bytes`, what); }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

async function errorText(res: Dispatcher.ResponseData): Promise<string> {
  try {
    const t = (await readAll(res.body, 64 << 10, "error body")).toString("utf8");
    const j = JSON.parse(t) as { errors?: Array<{ code?: string; message?: string }> };
    if (j.errors?.length) return j.errors.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
    return t.slice(0, 200);
  } catch { return ""; }
}

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** One repository on one registry, for reading (pull scope) or writing (pull,push). */
export class Repository {
  readonly base: string;
  private readonly scope: string;

  constructor(
    private readonly client: RegistryClient,
    readonly ref: Pick<ImageReference, "domain" | "path">,
    private readonly cred: Credential | undefined,
    push: boolean,
    private readonly signal: AbortSignal,
  ) {
    this.base = `${client.origin(ref.domain)}/v2/${ref.path}`;
    this.scope = `repository:${ref.path}:${push ? "pull,push" : "pull"}`;
  }

  get name(): string { return `${this.ref.domain}/${this.ref.path}`; }

  private req(method: Dispatcher.HttpMethod, url: string, headers: Record<string, string> = {}, body?: Buffer, timeoutMs?: number) {
    return this.client.authorizedRequest(this.ref.domain, this.scope, this.cred, { method, url, headers, ...(body ? { body } : {}) }, this.signal, timeoutMs);
  }

  private abs(location: string): string {
    return new URL(location, this.base + "/").toString();
  }

  /** A manifest or index by tag or digest; undefined when the registry says 404. */
  async manifest(reference: string): Promise<FetchedManifest | undefined> {
    const res = await this.req("GET", `${this.base}/manifests/${encodeURIComponent(reference)}`, { accept: MANIFEST_ACCEPT });
    if (res.statusCode === 404) { await res.body.dump(); return undefined; }
    if (res.statusCode !== 200) throw new RegistryWriteError("manifest-get", `${this.name}:${reference}: registry answered ${res.statusCode} ${await errorText(res)}`.trim(), reference, res.statusCode);
    const body = await readAll(res.body, MANIFEST_MAX_BYTES, `manifest ${this.name}:${reference}`);
    const digest = sha256(body);
    if (reference.startsWith("sha256:") && reference !== digest) throw new RegistryWriteError("digest-mismatch", `${this.name}@${reference}: the registry sent content whose digest is ${digest}`, reference);
    const mediaType = header(res, "content-type")?.split(";")[0]?.trim() || (JSON.parse(body.toString("utf8")) as { mediaType?: string }).mediaType || "";
    return { mediaType, digest, body };
  }

  /** Whether the blob is in this repository. */
  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.req("HEAD", `${this.base}/blobs/${digest}`);
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw new RegistryWriteError("blob-head", `${this.name}: HEAD blob ${digest}: registry answered ${res.statusCode}`, digest, res.statusCode);
  }

  /** A blob's bytes as a stream; follows the registry's redirect to its storage. */
  async blobStream(digest: string): Promise<AsyncIterable<Buffer>> {
    let res = await this.req("GET", `${this.base}/blobs/${digest}`, {}, undefined, NO_TOTAL_TIMEOUT);
    for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && hops < 5; hops++) {
      const loc = header(res, "location");
      await res.body.dump();
      if (!loc) break;
      // Storage URLs are pre-signed: no registry credentials go there; the address is checked as every dial is.
      res = await this.client.storageGet(this.abs(loc), this.signal);
    }
    if (res.statusCode !== 200) throw new RegistryWriteError("blob-get", `${this.name}: GET blob ${digest}: registry answered ${res.statusCode} ${await errorText(res)}`.trim(), digest, res.statusCode);
    return res.body as AsyncIterable<Buffer>;
  }

  async blobBytes(digest: string, limit = MANIFEST_MAX_BYTES): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of await this.blobStream(digest)) {
      n += c.length;
      if (n > limit) throw new RegistryWriteError("too-large", `${this.name}: blob ${digest} is larger than ${limit} bytes`, digest);
      chunks.push(c);
    }
    const b = Buffer.concat(chunks);
    if (sha256(b) !== digest) throw new RegistryWriteError("digest-mismatch", `${this.name}: blob ${digest} has digest ${sha256(b)}`, digest);
    return b;
  }

  /** Mounts a blob from another repository of the same registry; false when the registry declined. */
  async mountBlob(digest: string, from: string): Promise<boolean> {
    const res = await this.req("POST", `${this.base}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`);
    if (res.statusCode === 201) { await res.body.dump(); return true; }
    // 202: the registry opened an upload session instead; close it.
    const loc = header(res, "location");
    await res.body.dump();
    if (res.statusCode === 202 && loc) await this.cancel(this.abs(loc));
    return false;
  }

  /** Uploads a small blob in one PUT, unless it is there already. */
  async putBlob(data: Buffer): Promise<string> {
    const digest = sha256(data);
    if (await this.hasBlob(digest)) return digest;
    const upload = await this.startUpload();
    try {
      await upload.finish(digest, data);
    } catch (err) {
      await upload.cancel();
      throw err;
    }
    return digest;
  }

  async startUpload(): Promise<BlobUpload> {
    const res = await this.req("POST", `${this.base}/blobs/uploads/`);
    const loc = header(res, "location");
    if (res.statusCode !== 202 || !loc) {
      const why = await errorText(res);
      throw new RegistryWriteError("upload-start", `${this.name}: starting a blob upload: registry answered ${res.statusCode}${why ? ` (${why})` : ""}`, this.name, res.statusCode);
    }
    await res.body.dump();
    const min = Number(header(res, "oci-chunk-min-length") ?? 0);
    return new BlobUpload(this, this.abs(loc), Number.isFinite(min) && min > 0 ? min : 0);
  }

  /** @internal one upload request; BlobUpload drives the protocol. */
  send(method: Dispatcher.HttpMethod, url: string, headers: Record<string, string>, body?: Buffer) {
    return this.req(method, url, headers, body, NO_TOTAL_TIMEOUT);
  }

  /** @internal */
  resolve(location: string): string { return this.abs(location); }

  /** Cancels an upload session (DELETE); failures to cancel are not errors. */
  async cancel(location: string): Promise<void> {
    try {
      const res = await this.client.authorizedRequest(this.ref.domain, this.scope, this.cred, { method: "DELETE", url: location }, AbortSignal.timeout(10_000));
      await res.body.dump();
    } catch { /* the registry garbage-collects stale sessions */ }
  }

  /** PUTs a manifest or index under a tag or its digest; returns its digest and whether the registry processed `subject`. */
  async putManifest(reference: string, mediaType: string, body: Buffer): Promise<{ digest: string; subjectAccepted: boolean }> {
    const res = await this.req("PUT", `${this.base}/manifests/${encodeURIComponent(reference)}`, { "content-type": mediaType }, body);
    if (res.statusCode !== 201 && res.statusCode !== 200 && res.statusCode !== 202) {
      const why = await errorText(res);
      throw new RegistryWriteError("manifest-put", `${this.name}:${reference}: registry refused the manifest: ${res.statusCode}${why ? ` (${why})` : ""}`, reference, res.statusCode);
    }
    const subjectAccepted = header(res, "oci-subject") !== undefined;
    await res.body.dump();
    return { digest: sha256(body), subjectAccepted };
  }
}

/**
 * One blob upload session, written as a stream: bytes are sent in PATCH requests of at
 * least `OCI-Chunk-Min-Length` (4 MiB by default) with Content-Range, the digest given
 * at the closing PUT. Memory: one PATCH worth of bytes.
 */
export class BlobUpload {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private sent = 0;
  private readonly patchBytes: number;
  private closed = false;

  constructor(private readonly repo: Repository, private location: string, minChunk: number) {
    this.patchBytes = Math.max(minChunk, DEFAULT_PATCH_BYTES);
  }

  get bytesSent(): number { return this.sent; }

  async write(chunk: Buffer): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= this.patchBytes) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const body = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    const res = await this.repo.send("PATCH", this.location, {
      "content-type": "application/octet-stream",
      "content-range": `${this.sent}-${this.sent + body.length - 1}`,
    }, body);
    const loc = header(res, "location");
    if (res.statusCode !== 202) {
      const why = await errorText(res);
      throw new RegistryWriteError("upload-patch", `${this.repo.name}: blob upload chunk at ${this.sent}: registry answered ${res.statusCode}${why ? ` (${why})` : ""}`, this.sent, res.statusCode);
    }
    await res.body.dump();
    this.sent += body.length;
    if (loc) this.location = this.repo.resolve(loc);
  }

  /** Sends what is left (or `last`) and closes the session with the blob's digest. */
  async finish(digest: string, last?: Buffer): Promise<void> {
    let body: Buffer | undefined = last;
    if (!last && this.sent > 0) await this.flush();
    else if (!last && this.pendingBytes > 0) { body = Buffer.concat(this.pending); this.pending = []; this.pendingBytes = 0; }
    const sep = this.location.includes("?") ? "&" : "?";
    const res = await this.repo.send("PUT", `${this.location}${sep}digest=${encodeURIComponent(digest)}`,
      { "content-type": "application/octet-stream" }, body ?? Buffer.alloc(0));
    if (res.statusCode !== 201) {
      const why = await errorText(res);
      throw new RegistryWriteError("upload-put", `${this.repo.name}: closing blob upload ${digest}: registry answered ${res.statusCode}${why ? ` (${why})` : ""}`, digest, res.statusCode);
    }
    await res.body.dump();
    this.closed = true;
  }

  /** Cancels the session unless it was completed. */
  async cancel(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.repo.cancel(this.location);
  }
}
