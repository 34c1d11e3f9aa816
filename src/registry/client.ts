// OCI distribution client for one question: does <name>:<tag> exist, and as what?
// HEAD with the manifest Accept list, GET when a registry answers HEAD wrongly,
// anonymous / Basic / Bearer-token auth, keep-alive pools per registry (undici Agent),
// HTTPS_PROXY / NO_PROXY, a custom CA and plain-HTTP registries.
import { readFileSync } from "node:fs";
import { Agent, EnvHttpProxyAgent, request, type Dispatcher } from "undici";
import { ApparateError } from "../errors.js";
import type { ImageReference } from "../image/reference.js";
import type { Metrics } from "../observability/metrics.js";
import { parseChallenges, type Challenge } from "./challenge.js";
import type { Credential } from "./credentials.js";
import { credentialFingerprint } from "./credentials.js";
import { MANIFEST_ACCEPT, OCI_MEDIA_TYPES, type LookupResult } from "./result.js";

export interface RegistryClientOptions {
  requestTimeoutMs: number;
  plainHttp?: readonly string[];
  caFile?: string;
  /** Registry host -> endpoint origin, for tests and Docker Hub. */
  endpoints?: ReadonlyMap<string, string>;
  metrics?: Metrics;
  userAgent?: string;
}

/** Whether a failure should count against the registry's circuit breaker. */
export interface ClientAnswer { result: LookupResult; registryFault: boolean }

/** A registry refused the credentials (or asked for some and none were given). */
export class RegistryAuthError extends ApparateError {}

interface CachedToken { token: string; expiresAt: number }

const DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io";
const TOKEN_MAX_BYTES = 64 * 1024;

function proxyConfigured(): boolean {
  const e = process.env;
  return Boolean(e.HTTPS_PROXY || e.https_proxy || e.HTTP_PROXY || e.http_proxy);
}

export class RegistryClient {
  private readonly dispatcher: Dispatcher;
  private readonly plainHttp: ReadonlySet<string>;
  private readonly tokens = new Map<string, CachedToken>();
  /** Registries known to want a Bearer token: skip the first 401 round trip. */
  private readonly bearer = new Map<string, Challenge>();
  /** Registries that answered a Basic challenge (push/pull requests). */
  private readonly basicDomains = new Set<string>();

  constructor(private readonly opts: RegistryClientOptions) {
    const ca = opts.caFile ? readFileSync(opts.caFile) : undefined;
    const common = { keepAliveTimeout: 30_000, connections: 16, connect: ca ? { ca } : {} };
    this.dispatcher = proxyConfigured()
      ? new EnvHttpProxyAgent({ ...common, ...(ca ? { requestTls: { ca } } : {}) })
      : new Agent(common);
    this.plainHttp = new Set(opts.plainHttp ?? []);
  }

  async close(): Promise<void> { await this.dispatcher.close(); }
  async destroy(): Promise<void> { await this.dispatcher.destroy(); }

  origin(domain: string): string {
    const mapped = this.opts.endpoints?.get(domain);
    if (mapped) return mapped;
    if (domain === "docker.io") return DOCKER_HUB_ENDPOINT;
    return `${this.plainHttp.has(domain) ? "http" : "https"}://${domain}`;
  }

  /**
   * Checks one manifest, trying each credential in order (then anonymous if none).
   * 401/403 with one credential moves on to the next, as kubelet does with pull secrets.
   */
  async checkManifest(ref: ImageReference, tag: string, creds: readonly Credential[], signal: AbortSignal): Promise<ClientAnswer> {
    const attempts: Array<Credential | undefined> = creds.length > 0 ? [...creds] : [undefined];
    let last: ClientAnswer | undefined;
    for (const cred of attempts) {
      last = await this.checkWith(ref, tag, cred, signal);
      const r = last.result;
      if (!(r.kind === "unknown" && r.reason.startsWith("unauthorized"))) return last;
    }
    return last!;
  }

