// What a rescan reads from a registry: the repository catalog and tag lists (both
// paginated by the Link header, distribution's and OCI's "n"/"last" scheme), the digest
// a tag points at, and the source digest an accelerated image records.
import { ApparateError } from "../errors.js";

/** One authorized request, as RegistryClient.authorizedRequest makes it. */
export type AuthorizedSend = (
  domain: string, scope: string,
  req: { method: "GET" | "HEAD"; url: string; headers?: Record<string, string> },
  signal: AbortSignal,
) => Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined>; body: { text(): Promise<string>; dump(): Promise<void> } }>;

export class CatalogRefusedError extends ApparateError {}
export class RegistryReadError extends ApparateError {}

export const SOURCE_DIGEST_ANNOTATION = "io.apparate.source-digest";

const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** Largest listing or manifest page read (a registry is not trusted to bound it). */
const MAX_PAGE_BYTES = 8 * 1024 * 1024;
/** Pages followed at most per listing: a Link loop must end. */
const MAX_PAGES = 10_000;

export interface RegistryReader {
  /** Every repository of the registry; CatalogRefusedError when _catalog is refused. */
  repositories(registry: string, signal: AbortSignal): Promise<string[]>;
  tags(registry: string, repository: string, signal: AbortSignal): Promise<string[]>;
  /** The digest a tag points at; undefined when the tag does not exist. */
  digest(registry: string, repository: string, tag: string, signal: AbortSignal): Promise<string | undefined>;
  /** The io.apparate.source-digest an accelerated image records; undefined when none. */
  recordedSource(registry: string, repository: string, tag: string, signal: AbortSignal): Promise<string | undefined>;
  /** Layer digests and sizes of an image (every platform of an index); optional: job mode counts bytes with it. */
  layerSizes?(registry: string, repository: string, ref: string, signal: AbortSignal): Promise<Map<string, number>>;
}

/** Platforms of an index read at most for layerSizes. */
const MAX_PLATFORMS = 64;

/** The next page's URL from a Link header (RFC 8288), resolved against the registry origin. */
export function nextLink(link: string | string[] | undefined, origin: string): string | undefined {
  for (const l of Array.isArray(link) ? link : link ? [link] : []) {
    for (const part of l.split(/,(?=\s*<)/)) {
      const m = /^\s*<([^>]*)>(.*)$/.exec(part);
      if (m && /;\s*rel="?next"?(\s|;|$)/i.test(m[2]!)) return new URL(m[1]!, origin).toString();
    }
  }
  return undefined;
}

export interface HttpReaderOptions {
  send: AuthorizedSend;
  origin(registry: string): string;
  pageSize?: number;
  /** Called before every request: the scan's rate limit. */
  beforeRequest?(registry: string): Promise<void>;
}

export class HttpRegistryReader implements RegistryReader {
  constructor(private readonly o: HttpReaderOptions) {}

  private async get(registry: string, scope: string, url: string, signal: AbortSignal, accept = "application/json") {
    await this.o.beforeRequest?.(registry);
    return this.o.send(registry, scope, { method: "GET", url, headers: { accept } }, signal);
  }

  private async readJson(res: Awaited<ReturnType<AuthorizedSend>>, what: string): Promise<unknown> {
    const text = await res.body.text();
    if (text.length > MAX_PAGE_BYTES) throw new RegistryReadError("registry-page-too-large", `${what}: answer larger than ${MAX_PAGE_BYTES} bytes`);
    try { return JSON.parse(text); } catch { throw new RegistryReadError("registry-bad-json", `${what}: the answer is not JSON`); }
  }

