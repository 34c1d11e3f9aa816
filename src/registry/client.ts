// OCI distribution client for one question: does <name>:<tag> exist, and as what?
// HEAD with the manifest Accept list, GET when a registry answers HEAD wrongly,
// anonymous / Basic / Bearer-token auth, keep-alive pools per registry (undici Agent),
// HTTPS_PROXY / NO_PROXY, a custom CA and plain-HTTP registries.
// Registries are not trusted: credentials go only to approved token realms (realm.ts),
// connections only to allowed addresses (network.ts), and nothing a server sent is
// copied into a reason (reasons end up in pods' warnings).
import { readFileSync } from "node:fs";
import { Agent, buildConnector, EnvHttpProxyAgent, Pool, request, type Dispatcher } from "undici";
import { LRUCache } from "lru-cache";
import { ApparateError } from "../errors.js";
import type { ImageReference } from "../image/reference.js";
import type { Metrics } from "../observability/metrics.js";
import { parseChallenges, type Challenge } from "./challenge.js";
import type { Credential } from "./credentials.js";
import { credentialFingerprint } from "./credentials.js";
import { HostLimiter } from "./limiter.js";
import { AddressRefusedError, DialPolicy } from "./network.js";
import { decideRealm } from "./realm.js";
import { DOCKER_LIST, DOCKER_MANIFEST, MANIFEST_ACCEPT, OCI_MEDIA_TYPES, type LookupResult } from "./result.js";

export interface RegistryClientOptions {
  requestTimeoutMs: number;
  plainHttp?: readonly string[];
  caFile?: string;
  /** Registry host -> endpoint origin, for tests and Docker Hub. */
  endpoints?: ReadonlyMap<string, string>;
  metrics?: Metrics;
  userAgent?: string;
  /** registry.tokenRealms: hosts besides each registry's own that may receive its credentials. */
  tokenRealms?: readonly string[];
  /** Which addresses may be dialled; by default only public ones. */
  dialPolicy?: DialPolicy;
  /** Requests in flight per registry (registry.maxConcurrentPerRegistry). */
  maxConcurrentPerRegistry?: number;
  /** Registries whose Bearer challenge and tokens are remembered (registry.maxRegistryHosts). */
  maxRegistryHosts?: number;
  /** The metric label of a registry host: bounded (configured hosts by name, the rest "other"). */
  label?: (domain: string) => string;
}

/** Whether a failure should count against the registry's circuit breaker. */
export interface ClientAnswer {
  result: LookupResult;
  registryFault: boolean;
  /** Never sent: nobody waited for it any more when a slot came free. */
  abandoned?: boolean;
  /** performance.now() when the first request left the queue. */
  sentAt?: number;
}

export interface CheckOptions {
  /** Still wanted by someone? Asked when the request leaves the per-registry queue. */
  wanted?: () => boolean;
}

/** A registry refused the credentials (or asked for some and none were given). */
export class RegistryAuthError extends ApparateError {}

interface CachedToken { token: string; expiresAt: number }

const DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io";
const TOKEN_MAX_BYTES = 64 * 1024;
// token68 / JWT characters: a "token" with anything else is not forwarded as a header.
const TOKEN_SYNTAX = /^[A-Za-z0-9._~+/=-]{1,8192}$/;
const DIGEST_SYNTAX = /^sha(256:[0-9a-f]{64}|384:[0-9a-f]{96}|512:[0-9a-f]{128})$/;
// A timer that fires this much late (ms, or this share of its timeout) saw the event loop stalled.
const STALL_MIN_MS = 50;
const STALL_FRACTION = 0.25;
const MAX_STALL_EXTENSIONS = 3;
const DOCKER_TYPES: ReadonlyMap<string, string> = new Map([[DOCKER_MANIFEST, "Docker image manifest"], [DOCKER_LIST, "Docker manifest list"]]);

function proxyConfigured(): boolean {
  const e = process.env;
  return Boolean(e.HTTPS_PROXY || e.https_proxy || e.HTTP_PROXY || e.http_proxy);
}