  private async checkWith(ref: ImageReference, tag: string, cred: Credential | undefined, signal: AbortSignal): Promise<ClientAnswer> {
    const origin = this.origin(ref.domain);
    const url = `${origin}/v2/${ref.path}/manifests/${encodeURIComponent(tag)}`;
    const scope = `repository:${ref.path}:pull`;
    let authz = await this.authorizationFor(ref.domain, scope, cred, signal);
    for (let round = 0; round < 2; round++) {
      let res = await this.send("HEAD", url, authz, ref.domain, signal);
      if (res.status === 405 || res.status === 501 || res.status === 400 || (res.status === 200 && !res.contentType)) {
        // Some registries (and proxies in front of them) answer HEAD wrongly: ask with GET.
        res = await this.send("GET", url, authz, ref.domain, signal);
      }
      if (res.status === 401 && round === 0) {
        const challenges = parseChallenges(res.wwwAuthenticate);
        const bearer = challenges.find((c) => c.scheme === "bearer");
        const basic = challenges.find((c) => c.scheme === "basic");
        if (bearer) {
          this.bearer.set(ref.domain, bearer);
          const t = await this.fetchToken(ref.domain, bearer, scope, cred, signal);
          if (t.error) return t.error;
          authz = `Bearer ${t.token}`;
          continue;
        }
        if (basic && cred) { authz = basicAuth(cred); continue; }
        return { result: { kind: "unknown", reason: "unauthorized: registry requires credentials" }, registryFault: false };
      }
      return { result: interpret(res), registryFault: res.status === 0 || res.status === 429 || res.status >= 500 };
    }
    return { result: { kind: "unknown", reason: "unauthorized: credentials rejected" }, registryFault: false };
  }

  private async authorizationFor(domain: string, scope: string, cred: Credential | undefined, signal: AbortSignal): Promise<string | undefined> {
    const challenge = this.bearer.get(domain);
    if (challenge) {
      const t = await this.fetchToken(domain, challenge, scope, cred, signal);
      if (!t.error) return `Bearer ${t.token}`;
    }
    return undefined;
  }

