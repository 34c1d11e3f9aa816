// The Kubernetes API stand-in: there is no kube-apiserver on these machines, so the
// tests run @kubernetes/client-node, unmodified, against this small HTTP(S) server
// that speaks the real REST and watch protocol for the resources apparate uses:
// get, list (label/field selectors), watch (resourceVersion, bookmarks, 410 Gone),
// create, update (409 on a stale resourceVersion), patch (JSON, merge, strategic for
// lists keyed by name), delete (propagationPolicy: Foreground shows deletionTimestamp
// first, as the garbage collector does). batch/v1 Jobs get the API server's defaults
// and name rule; the test's job controller (job-controller.ts) plays the Job
// controller. It can go away and come back on the same port.
// At cluster scale (100,000 pods): lists are paged (limit/continue over a snapshot
// taken by the first page, 410 Expired once it is forgotten), clients may ask for
// metadata only (Accept: ...;as=PartialObjectMetadataList / PartialObjectMetadata), and a
// selector watch sees an object that stops matching as DELETED and one that starts
// matching as ADDED, as kube-apiserver's watch cache sends them.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { randomUUID } from "node:crypto";
import jsonpatch from "fast-json-patch";
import { KubeConfig } from "@kubernetes/client-node";
import { freePort } from "./ports.js";

export interface ResourceType { group: string; version: string; plural: string; kind: string; namespaced: boolean; /** metadata.generation counts spec changes, as for workloads */ generation?: boolean }
type Obj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [k: string]: any };
interface WatchEvent { type: "ADDED" | "MODIFIED" | "DELETED"; object: Obj; rv: number; /** the object before a MODIFIED */ prev?: Obj }

/** The watch event a selector watch sees for `ev` (kube-apiserver's cacheWatcher): undefined when none. */
function selected(ev: WatchEvent, match: (o: Obj) => boolean): WatchEvent["type"] | undefined {
  const now = match(ev.object);
  if (ev.type !== "MODIFIED" || !ev.prev) return now ? ev.type : undefined;
  const before = match(ev.prev);
  if (before && now) return "MODIFIED";
  if (now) return "ADDED";
  if (before) return "DELETED";
  return undefined;
}

const META_API = "meta.k8s.io/v1";
/** Whether an Accept header asks for metadata only (client-go's metadata client's form). */
function wantsMetadata(accept: string | undefined, kind: "PartialObjectMetadata" | "PartialObjectMetadataList"): boolean {
  return (accept ?? "").split(",").some((m) => m.split(";").map((x) => x.trim()).includes(`as=${kind}`));
}
const metadataOf = (o: Obj): Obj => ({ apiVersion: META_API, kind: "PartialObjectMetadata", metadata: o.metadata });

export const BUILTIN_TYPES: ResourceType[] = [
  { group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false },
  { group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true },
  { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true },
  { group: "", version: "v1", plural: "events", kind: "Event", namespaced: true },
  { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false },
  { group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true },
  { group: "apps", version: "v1", plural: "daemonsets", kind: "DaemonSet", namespaced: true, generation: true },
  { group: "admissionregistration.k8s.io", version: "v1", plural: "mutatingwebhookconfigurations", kind: "MutatingWebhookConfiguration", namespaced: false },
  { group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true },
  { group: "batch", version: "v1", plural: "jobs", kind: "Job", namespaced: true, generation: true },
  { group: "eks.cloud.tencent.com", version: "v1", plural: "imagecaches", kind: "ImageCache", namespaced: false },
];