type Connector = ReturnType<typeof buildConnector>;

/**
 * undici's connector with the dial check: IP literals are judged as they are, names
 * through a lookup that judges each resolved address before the socket opens.
 */
function guardedConnector(policy: DialPolicy, tls: buildConnector.BuildOptions): Connector {
  const byPort = new Map<string, Connector>();
  return (opts, callback) => {
    const port = opts.port || (opts.protocol === "https:" ? "443" : "80");
    try { policy.assertLiteral(opts.hostname, port); } catch (err) { callback(err as Error, null); return; }
    let c = byPort.get(port);
    if (!c) { c = buildConnector({ ...tls, lookup: policy.lookupFor(port) } as buildConnector.BuildOptions); byPort.set(port, c); }
    c(opts, callback);
  };
}

/**
 * The client to the proxy, with every CONNECT target checked before it is sent: the
 * proxy would dial an IP literal or "localhost" on its own side, past the dial check.
 */
function guardedProxyClient(policy: DialPolicy): (origin: URL, opts: object) => Dispatcher {
  return (origin, opts) => new Pool(origin, opts).compose((dispatch) => (o, handler) => {
    if (o.method === "CONNECT") policy.assertProxyTarget(o.path);
    return dispatch(o, handler);
  });
}

export class RegistryClient {
  private readonly dispatcher: Dispatcher;
  private readonly plainHttp: ReadonlySet<string>;
  private readonly tokenRealms: ReadonlySet<string>;
  private readonly policy: DialPolicy;
  private readonly limiter: HostLimiter;
  private readonly tokens: LRUCache<string, CachedToken>;
  /** Registries known to want a Bearer token: skip the first 401 round trip. */
  private readonly bearer: LRUCache<string, Challenge>;
  private readonly label: (domain: string) => string;
  /** Registries that answered a Basic challenge (push/pull requests). */
  private readonly basicDomains = new Set<string>();

  constructor(private readonly opts: RegistryClientOptions) {
    const ca = opts.caFile ? readFileSync(opts.caFile) : undefined;
    const perHost = opts.maxConcurrentPerRegistry ?? 8;
    this.policy = opts.dialPolicy ?? new DialPolicy();
    // The pool never queues for a registry (the limiter holds the excess); a shared
    // token host gets room for twice as many.
    const common = { keepAliveTimeout: 30_000, connections: perHost * 2 };
    // Every direct dial resolves and checks each address, proxy or not: with a proxy,
    // names in NO_PROXY (and plain-http registries when only HTTPS_PROXY is set) are
    // dialled directly, through `connect`. The proxy resolves the names it is given and
    // is the boundary for them; IP literals and "localhost" never reach it.
    const connect = guardedConnector(this.policy, ca ? { ca } : {});
    this.dispatcher = proxyConfigured()
      ? new EnvHttpProxyAgent({ ...common, connect, clientFactory: guardedProxyClient(this.policy), ...(ca ? { requestTls: { ca } } : {}) })
      : new Agent({ ...common, connect });
    this.plainHttp = new Set(opts.plainHttp ?? []);
    this.tokenRealms = new Set((opts.tokenRealms ?? []).map((h) => h.toLowerCase()));
    this.limiter = new HostLimiter(perHost);
    const hosts = opts.maxRegistryHosts ?? 1000;
    this.bearer = new LRUCache({ max: hosts });
    this.tokens = new LRUCache({ max: Math.max(1000, hosts * 10) });
    this.label = opts.label ?? ((d) => d);
  }

  async close(): Promise<void> { await Promise.all([this.dispatcher.close(), this.storage?.close()]); }
  async destroy(): Promise<void> { await Promise.all([this.dispatcher.destroy(), this.storage?.destroy()]); }

  /** For redirects to blob storage: the system's CAs (not registry.caFile), no proxy, the same dial check. */
  private storage: Agent | undefined;