  private async fetchToken(domain: string, ch: Challenge, scope: string, cred: Credential | undefined, signal: AbortSignal): Promise<{ token: string; error?: undefined } | { error: ClientAnswer; token?: undefined }> {
    const realm = ch.params.realm;
    if (!realm) return { error: { result: { kind: "unknown", reason: "registry sent a Bearer challenge without realm" }, registryFault: true } };
    const service = ch.params.service;
    const key = `${realm}|${service ?? ""}|${scope}|${credentialFingerprint(cred ? [cred] : [])}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return { token: cached.token };
    const u = new URL(realm);
    if (service) u.searchParams.set("service", service);
    u.searchParams.set("scope", scope);
    this.opts.metrics?.registryRequests.inc({ registry: domain, kind: "token" });
    try {
      const res = await request(u, {
        method: "GET", dispatcher: this.dispatcher, signal: this.bound(signal),
        headers: { ...(cred ? { authorization: basicAuth(cred) } : {}), "user-agent": this.opts.userAgent ?? "apparate" },
      });
      if (res.statusCode === 401 || res.statusCode === 403) {
        await res.body.dump();
        return { error: { result: { kind: "unknown", reason: `unauthorized: token service answered ${res.statusCode}` }, registryFault: false } };
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        return { error: { result: { kind: "unknown", reason: `token service answered ${res.statusCode}` }, registryFault: true } };
      }
      const text = await readLimited(res.body, TOKEN_MAX_BYTES);
      const body = JSON.parse(text) as { token?: string; access_token?: string; expires_in?: number };
      const token = body.token ?? body.access_token;
      if (!token) return { error: { result: { kind: "unknown", reason: "token service sent no token" }, registryFault: true } };
      const ttl = Math.max(10, typeof body.expires_in === "number" ? body.expires_in : 60);
      // Renew 10 s early so a token never expires in flight.
      this.tokens.set(key, { token, expiresAt: Date.now() + (ttl - 5) * 1000 });
      if (this.tokens.size > 10_000) this.tokens.delete(this.tokens.keys().next().value!);
      return { token };
    } catch (err) {
      return { error: { result: { kind: "unknown", reason: `token request failed: ${errorReason(err)}` }, registryFault: true } };
    }
  }

  /**
   * One authorized request for push and pull (src/registry/push.ts): the scope's cached
   * Bearer token, or Basic, answering a 401 challenge once. The body must be a Buffer so
   * that it can be sent again after the challenge. The caller consumes the response body.
   * `timeoutMs` bounds the whole exchange (0: only `signal` and undici's idle timeouts,
   * for streamed blob bodies).
   */
  async authorizedRequest(
    domain: string, scope: string, cred: Credential | undefined,
    req: { method: Dispatcher.HttpMethod; url: string; headers?: Record<string, string>; body?: Buffer },
    signal: AbortSignal, timeoutMs = this.opts.requestTimeoutMs,
  ): Promise<Dispatcher.ResponseData> {
    const send = (authz: string | undefined) => {
      this.opts.metrics?.registryRequests.inc({ registry: domain, kind: "push" });
      return request(req.url, {
        method: req.method, dispatcher: this.dispatcher,
        signal: timeoutMs > 0 ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : signal,
        headers: { "user-agent": this.opts.userAgent ?? "apparate", ...req.headers, ...(authz ? { authorization: authz } : {}) },
        ...(req.body ? { body: req.body } : {}),
      });
    };
    let authz = this.basicDomains.has(domain) && cred ? basicAuth(cred) : await this.authorizationFor(domain, scope, cred, signal);
    const res = await send(authz);
    if (res.statusCode !== 401) return res;
    const challenges = parseChallenges(res.headers["www-authenticate"]);
    await res.body.dump();
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer) {
      this.bearer.set(domain, bearer);
      const t = await this.fetchToken(domain, bearer, scope, cred, signal);
      if (t.error) throw new RegistryAuthError("unauthorized", `${domain}: ${t.error.result.kind === "unknown" ? t.error.result.reason : "token refused"}`, domain);
      authz = `Bearer ${t.token}`;
    } else if (challenges.some((c) => c.scheme === "basic") && cred) {
      this.basicDomains.add(domain);
      authz = basicAuth(cred);
    } else {
      throw new RegistryAuthError("unauthorized", `${domain}: registry requires credentials for ${scope}`, domain);
    }
    return send(authz);
  }

  private bound(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, AbortSignal.timeout(this.opts.requestTimeoutMs)]);
  }

  private async send(method: "HEAD" | "GET", url: string, authz: string | undefined, domain: string, signal: AbortSignal): Promise<RawAnswer> {
    this.opts.metrics?.registryRequests.inc({ registry: domain, kind: "manifest" });
    try {
      const res = await request(url, {
        method, dispatcher: this.dispatcher, signal: this.bound(signal),
        headers: { accept: MANIFEST_ACCEPT, "user-agent": this.opts.userAgent ?? "apparate", ...(authz ? { authorization: authz } : {}) },
      });
      await res.body.dump({ limit: 1 << 20 });
      const h = res.headers;
      return {
        status: res.statusCode,
        contentType: first(h["content-type"])?.split(";")[0]?.trim(),
        digest: first(h["docker-content-digest"]),
        wwwAuthenticate: h["www-authenticate"],
        retryAfter: first(h["retry-after"]),
      };
    } catch (err) {
      return { status: 0, error: errorReason(err) };
    }
  }
}

interface RawAnswer {
  status: number;
  contentType?: string | undefined;
  digest?: string | undefined;
  wwwAuthenticate?: string | string[] | undefined;
  retryAfter?: string | undefined;
  error?: string;
}

function interpret(res: RawAnswer): LookupResult {
  if (res.status === 0) return { kind: "unknown", reason: res.error ?? "request failed" };
  if (res.status === 200) {
    const mt = res.contentType ?? "";
    if (OCI_MEDIA_TYPES.has(mt)) return { kind: "exists", mediaType: mt, ...(res.digest ? { digest: res.digest } : {}) };
    return { kind: "absent", reason: `exists but is not an OCI image (${mt || "no media type"}); only OCI images are accelerated` };
  }
  if (res.status === 404) return { kind: "absent", reason: "does not exist" };
  if (res.status === 401) return { kind: "unknown", reason: "unauthorized: credentials rejected" };
  if (res.status === 403) return { kind: "unknown", reason: "unauthorized: access denied (403)" };
  if (res.status === 429) return { kind: "unknown", reason: `rate limited (429${res.retryAfter ? `, retry after ${res.retryAfter}s` : ""})` };
  return { kind: "unknown", reason: `registry answered ${res.status}` };
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function basicAuth(c: Credential): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
}

async function readLimited(body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) throw new Error(`response larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function errorReason(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === "TimeoutError") return "timed out";
  if (e?.name === "AbortError") return "aborted (deadline)";
  const code = e?.code ?? e?.cause?.code;
  return code ? `${code}` : (e?.message ?? String(err));
}