/** A DNS-1123 label (RFC 1123), as the API server checks names that become label values. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** What kube-apiserver refuses in a Job or fills in (pkg/apis/batch validation and defaults, the parts apparate relies on). */
function admitJob(o: Obj): string | undefined {
  const name = o.metadata.name as string;
  // The Job's name becomes the job-name label of its pods: at most 63 characters.
  if (name.length > 63 || !DNS1123_LABEL.test(name)) return `metadata.name: Invalid value: "${name}": must be no more than 63 characters and a lowercase RFC 1123 label`;
  const spec = o.spec ?? {};
  const pod = spec.template?.spec;
  if (!pod?.containers?.length) return "spec.template.spec.containers: Required value";
  if (pod.restartPolicy !== "Never" && pod.restartPolicy !== "OnFailure") return `spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"`;
  if (spec.podFailurePolicy && pod.restartPolicy !== "Never") return `spec.template.spec.restartPolicy: Invalid value: "${pod.restartPolicy}": only "Never" is supported when podFailurePolicy is specified`;
  for (const [i, r] of (spec.podFailurePolicy?.rules ?? []).entries()) {
    if (!["FailJob", "Ignore", "Count", "FailIndex"].includes(r.action)) return `spec.podFailurePolicy.rules[${i}].action: Unsupported value: "${r.action}"`;
    if (r.onExitCodes?.values?.includes(0)) return `spec.podFailurePolicy.rules[${i}].onExitCodes.values: Invalid value: 0: must not be 0 for the In operator`;
  }
  const uid = o.metadata.uid ?? randomUUID();
  o.metadata.uid = uid;
  const labels = { "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name };
  spec.selector ??= { matchLabels: { "batch.kubernetes.io/controller-uid": uid } };
  spec.template.metadata = { ...spec.template.metadata, labels: { ...spec.template.metadata?.labels, ...labels } };
  spec.parallelism ??= 1;
  spec.completions ??= 1;
  spec.backoffLimit ??= 6;
  spec.completionMode ??= "NonIndexed";
  spec.suspend ??= false;
  o.spec = spec;
  o.status ??= {};
  return undefined;
}

interface Watcher { res: ServerResponse; type: ResourceType; ns?: string; match: (o: Obj) => boolean; bookmarks?: NodeJS.Timeout; metadataOnly?: boolean }

function status(code: number, reason: string, message: string) {
  return { apiVersion: "v1", kind: "Status", metadata: {}, status: "Failure", message, reason, code };
}

/** Equality, inequality and existence terms ("a=b", "a!=b", "a", "!a"), comma-joined. */
function parseSelector(sel: string | null, get: (o: Obj, k: string) => string | undefined): (o: Obj) => boolean {
  if (!sel) return () => true;
  const terms = sel.split(",").filter(Boolean).map((term): ((o: Obj) => boolean) => {
    if (term.includes("!=")) { const [k, v] = term.split("!=") as [string, string]; return (o) => get(o, k.trim()) !== v.trim(); }
    if (term.includes("=")) { const [k, v] = term.split(term.includes("==") ? "==" : "=") as [string, string]; return (o) => get(o, k.trim()) === v.trim(); }
    if (term.startsWith("!")) return (o) => get(o, term.slice(1).trim()) === undefined;
    return (o) => get(o, term.trim()) !== undefined;
  });
  return (o) => terms.every((t) => t(o));
}

/** A field selector's value: "" for a field the object does not set (spec.nodeName of an unscheduled pod). */
function fieldValue(o: Obj, path: string): string {
  let cur: any = o;
  for (const p of path.split(".")) cur = cur?.[p];
  return cur === undefined || cur === null ? "" : String(cur);
}

/** RFC 7386 merge patch, plus strategic merge of object lists keyed by "name". */
function mergePatch(target: any, patch: any, strategic: boolean): any {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) {
    if (strategic && Array.isArray(patch) && Array.isArray(target) && patch.every((p) => p && typeof p === "object" && "name" in p)) {
      const out = target.map((t: any) => structuredClone(t));
      for (const p of patch) {
        const i = out.findIndex((t: any) => t?.name === p.name);
        if (i >= 0) out[i] = mergePatch(out[i], p, true); else out.push(p);
      }
      return out;
    }
    return structuredClone(patch);
  }
  const out = target && typeof target === "object" && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]; else out[k] = mergePatch(out[k], v, strategic);
  }
  return out;
}