  /**
   * A GET of a URL a registry redirected to (blob storage, pre-signed): no credentials,
   * and the address check of every other dial, since the registry chose the URL.
   */
  storageGet(url: string, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    // No proxy here: the guarded connector judges the literal or each resolved address.
    this.storage ??= new Agent({ keepAliveTimeout: 30_000, connect: guardedConnector(this.policy, {}) });
    return request(url, { method: "GET", signal, dispatcher: this.storage, headers: { "user-agent": this.opts.userAgent ?? "apparate" } });
  }

  /** Registries with requests in flight or queued. */
  get activeRegistries(): number { return this.limiter.hosts; }
  get rememberedRegistries(): number { return this.bearer.size; }

  origin(domain: string): string {
    const mapped = this.opts.endpoints?.get(domain);
    if (mapped) return mapped;
    if (domain === "docker.io") return DOCKER_HUB_ENDPOINT;
    return `${this.plainHttp.has(domain) ? "http" : "https"}://${domain}`;
  }

  /**
   * Runs `task` in one of the registry's request slots (as checkManifest does); resolves
   * undefined, without running it, when `wanted()` is false by the time a slot is free.
   * The digest-link lookups (link-resolver.ts) share the slots with the tag lookups.
   */
  runLimited<T>(domain: string, task: () => Promise<T>, wanted?: () => boolean): Promise<T | undefined> {
    return this.limiter.run(domain, task, wanted);
  }

  /**
   * Checks one manifest, trying each credential in order (then anonymous if none).
   * 401/403 with one credential moves on to the next, as kubelet does with pull secrets.
   * Waits for a free slot of the registry first; the request timers start when sent.
   */
  async checkManifest(ref: ImageReference, tag: string, creds: readonly Credential[], opts: CheckOptions = {}): Promise<ClientAnswer> {
    const answer = await this.limiter.run(ref.domain, async (): Promise<ClientAnswer> => {
      const sentAt = performance.now();
      const attempts: Array<Credential | undefined> = creds.length > 0 ? [...creds] : [undefined];
      let last: ClientAnswer | undefined;
      for (const cred of attempts) {
        last = await this.checkWith(ref, tag, cred);
        const r = last.result;
        if (!(r.kind === "unknown" && r.reason.startsWith("unauthorized"))) break;
      }
      return { ...last!, sentAt };
    }, opts.wanted);
    return answer ?? { result: { kind: "unknown", reason: "deadline exceeded" }, registryFault: false, abandoned: true };
  }

  private async checkWith(ref: ImageReference, tag: string, cred: Credential | undefined): Promise<ClientAnswer> {
    const origin = this.origin(ref.domain);
    const url = `${origin}/v2/${ref.path}/manifests/${encodeURIComponent(tag)}`;
    const scope = `repository:${ref.path}:pull`;
    let authz = await this.authorizationFor(ref.domain, scope, cred);
    for (let round = 0; round < 2; round++) {
      let res = await this.send("HEAD", url, authz, ref.domain);
      if (res.status === 405 || res.status === 501 || res.status === 400 || (res.status === 200 && !res.contentType)) {
        // Some registries (and proxies in front of them) answer HEAD wrongly: ask with GET.
        res = await this.send("GET", url, authz, ref.domain);
      }
      if (res.status === 401 && round === 0) {
        const challenges = parseChallenges(res.wwwAuthenticate);
        const bearer = challenges.find((c) => c.scheme === "bearer");
        const basic = challenges.find((c) => c.scheme === "basic");
        if (bearer) {
          const t = await this.fetchToken(ref.domain, bearer, scope, cred);
          if (t.error) return t.error;
          this.bearer.set(ref.domain, bearer);
          authz = `Bearer ${t.token}`;
          continue;
        }
        if (basic && cred) { authz = basicAuth(cred); continue; }
        return { result: { kind: "unknown", reason: "unauthorized: registry requires credentials" }, registryFault: false };
      }
      return { result: interpret(res), registryFault: res.status === 0 ? !(res.refused || res.stalled) : res.status === 429 || res.status >= 500 };
    }
    return { result: { kind: "unknown", reason: "unauthorized: credentials rejected" }, registryFault: false };
  }