  private async paginate(registry: string, scope: string, first: string, key: "repositories" | "tags", what: string, signal: AbortSignal): Promise<string[]> {
    const origin = this.o.origin(registry);
    const out: string[] = [];
    let url: string | undefined = first;
    for (let page = 0; url && page < MAX_PAGES; page++) {
      const res = await this.get(registry, scope, url, signal);
      if (res.statusCode === 401 || res.statusCode === 403 || res.statusCode === 404 || res.statusCode === 405) {
        await res.body.dump();
        if (key === "repositories") throw new CatalogRefusedError("catalog-refused", `${registry}: _catalog answered ${res.statusCode}`, registry);
        if (res.statusCode === 404) return out;
        throw new RegistryReadError("registry-refused", `${what}: answered ${res.statusCode}`);
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new RegistryReadError("registry-error", `${what}: answered ${res.statusCode}`);
      }
      const doc = (await this.readJson(res, what)) as Record<string, unknown>;
      const list = doc[key];
      if (list !== null && list !== undefined && !Array.isArray(list)) throw new RegistryReadError("registry-bad-json", `${what}: "${key}" is not a list`);
      for (const s of (list as unknown[] | null) ?? []) if (typeof s === "string") out.push(s);
      url = nextLink(res.headers.link, origin);
    }
    return out;
  }

  repositories(registry: string, signal: AbortSignal): Promise<string[]> {
    const n = this.o.pageSize ?? 1000;
    return this.paginate(registry, "registry:catalog:*", `${this.o.origin(registry)}/v2/_catalog?n=${n}`, "repositories", `${registry} _catalog`, signal);
  }

  tags(registry: string, repository: string, signal: AbortSignal): Promise<string[]> {
    const n = this.o.pageSize ?? 1000;
    return this.paginate(registry, `repository:${repository}:pull`, `${this.o.origin(registry)}/v2/${repository}/tags/list?n=${n}`, "tags", `${registry}/${repository} tags`, signal);
  }

  async digest(registry: string, repository: string, tag: string, signal: AbortSignal): Promise<string | undefined> {
    await this.o.beforeRequest?.(registry);
    const url = `${this.o.origin(registry)}/v2/${repository}/manifests/${encodeURIComponent(tag)}`;
    const res = await this.o.send(registry, `repository:${repository}:pull`, { method: "HEAD", url, headers: { accept: MANIFEST_ACCEPT } }, signal);
    await res.body.dump();
    if (res.statusCode === 404) return undefined;
    const d = res.headers["docker-content-digest"];
    if (res.statusCode !== 200 || typeof d !== "string") throw new RegistryReadError("registry-error", `${registry}/${repository}:${tag}: manifest HEAD answered ${res.statusCode}${typeof d === "string" ? "" : " without a digest"}`);
    return d;
  }

  async layerSizes(registry: string, repository: string, ref: string, signal: AbortSignal): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const read = async (r: string) => {
      const res = await this.get(registry, `repository:${repository}:pull`, `${this.o.origin(registry)}/v2/${repository}/manifests/${encodeURIComponent(r)}`, signal, MANIFEST_ACCEPT);
      if (res.statusCode !== 200) { await res.body.dump(); throw new RegistryReadError("registry-error", `${registry}/${repository}@${r}: manifest GET answered ${res.statusCode}`); }
      return (await this.readJson(res, `${registry}/${repository}@${r}`)) as { manifests?: Array<{ digest?: unknown }>; layers?: Array<{ digest?: unknown; size?: unknown }> };
    };
    const top = await read(ref);
    const docs = Array.isArray(top.manifests)
      ? await Promise.all(top.manifests.slice(0, MAX_PLATFORMS).filter((m) => typeof m.digest === "string").map((m) => read(m.digest as string)))
      : [top];
    for (const d of docs) for (const l of d.layers ?? []) if (typeof l.digest === "string" && typeof l.size === "number") out.set(l.digest, l.size);
    return out;
  }

  async recordedSource(registry: string, repository: string, tag: string, signal: AbortSignal): Promise<string | undefined> {
    const url = `${this.o.origin(registry)}/v2/${repository}/manifests/${encodeURIComponent(tag)}`;
    const res = await this.get(registry, `repository:${repository}:pull`, url, signal, MANIFEST_ACCEPT);
    if (res.statusCode === 404) { await res.body.dump(); return undefined; }
    if (res.statusCode !== 200) { await res.body.dump(); throw new RegistryReadError("registry-error", `${registry}/${repository}:${tag}: manifest GET answered ${res.statusCode}`); }
    const doc = (await this.readJson(res, `${registry}/${repository}:${tag}`)) as { annotations?: Record<string, unknown> };
    const v = doc.annotations?.[SOURCE_DIGEST_ANNOTATION];
    return typeof v === "string" ? v : undefined;
  }
}