export class KubeApiStandIn {
  readonly types: ResourceType[];
  private readonly store = new Map<string, Map<string, Obj>>();
  private history: Map<string, WatchEvent[]> = new Map();
  /** Per type, the newest resourceVersion whose event is forgotten: a watch from before it gets 410 Gone. */
  private readonly compactedAt = new Map<string, number>();
  private readonly watchers = new Set<Watcher>();
  private rv = 100;
  private server?: Server;
  port = 0;
  /** Requests by "VERB path" (without query), for assertions. */
  readonly requests: string[] = [];
  /** Requests with their query and bearer token (which client made them), for assertions. */
  readonly calls: Array<{ method: string; path: string; query: string; accept?: string; token?: string }> = [];
  /** List snapshots by continue token's id: a paged list reads the state of its first page. */
  private readonly snapshots = new Map<string, { items: Obj[]; rv: number; at: number }>();
  /** How long a paged list's snapshot is kept (kube-apiserver: about 5 minutes of etcd history). */
  snapshotTtlMs = 300_000;
  bookmarkIntervalMs = 200;
  /** Watches answered with 410 Gone. */
  goneCount = 0;
  /** Deletes made through the API, with their propagation policy (query or DeleteOptions body). */
  readonly deletions: Array<{ plural: string; namespace?: string; name: string; propagationPolicy?: string }> = [];
  private readonly listeners = new Set<(type: "ADDED" | "MODIFIED" | "DELETED", plural: string, object: Obj) => void>();

  constructor(extraTypes: ResourceType[] = [], private readonly tls?: { cert: string; key: string }) {
    this.types = [...BUILTIN_TYPES, ...extraTypes];
    for (const t of this.types) { this.store.set(this.typeKey(t), new Map()); this.history.set(this.typeKey(t), []); }
  }