  private async authorizationFor(domain: string, scope: string, cred: Credential | undefined): Promise<string | undefined> {
    const challenge = this.bearer.get(domain);
    if (challenge) {
      const t = await this.fetchToken(domain, challenge, scope, cred);
      if (!t.error) return `Bearer ${t.token}`;
    }
    return undefined;
  }

  private async fetchToken(domain: string, ch: Challenge, scope: string, cred: Credential | undefined): Promise<{ token: string; error?: undefined } | { error: ClientAnswer; token?: undefined }> {
    const realm = ch.params.realm;
    if (!realm) return { error: { result: { kind: "unknown", reason: "registry sent a Bearer challenge without realm" }, registryFault: true } };
    const decision = decideRealm(realm, domain, this.origin(domain), { plainHttp: this.plainHttp, tokenRealms: this.tokenRealms });
    // A refused realm is never contacted, with or without a credential.
    if (!decision.ok) return { error: { result: { kind: "unknown", reason: decision.reason }, registryFault: false } };
    const service = ch.params.service;
    const key = `${decision.url.href}|${service ?? ""}|${scope}|${credentialFingerprint(cred ? [cred] : [])}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return { token: cached.token };
    const u = new URL(decision.url);
    if (service) u.searchParams.set("service", service);
    u.searchParams.set("scope", scope);
    this.opts.metrics?.registryRequests.inc({ registry: this.label(domain), kind: "token" });
    const timer = this.timer();
    try {
      this.policy.assertLiteral(u.hostname, u.port || (u.protocol === "https:" ? "443" : "80"));
      const res = await request(u, {
        method: "GET", dispatcher: this.dispatcher, signal: timer.signal,
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
      let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
      // The parser's message quotes the body: never used as a reason.
      try { body = JSON.parse(text) as typeof body; } catch { body = {}; }
      const token = typeof body.token === "string" ? body.token : typeof body.access_token === "string" ? body.access_token : undefined;
      if (!token || !TOKEN_SYNTAX.test(token)) return { error: { result: { kind: "unknown", reason: "token service sent no usable token" }, registryFault: true } };
      const ttl = Math.max(10, typeof body.expires_in === "number" && Number.isFinite(body.expires_in) ? body.expires_in : 60);
      // Renew early so a token never expires in flight.
      this.tokens.set(key, { token, expiresAt: Date.now() + (ttl - 5) * 1000 });
      return { token };
    } catch (err) {
      return { error: { result: { kind: "unknown", reason: `token request failed: ${errorReason(err)}` }, registryFault: !(err instanceof AddressRefusedError || timer.stalled) } };
    } finally {
      timer.clear();
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
      this.opts.metrics?.registryRequests.inc({ registry: this.label(domain), kind: "push" });
      const u = new URL(req.url);
      this.policy.assertLiteral(u.hostname, u.port || (u.protocol === "https:" ? "443" : "80"));
      return request(req.url, {
        method: req.method, dispatcher: this.dispatcher,
        signal: timeoutMs > 0 ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : signal,
        headers: { "user-agent": this.opts.userAgent ?? "apparate", ...req.headers, ...(authz ? { authorization: authz } : {}) },
        ...(req.body ? { body: req.body } : {}),
      });
    };
    let authz = this.basicDomains.has(domain) && cred ? basicAuth(cred) : await this.authorizationFor(domain, scope, cred);
    const res = await send(authz);
    if (res.statusCode !== 401) return res;
    const challenges = parseChallenges(res.headers["www-authenticate"]);
    await res.body.dump();
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer) {
      this.bearer.set(domain, bearer);
      const t = await this.fetchToken(domain, bearer, scope, cred);
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

  /**
   * One request's timer, started when the request is sent. It counts only time the
   * event loop was free to read the answer: when it fires late (the process was busy,
   * e.g. planning a huge pod), the answer may be sitting unread in the socket, so the
   * time lost is given back, a few times at most. A request that then times out all
   * the same was judged under a stall: `stalled`, and never the registry's fault.
   */
  private timer(): { signal: AbortSignal; clear(): void; readonly stalled: boolean } {
    const ac = new AbortController();
    const ms = this.opts.requestTimeoutMs;
    let due = performance.now() + ms;
    let stalls = 0;
    const state = { signal: ac.signal, clear: () => clearTimeout(t), stalled: false };
    const fire = () => {
      const late = performance.now() - due;
      if (late > Math.max(STALL_MIN_MS, ms * STALL_FRACTION)) {
        state.stalled = true;
        if (stalls++ < MAX_STALL_EXTENSIONS) { due = performance.now() + Math.min(late, ms); t = setTimeout(fire, Math.min(late, ms)); return; }
      }
      ac.abort(new DOMException("registry request timed out", "TimeoutError"));
    };
    let t = setTimeout(fire, ms);
    return state;
  }

  private async send(method: "HEAD" | "GET", url: string, authz: string | undefined, domain: string): Promise<RawAnswer> {
    this.opts.metrics?.registryRequests.inc({ registry: this.label(domain), kind: "manifest" });
    const timer = this.timer();
    try {
      const u = new URL(url);
      this.policy.assertLiteral(u.hostname, u.port || (u.protocol === "https:" ? "443" : "80"));
      const res = await request(url, {
        method, dispatcher: this.dispatcher, signal: timer.signal,
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
      return { status: 0, error: errorReason(err), refused: err instanceof AddressRefusedError, stalled: timer.stalled };
    } finally {
      timer.clear();
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
  /** Refused by apparate's own dial policy: not the registry's fault. */
  refused?: boolean;
  /** Timed out while apparate's own event loop was stalled: not the registry's fault either. */
  stalled?: boolean;
}

function interpret(res: RawAnswer): LookupResult {
  if (res.status === 0) return { kind: "unknown", reason: res.error ?? "request failed" };
  if (res.status === 200) {
    const mt = res.contentType ?? "";
    if (OCI_MEDIA_TYPES.has(mt)) return { kind: "exists", mediaType: mt, ...(res.digest && DIGEST_SYNTAX.test(res.digest) ? { digest: res.digest } : {}) };
    // Only media types apparate knows are named: the header is the registry's text.
    return { kind: "absent", reason: `exists but is not an OCI image (${DOCKER_TYPES.get(mt) ?? (mt ? "another media type" : "no media type")}); only OCI images are accelerated` };
  }
  if (res.status === 404) return { kind: "absent", reason: "does not exist" };
  if (res.status === 401) return { kind: "unknown", reason: "unauthorized: credentials rejected" };
  if (res.status === 403) return { kind: "unknown", reason: "unauthorized: access denied (403)" };
  if (res.status === 429) return { kind: "unknown", reason: `rate limited (429${res.retryAfter && /^\d{1,6}$/.test(res.retryAfter) ? `, retry after ${res.retryAfter}s` : ""})` };
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

/**
 * A reason apparate writes for a failed request: error names and codes from Node and
 * undici only. Messages are left out: a TLS or parser message can quote what the
 * server sent.
 */
export function errorReason(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string; name?: string; message?: string } };
  if (e?.name === "TimeoutError" || e?.cause?.name === "TimeoutError") return "timed out";
  if (err instanceof AddressRefusedError) return err.message;
  if (e?.cause instanceof AddressRefusedError) return e.cause.message;
  // The proxy could not (or would not) open the tunnel: its status says what the port
  // behind it did, so only "unreachable" is written.
  if (typeof e?.message === "string" && e.message.startsWith("Proxy response")) return "unreachable through the proxy";
  if (e?.name === "AbortError") return "aborted";
  const code = e?.code ?? e?.cause?.code;
  return typeof code === "string" && /^[A-Z][A-Z0-9_]{1,63}$/.test(code) ? code : "request failed";
}