  get url(): string { return `${this.tls ? "https" : "http"}://127.0.0.1:${this.port}`; }

  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    const handler = (req: IncomingMessage, res: ServerResponse) => { void this.handle(req, res); };
    this.server = this.tls ? createHttpsServer(this.tls, handler) : createHttpServer(handler);
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", () => r()));
  }

  /** Goes away: closes every connection (watches included). start() brings it back on the same port. */
  async stop(): Promise<void> {
    for (const w of this.watchers) { if (w.bookmarks) clearInterval(w.bookmarks); w.res.destroy(); }
    this.watchers.clear();
    if (!this.server) return;
    const s = this.server;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Ends every open watch cleanly (clients re-watch from their resourceVersion). */
  dropWatches(): void {
    for (const w of this.watchers) { if (w.bookmarks) clearInterval(w.bookmarks); w.res.end(); }
    this.watchers.clear();
  }

  /** Forgets the event history: watches from an older resourceVersion now get 410 Gone. */
  compact(): void {
    this.rv += 10;
    for (const k of this.history.keys()) { this.history.set(k, []); this.compactedAt.set(k, this.rv); }
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "standin", server: this.url, skipTLSVerify: true }],
      users: [{ name: "apparate", token: "standin-token" }],
      contexts: [{ name: "standin", cluster: "standin", user: "apparate" }],
      currentContext: "standin",
    });
    return kc;
  }

  /** Every change, in order, as it happens (a test-side controller reacts to them). Returns the unsubscribe. */
  onChange(fn: (type: "ADDED" | "MODIFIED" | "DELETED", plural: string, object: Obj) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  // ---- direct access for test setup and assertions (same effects as the API) ----

  type(plural: string, group = ""): ResourceType {
    const t = this.types.find((x) => x.plural === plural && x.group === group);
    if (!t) throw new Error(`unknown resource ${group}/${plural}`);
    return t;
  }

  put(plural: string, obj: Obj, group = ""): Obj {
    const t = this.type(plural, group);
    const key = this.objKey(t, obj.metadata.namespace, obj.metadata.name);
    const exists = this.store.get(this.typeKey(t))!.has(key);
    return this.write(t, key, obj, exists ? "MODIFIED" : "ADDED");
  }

  /**
   * A cluster's starting state in bulk (100,000 pods): the objects are stored as given,
   * not copied, and make no watch events (a watch from before gets 410 Gone, as after
   * compaction).
   */
  load(plural: string, objects: Obj[], group = ""): void {
    const t = this.type(plural, group);
    const bucket = this.store.get(this.typeKey(t))!;
    const apiVersion = t.group ? `${t.group}/${t.version}` : t.version;
    const created = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    for (const o of objects) {
      o.apiVersion = apiVersion;
      o.kind = t.kind;
      o.metadata.uid ??= randomUUID();
      o.metadata.creationTimestamp ??= created;
      if (t.namespaced) o.metadata.namespace ??= "default"; else delete o.metadata.namespace;
      o.metadata.resourceVersion = String(++this.rv);
      bucket.set(this.objKey(t, o.metadata.namespace, o.metadata.name), o);
    }
    this.history.set(this.typeKey(t), []);
    this.compactedAt.set(this.typeKey(t), this.rv);
  }

  get(plural: string, name: string, namespace?: string, group = ""): Obj | undefined {
    const t = this.type(plural, group);
    return structuredClone(this.store.get(this.typeKey(t))!.get(this.objKey(t, namespace, name)));
  }

  list(plural: string, group = ""): Obj[] {
    return [...this.store.get(this.typeKey(this.type(plural, group)))!.values()].map((o) => structuredClone(o));
  }

  remove(plural: string, name: string, namespace?: string, group = ""): void {
    const t = this.type(plural, group);
    const key = this.objKey(t, namespace, name);
    const o = this.store.get(this.typeKey(t))!.get(key);
    if (!o) return;
    this.store.get(this.typeKey(t))!.delete(key);
    this.emit(t, { type: "DELETED", object: { ...o, metadata: { ...o.metadata, resourceVersion: String(++this.rv) } }, rv: this.rv });
  }

  // ---- internals ----

  private typeKey(t: ResourceType): string { return `${t.group}/${t.plural}`; }
  private objKey(t: ResourceType, ns: string | undefined, name: string): string { return t.namespaced ? `${ns ?? "default"}/${name}` : name; }

  private write(t: ResourceType, key: string, obj: Obj, type: "ADDED" | "MODIFIED"): Obj {
    const prev = this.store.get(this.typeKey(t))!.get(key);
    const o = structuredClone(obj);
    o.apiVersion = t.group ? `${t.group}/${t.version}` : t.version;
    o.kind = t.kind;
    o.metadata = { ...o.metadata };
    o.metadata.uid = prev?.metadata.uid ?? o.metadata.uid ?? randomUUID();
    o.metadata.creationTimestamp = prev?.metadata.creationTimestamp ?? o.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z");
    if (t.generation) {
      const prevGen = prev?.metadata.generation ?? 0;
      o.metadata.generation = !prev ? 1 : JSON.stringify(prev.spec) !== JSON.stringify(o.spec) ? prevGen + 1 : prevGen;
    }
    if (!t.namespaced) delete o.metadata.namespace;
    else o.metadata.namespace ??= "default";
    o.metadata.resourceVersion = String(++this.rv);
    this.store.get(this.typeKey(t))!.set(key, o);
    this.emit(t, { type, object: o, rv: this.rv, ...(prev ? { prev } : {}) });
    return structuredClone(o);
  }

  private emit(t: ResourceType, ev: WatchEvent): void {
    const h = this.history.get(this.typeKey(t))!;
    h.push(ev);
    if (h.length > 1000) this.compactedAt.set(this.typeKey(t), h.shift()!.rv);
    for (const l of this.listeners) l(ev.type, t.plural, structuredClone(ev.object));
    for (const w of this.watchers) {
      if (w.type !== t) continue;
      if (w.ns && ev.object.metadata.namespace !== w.ns) continue;
      this.send1(w, ev);
    }
  }

  private send1(w: Watcher, ev: WatchEvent): void {
    const type = selected(ev, w.match);
    if (type) w.res.write(JSON.stringify({ type, object: w.metadataOnly ? metadataOf(ev.object) : ev.object }) + "\n");
  }

  private route(path: string): { t: ResourceType; ns?: string; name?: string; sub?: string } | undefined {
    const parts = path.split("/").filter(Boolean);
    let group = "";
    let version: string;
    let rest: string[];
    if (parts[0] === "api") { version = parts[1]!; rest = parts.slice(2); }
    else if (parts[0] === "apis") { group = parts[1]!; version = parts[2]!; rest = parts.slice(3); }
    else return undefined;
    let ns: string | undefined;
    if (rest[0] === "namespaces" && rest.length >= 3) { ns = rest[1]; rest = rest.slice(2); }
    const t = this.types.find((x) => x.group === group && x.version === version && x.plural === rest[0]);
    if (!t) return undefined;
    return { t, ...(ns ? { ns } : {}), ...(rest[1] ? { name: rest[1] } : {}), ...(rest[2] ? { sub: rest[2] } : {}) };
  }

  private matcher(q: URLSearchParams): (o: Obj) => boolean {
    const labels = parseSelector(q.get("labelSelector"), (o, k) => o.metadata.labels?.[k]);
    const fields = parseSelector(q.get("fieldSelector"), fieldValue);
    return (o) => labels(o) && fields(o);
  }

  private async body(req: IncomingMessage): Promise<any> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    return text ? JSON.parse(text) : undefined;
  }

  private send(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? "/", "http://x");
    this.requests.push(`${req.method} ${u.pathname}`);
    const auth = req.headers.authorization;
    this.calls.push({ method: req.method ?? "", path: u.pathname, query: u.search, ...(req.headers.accept ? { accept: req.headers.accept } : {}), ...(auth?.startsWith("Bearer ") ? { token: auth.slice(7) } : {}) });
    const r = this.route(u.pathname);
    if (!r) { this.send(res, 404, status(404, "NotFound", `the server could not find the requested resource ${u.pathname}`)); return; }
    const { t, ns, name } = r;
    const bucket = this.store.get(this.typeKey(t))!;
    try {
      switch (req.method) {
        case "GET": {
          if (name) {
            const o = bucket.get(this.objKey(t, ns, name));
            if (!o) { this.send(res, 404, status(404, "NotFound", `${t.plural} "${name}" not found`)); return; }
            this.send(res, 200, wantsMetadata(req.headers.accept, "PartialObjectMetadata") ? metadataOf(o) : o);
            return;
          }
          const match = this.matcher(u.searchParams);
          if (u.searchParams.get("watch") === "true" || u.searchParams.get("watch") === "1") { this.watch(req, res, t, ns, match, u.searchParams); return; }
          this.serveList(req, res, t, bucket, ns, match, u.searchParams);
          return;
        }
        case "POST": {
          const o = (await this.body(req)) as Obj;
          o.metadata ??= {};
          if (!o.metadata.name && o.metadata.generateName) o.metadata.name = o.metadata.generateName + randomUUID().slice(0, 5);
          if (!o.metadata.name) { this.send(res, 422, status(422, "Invalid", "metadata.name: Required value")); return; }
          if (t.namespaced) o.metadata.namespace = ns ?? o.metadata.namespace;
          const key = this.objKey(t, o.metadata.namespace, o.metadata.name);
          if (bucket.has(key)) { this.send(res, 409, status(409, "AlreadyExists", `${t.plural} "${o.metadata.name}" already exists`)); return; }
          delete o.metadata.resourceVersion;
          if (t.group === "batch" && t.plural === "jobs") {
            const invalid = admitJob(o);
            if (invalid) { this.send(res, 422, status(422, "Invalid", `Job.batch "${o.metadata.name}" is invalid: ${invalid}`)); return; }
          }
          this.send(res, 201, this.write(t, key, o, "ADDED"));
          return;
        }
        case "PUT": {
          const o = (await this.body(req)) as Obj;
          const key = this.objKey(t, ns, name!);
          const cur = bucket.get(key);
          if (!cur) { this.send(res, 404, status(404, "NotFound", `${t.plural} "${name}" not found`)); return; }
          if (o.metadata?.resourceVersion && o.metadata.resourceVersion !== cur.metadata.resourceVersion) {
            this.send(res, 409, status(409, "Conflict", `Operation cannot be fulfilled on ${t.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`));
            return;
          }
          this.send(res, 200, this.write(t, key, { ...o, metadata: { ...o.metadata, namespace: ns } }, "MODIFIED"));
          return;
        }
        case "PATCH": {
          const key = this.objKey(t, ns, name!);
          const cur = bucket.get(key);
          if (!cur) { this.send(res, 404, status(404, "NotFound", `${t.plural} "${name}" not found`)); return; }
          const ct = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
          const patch = await this.body(req);
          let next: Obj;
          if (ct === "application/json-patch+json") next = jsonpatch.applyPatch(structuredClone(cur), patch, true, false).newDocument;
          else if (ct === "application/merge-patch+json") next = mergePatch(cur, patch, false);
          else if (ct === "application/strategic-merge-patch+json") next = mergePatch(cur, patch, true);
          else { this.send(res, 415, status(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${ct})`)); return; }
          if (patch?.metadata?.resourceVersion && patch.metadata.resourceVersion !== cur.metadata.resourceVersion) {
            this.send(res, 409, status(409, "Conflict", "the object has been modified")); return;
          }
          this.send(res, 200, this.write(t, key, next, "MODIFIED"));
          return;
        }
        case "DELETE": {
          const key = this.objKey(t, ns, name!);
          const cur = bucket.get(key);
          if (!cur) { this.send(res, 404, status(404, "NotFound", `${t.plural} "${name}" not found`)); return; }
          const opts = (await this.body(req)) as { propagationPolicy?: string } | undefined;
          const policy = u.searchParams.get("propagationPolicy") ?? opts?.propagationPolicy ?? undefined;
          if (policy !== undefined && !["Foreground", "Background", "Orphan"].includes(policy)) {
            this.send(res, 400, status(400, "BadRequest", `propagationPolicy: Unsupported value: "${policy}": supported values: "Foreground", "Background", "Orphan"`)); return;
          }
          this.deletions.push({ plural: t.plural, ...(ns ? { namespace: ns } : {}), name: name!, ...(policy ? { propagationPolicy: policy } : {}) });
          if (policy === "Foreground") {
            // The garbage collector's foreground deletion: marked first, gone when its dependents are.
            const marked = this.write(t, key, { ...cur, metadata: { ...cur.metadata, deletionTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"), finalizers: [...(cur.metadata.finalizers ?? []), "foregroundDeletion"] } }, "MODIFIED");
            setImmediate(() => this.remove(t.plural, name!, ns, t.group));
            this.send(res, 200, marked);
            return;
          }
          this.remove(t.plural, name!, ns, t.group);
          this.send(res, 200, cur);
          return;
        }
        default:
          this.send(res, 405, status(405, "MethodNotAllowed", `${req.method} is not supported`));
      }
    } catch (err) {
      this.send(res, 400, status(400, "BadRequest", (err as Error).message));
    }
  }

  /** A list, paged when asked (limit/continue) over a snapshot taken by the first page. */
  private serveList(req: IncomingMessage, res: ServerResponse, t: ResourceType, bucket: Map<string, Obj>, ns: string | undefined, match: (o: Obj) => boolean, q: URLSearchParams): void {
    const limit = Number(q.get("limit") ?? "0");
    const cont = q.get("continue");
    let snap: { items: Obj[]; rv: number; at: number };
    let offset = 0;
    let id: string;
    if (cont) {
      let token: { id?: string; offset?: number } = {};
      try { token = JSON.parse(Buffer.from(cont, "base64url").toString("utf8")) as typeof token; } catch { /* answered below */ }
      const found = token.id ? this.snapshots.get(token.id) : undefined;
      if (!found || Date.now() - found.at > this.snapshotTtlMs) {
        if (token.id) this.snapshots.delete(token.id);
        this.send(res, 410, status(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
        return;
      }
      snap = found;
      id = token.id!;
      offset = token.offset ?? 0;
    } else {
      // Objects are replaced, never changed in place, on write: the array is a consistent snapshot.
      snap = { items: [...bucket.values()].filter((o) => (!ns || o.metadata.namespace === ns) && match(o)), rv: this.rv, at: Date.now() };
      id = randomUUID();
    }
    const end = limit > 0 ? Math.min(snap.items.length, offset + limit) : snap.items.length;
    const more = end < snap.items.length;
    if (more) {
      this.snapshots.set(id, snap);
      for (const [k, v] of this.snapshots) if (Date.now() - v.at > this.snapshotTtlMs) this.snapshots.delete(k);
    } else this.snapshots.delete(id);
    const metadataOnly = wantsMetadata(req.headers.accept, "PartialObjectMetadataList");
    const page = snap.items.slice(offset, end);
    const metadata = { resourceVersion: String(snap.rv), ...(more ? { continue: Buffer.from(JSON.stringify({ id, offset: end })).toString("base64url"), remainingItemCount: snap.items.length - end } : {}) };
    if (metadataOnly) {
      res.writeHead(200, { "content-type": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1" })
        .end(JSON.stringify({ apiVersion: META_API, kind: "PartialObjectMetadataList", metadata, items: page.map(metadataOf) }));
      return;
    }
    this.send(res, 200, { apiVersion: t.group ? `${t.group}/${t.version}` : t.version, kind: `${t.kind}List`, metadata, items: page });
  }

  private watch(req: IncomingMessage, res: ServerResponse, t: ResourceType, ns: string | undefined, match: (o: Obj) => boolean, q: URLSearchParams): void {
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders();
    const from = Number(q.get("resourceVersion") ?? "0");
    const hist = this.history.get(this.typeKey(t))!;
    const compacted = this.compactedAt.get(this.typeKey(t)) ?? 0;
    if (from > 0 && from < compacted) {
      // The requested version is older than the history kept: 410 Gone, as etcd compaction gives.
      this.goneCount++;
      res.end(JSON.stringify({ type: "ERROR", object: status(410, "Expired", `too old resource version: ${from} (${compacted})`) }) + "\n");
      return;
    }
    const metadataOnly = wantsMetadata(req.headers.accept, "PartialObjectMetadata");
    const w: Watcher = { res, type: t, ...(ns ? { ns } : {}), match, ...(metadataOnly ? { metadataOnly } : {}) };
    if (from > 0) {
      for (const ev of hist) if (ev.rv > from && (!ns || ev.object.metadata.namespace === ns)) this.send1(w, ev);
    } else {
      // resourceVersion unset or 0: synthetic ADDED for the current state, then live events.
      for (const o of this.store.get(this.typeKey(t))!.values()) if ((!ns || o.metadata.namespace === ns) && match(o)) res.write(JSON.stringify({ type: "ADDED", object: metadataOnly ? metadataOf(o) : o }) + "\n");
    }
    if (q.get("allowWatchBookmarks") === "true") {
      w.bookmarks = setInterval(() => {
        res.write(JSON.stringify({ type: "BOOKMARK", object: { kind: t.kind, apiVersion: t.group ? `${t.group}/${t.version}` : t.version, metadata: { resourceVersion: String(this.rv) } } }) + "\n");
      }, this.bookmarkIntervalMs);
    }
    this.watchers.add(w);
    const done = () => { if (w.bookmarks) clearInterval(w.bookmarks); this.watchers.delete(w); };
    req.on("close", done);
    res.on("close", done);
  }
}
