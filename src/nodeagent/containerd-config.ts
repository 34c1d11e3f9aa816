// containerd's config.toml, edited as TOML (smol-toml), never by text appends. Pure.
//
// Every schema containerd reads: version 1 (no `version`, short plugin names such as
// `plugins.cri`, migrated in-process the way containerd 1.x maps a v1 plugin ID to its
// URI), version 2 (containerd 1.6/1.7) and version 3 (containerd 2.x, CRI split into
// `io.containerd.cri.v1.images` / `.runtime`). Legacy `registry.mirrors` and
// `registry.configs.<host>.tls` move into hosts.toml because containerd's CRI refuses to
// load with either of them next to `config_path`. What apparate changed is returned as
// an `EditRecord` so that uninstall can give everything back.
import { parse, stringify } from "smol-toml";
import { ApparateError } from "../errors.js";

export class ContainerdConfigError extends ApparateError {}

// biome-ignore lint/suspicious/noExplicitAny: TOML documents are untyped trees.
export type Table = Record<string, any>;

export interface EditOptions {
  /** containerd's major version (1 or 2): decides the schema written. */
  containerdMajor: number;
  snapshotterSocket: string;
  /** Where apparate writes hosts.toml when the config has no config_path of its own. */
  certsDir: string;
  snapshotterName?: string;
  /** Take over a CRI that already uses another snapshotter (nodeAgent.replaceSnapshotter). */
  replaceSnapshotter?: boolean;
  /**
   * `effective` is the binary's own `containerd config dump` (defaults filled in, a 2.x
   * binary's migration applied), not apparate's merge of the imports: decisions read it
   * in the schema the binary runs, and whether the edit takes effect is checked on the
   * candidate's dump instead of by comparing sections.
   */
  effectiveIsDump?: boolean;
  /**
   * The document the edited one is merged onto key by key (a containerd 2.x drop-in: the
   * main file with its other imports): where the keys go and whether a config_path is
   * already set are read from it, not from the drop-in alone.
   */
  mergedOnto?: Table;
}

/** One certs.d/<dir>/hosts.toml apparate derives from legacy settings. */
export interface HostsEntry {
  /** Directory name: the registry host, `_default` for the legacy wildcard "*". */
  dir: string;
  /** `server` (upstream); absent for `_default`. */
  server?: string;
  /** TLS of the upstream itself (legacy configs.<host>.tls). */
  tls?: HostTls;
  /** `overridePath`: the URL's path is the registry API root as written (containerd's hosts.toml `override_path`). */
  mirrors: { url: string; tls?: HostTls; rewrite?: Table; overridePath?: boolean }[];
}
export interface HostTls { ca?: string; client?: string | [string, string]; skip_verify?: boolean }

/** What apparate changed, kept in the state file: uninstall gives it back. */
export interface EditRecord {
  /** The file had schema version 1 and was migrated to 2. */
  migratedFromV1?: boolean;
  /** Sections of that version-1 file containerd 1.x never read, left out of the migrated file (see migrateV1). */
  ignoredV1?: string[];
  /** Values apparate overwrote (`null`: the key was absent). Paths are in the written schema. */
  previous: { path: string[]; value: unknown }[];
  /** Legacy registry tables apparate moved out (path in the written schema -> original table). */
  moved: { path: string[]; value: Table }[];
}

export interface EditResult {
  text: string;
  changed: boolean;
  record: EditRecord;
  /** hosts.toml to write, into `hostsDir` (the first directory of config_path). */
  hosts: HostsEntry[];
  hostsDir: string;
  /** Set when apparate must not take over this node; nothing else in the result applies. */
  refused?: { reason: string; message: string };
}

export const DEFAULT_SNAPSHOTTER = "overlayfs";

function table(root: Table, path: string[]): Table {
  let t = root;
  for (const p of path) {
    if (t[p] === undefined) t[p] = {};
    if (typeof t[p] !== "object" || Array.isArray(t[p])) throw new ContainerdConfigError("config-shape", `${path.join(".")} is not a table (at ${p})`, path);
    t = t[p];
  }
  return t;
}

// biome-ignore lint/suspicious/noExplicitAny: a value anywhere in a TOML tree
export function get(root: Table, path: string[]): any {
  // biome-ignore lint/suspicious/noExplicitAny: walks the untyped tree
  let t: any = root;
  for (const p of path) {
    if (t === undefined || t === null || typeof t !== "object") return undefined;
    t = t[p];
  }
  return t;
}

function del(root: Table, path: string[]): void {
  const parent = get(root, path.slice(0, -1));
  if (parent && typeof parent === "object") delete parent[path[path.length - 1]!];
  // Drop tables left empty by the removal (apparate created them).
  for (let i = path.length - 1; i > 0; i--) {
    const t = get(root, path.slice(0, i));
    if (t && typeof t === "object" && Object.keys(t).length === 0) del1(root, path.slice(0, i));
    else break;
  }
}
function del1(root: Table, path: string[]): void {
  const parent = get(root, path.slice(0, -1));
  if (parent) delete parent[path[path.length - 1]!];
}

function set(root: Table, path: string[], value: unknown): void {
  table(root, path.slice(0, -1))[path[path.length - 1]!] = value;
}

/**
 * A document as TOML text. Integers are parsed as BigInt and every JS number is written
 * as a float, so a float stays a float: containerd 1.7 refuses `sampling_ratio = 1` where
 * its own default file says `1.0` (a plain round trip through JS numbers loses the `.0`).
 */
export function renderConfig(doc: Table): string {
  // `version` set by code (migrateV1) is a JS number but a TOML integer.
  const d = typeof doc.version === "number" ? { ...doc, version: BigInt(doc.version) } : doc;
  return stringify(d, { numbersAsFloat: true });
}

export function parseConfig(text: string, name = "containerd config"): Table {
  try {
    return text.trim() === "" ? {} : (parse(text, { integersAsBigInt: true }) as Table);
  } catch (err) {
    throw new ContainerdConfigError("config-toml", `${name} is not valid TOML: ${(err as Error).message}`, undefined, { cause: err });
  }
}

/** The schema version a document uses (containerd: no `version` key means 1). */
export function versionOf(doc: Table): number {
  if (doc.version === undefined) return 1;
  const v = Number(doc.version);
  if (![1, 2, 3].includes(v)) throw new ContainerdConfigError("config-version", `containerd config version ${typeof doc.version === "string" ? JSON.stringify(doc.version) : String(doc.version)} is not one containerd reads (1, 2 or 3)`, String(doc.version));
  return v;
}

/** The config schema apparate writes for this containerd. */
export function schemaVersionFor(major: number): number {
  return major >= 2 ? 3 : 2;
}

// containerd 1.x reads a version-1 file by plugin ID; version 2 by type + ID. The
// types of the IDs containerd 1.6 registers (`ctr plugins ls` of Debian's 1.6.20).
const V1_PLUGIN_TYPES: Record<string, string> = {
  cri: "io.containerd.grpc.v1", linux: "io.containerd.runtime.v1", task: "io.containerd.runtime.v2",
  opt: "io.containerd.internal.v1", restart: "io.containerd.internal.v1", tracing: "io.containerd.internal.v1",
  scheduler: "io.containerd.gc.v1", bolt: "io.containerd.metadata.v1", cgroups: "io.containerd.monitor.v1",
  "diff-service": "io.containerd.service.v1", "tasks-service": "io.containerd.service.v1",
  "content-service": "io.containerd.service.v1", "snapshots-service": "io.containerd.service.v1",
  "images-service": "io.containerd.service.v1", "containers-service": "io.containerd.service.v1",
  "leases-service": "io.containerd.service.v1", "namespaces-service": "io.containerd.service.v1",
  "introspection-service": "io.containerd.service.v1",
  aufs: "io.containerd.snapshotter.v1", btrfs: "io.containerd.snapshotter.v1", devmapper: "io.containerd.snapshotter.v1",
  native: "io.containerd.snapshotter.v1", overlayfs: "io.containerd.snapshotter.v1", zfs: "io.containerd.snapshotter.v1",
  walking: "io.containerd.differ.v1", otlp: "io.containerd.tracing.processor.v1",
};

/** v1 plugin ID -> v2 URI, as containerd 1.x resolves it; an unknown ID is a clear error. */
export function v1PluginUri(id: string): string {
  if (id.startsWith("io.containerd.")) return id;
  const type = V1_PLUGIN_TYPES[id];
  if (!type) throw new ContainerdConfigError("config-v1-plugin", `version-1 config names plugin ${JSON.stringify(id)}, which containerd 1.6 does not register; cannot migrate it`, id);
  return `${type}.${id}`;
}

/**
 * Migrates a version-1 document to version 2 in place; returns what containerd 1.x
 * never read in it. containerd 1.x looks a version-1 file's plugin sections and
 * disabled plugins up by plugin ID only (services/server/config/config.go of 1.6:
 * `Decode`: `id := p.URI(); if c.GetVersion() == 1 { id = p.ID }`, and
 * `V1DisabledFilter` matches `r.ID`): a section named by its URI, such as
 * `plugins."io.containerd.grpc.v1.cri"` next to `plugins.cri` (minikube's v1 files),
 * is dead there. It is left out, because in a version-2 file it would count (and, named
 * like the migrated `plugins.cri`, replace it). `containerd config dump` of 1.6.20 and
 * 1.7.24 on such a file shows `plugins.cri` only.
 */
export function migrateV1(doc: Table): string[] {
  const ignored: string[] = [];
  const plugins = doc.plugins as Table | undefined;
  if (plugins) {
    const out: Table = {};
    for (const [k, v] of Object.entries(plugins)) {
      if (k.includes(".")) ignored.push(`plugins.${JSON.stringify(k)}`);
      else out[v1PluginUri(k)] = v;
    }
    doc.plugins = out;
  }
  if (Array.isArray(doc.disabled_plugins)) {
    for (const id of doc.disabled_plugins as string[]) if (id.includes(".")) ignored.push(`disabled_plugins ${JSON.stringify(id)}`);
    doc.disabled_plugins = (doc.disabled_plugins as string[]).filter((id) => !id.includes(".")).map(v1PluginUri);
  }
  if (Array.isArray(doc.required_plugins)) {
    const uri = (doc.required_plugins as string[]).find((id) => id.includes("."));
    // containerd 1.x matches required plugins by ID in a version-1 file: it would not start with this one.
    if (uri) throw new ContainerdConfigError("config-v1-plugin", `version-1 config requires plugin ${JSON.stringify(uri)} by URI, which containerd 1.x matches by ID only (it does not start with it); cannot migrate it`, uri);
    doc.required_plugins = (doc.required_plugins as string[]).map(v1PluginUri);
  }
  doc.version = 2;
  return ignored;
}

/**
 * Where apparate writes its keys in a file of schema `fileVersion` that containerd
 * `major` reads. containerd 2.x reads a version-2 file by migrating it in memory; 2.1.9
 * (checked with its `config dump` and the daemon's ImageFsInfo) carries the CRI
 * `registry` table over, and takes `containerd.snapshotter` and
 * `disable_snapshot_annotations` from the 1.x section only when that section also
 * defines `runtimes` (then they override `io.containerd.cri.v1.images`); otherwise it
 * ignores them and reads `io.containerd.cri.v1.images`, which a version-2 file may name
 * directly. So on 2.x a version-2 file stays version 2 and gets the image keys in both
 * places (the 1.x section only if the file has it), and config_path goes where the file
 * keeps its registry table (the migration replaces the images registry with it).
 */
export function editPaths(doc: Table, fileVersion: number, major: number): { plugin: string; images: string[]; registry: string[]; alsoImages?: string[] } {
  if (major < 2 || fileVersion >= 3) return criPaths(fileVersion);
  const grpcRegistry = ["plugins", "io.containerd.grpc.v1.cri", "registry"];
  const grpcContainerd = ["plugins", "io.containerd.grpc.v1.cri", "containerd"];
  const images = ["plugins", "io.containerd.cri.v1.images"];
  const legacy = get(doc, grpcContainerd);
  return {
    plugin: "io.containerd.cri.v1.images", images,
    registry: get(doc, grpcRegistry) !== undefined ? grpcRegistry : [...images, "registry"],
    ...(legacy && typeof legacy === "object" ? { alsoImages: grpcContainerd } : {}),
  };
}

/** The config_path directories containerd `major` reads from this file. */
export function registryConfigDirs(doc: Table, major: number): string[] {
  const v = get(doc, [...editPaths(doc, versionOf(doc), major).registry, "config_path"]);
  return typeof v === "string" ? v.split(":").filter((d) => d !== "") : [];
}

/** Where CRI keeps the keys apparate sets, per schema. */
export function criPaths(version: number) {
  return version >= 3
    ? { plugin: "io.containerd.cri.v1.images", images: ["plugins", "io.containerd.cri.v1.images"], registry: ["plugins", "io.containerd.cri.v1.images", "registry"] }
    : { plugin: "io.containerd.grpc.v1.cri", images: ["plugins", "io.containerd.grpc.v1.cri", "containerd"], registry: ["plugins", "io.containerd.grpc.v1.cri", "registry"] };
}

/**
 * containerd's `docker.IsLocalhost` (remotes/docker/registry.go): "localhost" or a
 * loopback IP, port ignored. Such hosts are reached over plain HTTP by default.
 */
export function isLocalhost(hostPort: string): boolean {
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(hostPort) ?? /^([^:]+)(?::\d+)?$/.exec(hostPort);
  const host = (m ? m[1]! : hostPort).toLowerCase();
  if (host === "localhost") return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true;
  return host === "::1" || /^(0+:){7}0*1$/.test(host) || /^::ffff:127\./.test(host);
}
/** The CRI legacy mirror code's `defaultScheme` (pkg/cri/server/image_pull.go of 1.6): http for localhost, else https. */
export const defaultScheme = (hostPort: string) => (isLocalhost(hostPort) ? "http" : "https");
/** The registry itself, as containerd reaches it when no mirror answers (`docker.DefaultHost` + default scheme). */
export const upstreamOf = (host: string) => (host === "docker.io" ? "https://registry-1.docker.io" : `${defaultScheme(host)}://${host}`);
export const hostsDirName = (host: string) => (host === "*" ? "_default" : host);
const endpointHost = (url: string) => url.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/\/.*$/, "");
/** The path of an endpoint URL as Go's url.Parse gives it ("" when there is none). */
const endpointPath = (url: string) => /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*([^?#]*)/i.exec(url)?.[1] ?? "";

function tlsOf(t: Table | undefined): HostTls | undefined {
  if (!t || typeof t !== "object") return undefined;
  const out: HostTls = {};
  if (typeof t.ca_file === "string" && t.ca_file !== "") out.ca = t.ca_file;
  if (typeof t.cert_file === "string" && t.cert_file !== "") out.client = typeof t.key_file === "string" && t.key_file !== "" ? [t.cert_file, t.key_file] : t.cert_file;
  if (t.insecure_skip_verify === true) out.skip_verify = true;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Legacy registry.mirrors + registry.configs.*.tls -> hosts.toml entries (pure). */
export function legacyToHosts(mirrors: Table | undefined, configs: Table | undefined): HostsEntry[] {
  const tlsByHost = new Map<string, HostTls>();
  for (const [h, c] of Object.entries(configs ?? {})) {
    const t = tlsOf((c as Table)?.tls);
    if (t) tlsByHost.set(h, t);
  }
  const entries = new Map<string, HostsEntry>();
  for (const [h, m] of Object.entries(mirrors ?? {})) {
    const endpoints: string[] = Array.isArray((m as Table)?.endpoint) ? (m as Table).endpoint : [];
    const rewrite = (m as Table)?.rewrite as Table | undefined;
    const up = h === "*" ? undefined : upstreamOf(h);
    const e: HostsEntry = { dir: hostsDirName(h), ...(up ? { server: up } : {}), mirrors: [] };
    for (const url0 of endpoints) {
      // A bare endpoint gets the CRI's default scheme (addDefaultScheme): http for localhost and loopback.
      const url = url0.includes("://") ? url0 : `${defaultScheme(endpointHost(url0))}://${url0}`;
      // The upstream listed as an endpoint is the server itself, not a mirror.
      if (up && url.replace(/\/$/, "") === up) continue;
      const tls = tlsByHost.get(endpointHost(url));
      // The legacy code uses an endpoint's path as the API root as it is ("/v2" only when
      // there is none); hosts.toml appends "/v2" to a path unless override_path is set
      // (remotes/docker/config/hosts.go parseHostConfig).
      // A bare "/" is taken as no path: the legacy code would request "/<repo>/manifests/..."
      // there (no /v2), which no registry serves, and fall back to the upstream.
      const overridePath = endpointPath(url) !== "" && endpointPath(url) !== "/";
      e.mirrors.push({ url, ...(tls ? { tls } : {}), ...(rewrite && Object.keys(rewrite).length > 0 ? { rewrite } : {}), ...(overridePath ? { overridePath } : {}) });
    }
    const own = tlsByHost.get(h);
    if (own) e.tls = own;
    entries.set(e.dir, e);
  }
  // TLS for a host that is no mirror key: its own hosts.toml (when pulled by that name).
  for (const [h, tls] of tlsByHost) {
    const dir = hostsDirName(h);
    if (!entries.has(dir)) entries.set(dir, { dir, ...(h === "*" ? {} : { server: upstreamOf(h) }), tls, mirrors: [] });
  }
  return [...entries.values()];
}

/** Which CRI snapshotter a document (of the given version) selects. */
export function criSnapshotter(doc: Table, version: number): string {
  const v = get(doc, [...criPaths(version).images, "snapshotter"]);
  return typeof v === "string" && v !== "" ? v : DEFAULT_SNAPSHOTTER;
}

/** The config_path directories (colon separated, as containerd splits them). */
export function configPathDirs(doc: Table, version: number): string[] {
  const v = get(doc, [...criPaths(version).registry, "config_path"]);
  return typeof v === "string" ? v.split(":").filter((d) => d !== "") : [];
}

/**
 * Applies apparate's keys. Idempotent: applying to its own output reports no change and
 * moves nothing. `effective` is the document after `imports` (see effectiveConfig): it
 * decides whether the node can be taken over.
 */
export function applyApparate(text: string, o: EditOptions, effective?: Table): EditResult {
  const doc = parseConfig(text);
  const before = text.trim() === "" ? "" : renderConfig(doc);
  const want = schemaVersionFor(o.containerdMajor);
  let have = text.trim() === "" ? want : versionOf(doc);
  const record: EditRecord = { previous: [], moved: [] };
  const name = o.snapshotterName ?? "stargz";
  const refuse = (reason: string, message: string): EditResult => ({ text, changed: false, record, hosts: [], hostsDir: o.certsDir, refused: { reason, message } });

  if (have === 1 && want === 2) {
    const ignored = migrateV1(doc);
    have = 2;
    record.migratedFromV1 = true;
    if (ignored.length > 0) record.ignoredV1 = ignored;
  }
  // containerd 2.x reads version 2 (migrated in memory) and 3; 1.x reads 1 and 2. (2.x reads
  // version 1 too, but apparate's migration of it is not proven against 2.x: refused.)
  const readable = o.containerdMajor >= 2 ? [2, 3] : [2];
  if (!readable.includes(have)) {
    throw new ContainerdConfigError("config-version", `containerd ${o.containerdMajor}.x reads config version ${readable.join(" or ")}, the file has version ${have}`, have);
  }
  doc.version = BigInt(have);
  const pathDoc = o.mergedOnto ?? doc;
  const p = editPaths(pathDoc, have, o.containerdMajor);

  // Decide on the effective config (after imports): what containerd will really run.
  const eff = effective ? structuredClone(effective) : doc;
  if (effective && versionOf(eff) === 1) migrateV1(eff);
  // The schema the decision reads: the dump's own, else what this binary reads the file as.
  const effPaths = effective ? criPaths(versionOf(eff)) : p;
  const disabled: string[] = Array.isArray(eff.disabled_plugins) ? eff.disabled_plugins : [];
  const criIds = o.containerdMajor >= 2 ? ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"] : ["io.containerd.grpc.v1.cri"];
  const off = disabled.find((d) => criIds.includes(d));
  if (off) {
    return refuse("CriDisabled", `containerd's CRI plugin is disabled (disabled_plugins contains ${JSON.stringify(off)}): the kubelet does not use this containerd, apparate leaves it alone`);
  }
  const snap = get(eff, [...effPaths.images, "snapshotter"]);
  const inUse = typeof snap === "string" && snap !== "" ? snap : DEFAULT_SNAPSHOTTER;
  if (inUse !== name && inUse !== DEFAULT_SNAPSHOTTER && !o.replaceSnapshotter) {
    return refuse("SnapshotterInUse", `CRI already uses the ${JSON.stringify(inUse)} snapshotter; set nodeAgent.replaceSnapshotter=true to replace it with apparate's`);
  }
  const proxy = get(eff, ["proxy_plugins", name]) as Table | undefined;
  if (proxy && proxy.address !== o.snapshotterSocket && !o.replaceSnapshotter) {
    return refuse("SnapshotterInUse", `proxy_plugins.${name} already points at ${JSON.stringify(proxy.address)}; set nodeAgent.replaceSnapshotter=true to replace it with apparate's`);
  }
  if (effective && !o.effectiveIsDump) {
    // containerd replaces a whole plugin section from an import: an edit of the main file
    // would not be what containerd runs.
    const mine = get(doc, ["plugins", p.plugin]);
    const theirs = get(eff, ["plugins", p.plugin]);
    if (!sameValue(theirs, mine)) {
      return refuse("CriSectionImported", `an imported file (imports = ${JSON.stringify(doc.imports)}) sets the CRI section plugins."${p.plugin}", which replaces the main file's; apparate edits only the main config`);
    }
  }

  const setTracked = (path: string[], value: unknown) => {
    const old = get(doc, path);
    if (sameValue(old, value)) return;
    record.previous.push({ path, value: old === undefined ? null : old });
    set(doc, path, value);
  };
  setTracked(["proxy_plugins", name], { type: "snapshot", address: o.snapshotterSocket });
  for (const images of [p.images, ...(p.alsoImages ? [p.alsoImages] : [])]) {
    setTracked([...images, "snapshotter"], name);
    // Lazy snapshotters need the image annotations; discard_unpacked_layers stays the user's.
    setTracked([...images, "disable_snapshot_annotations"], false);
  }

  const registry = get(doc, p.registry) as Table | undefined;
  const hosts = legacyToHosts(registry?.mirrors, registry?.configs);
  if (registry?.mirrors !== undefined) {
    record.moved.push({ path: [...p.registry, "mirrors"], value: registry.mirrors });
    delete registry.mirrors;
  }
  for (const [h, c] of Object.entries((registry?.configs ?? {}) as Table)) {
    if (c && typeof c === "object" && c.tls !== undefined) {
      record.moved.push({ path: [...p.registry, "configs", h, "tls"], value: c.tls });
      delete c.tls;
      if (Object.keys(c).length === 0) delete registry!.configs[h];
    }
  }
  if (registry?.configs && Object.keys(registry.configs).length === 0) delete registry.configs;
  // An existing config_path (maybe several directories) stays; apparate uses the first.
  const dirs = registryConfigDirs(pathDoc, o.containerdMajor);
  if (dirs.length === 0) setTracked([...p.registry, "config_path"], o.certsDir);
  const text2 = renderConfig(doc);
  return { text: text2, changed: text2 !== before, record, hosts, hostsDir: dirs[0] ?? o.certsDir };
}

/**
 * Takes apparate's keys out and gives back what it replaced or moved (used when the
 * live file changed after apparate wrote it, so the backup cannot simply be restored).
 * Without a record (state lost), removes only keys that are recognisably apparate's.
 */
export function removeApparate(text: string, o: { snapshotterSocket: string; snapshotterName?: string }, record?: EditRecord): string {
  const doc = parseConfig(text);
  const name = o.snapshotterName ?? "stargz";
  const version = versionOf(doc);
  const p = criPaths(version);
  if (record) {
    for (const { path, value } of [...record.previous].reverse()) {
      const now = get(doc, path);
      // A value someone changed since apparate wrote it is theirs now.
      if (!isApparateValue(path, now, name, o.snapshotterSocket)) continue;
      if (value === null) del(doc, path);
      else set(doc, path, value);
    }
    for (const { path, value } of record.moved) {
      if (get(doc, path) === undefined) set(doc, path, value);
    }
  } else {
    // Only with apparate's proxy plugin (its socket) present is a "stargz" snapshotter apparate's.
    if (get(doc, ["proxy_plugins", name, "address"]) === o.snapshotterSocket) {
      del(doc, ["proxy_plugins", name]);
      if (get(doc, [...p.images, "snapshotter"]) === name) del(doc, [...p.images, "snapshotter"]);
    }
  }
  return renderConfig(doc);
}

function isApparateValue(path: string[], v: unknown, name: string, socket: string): boolean {
  const key = path[path.length - 1];
  if (path[0] === "proxy_plugins") return (v as Table | undefined)?.address === socket;
  if (key === "snapshotter") return v === name;
  if (key === "disable_snapshot_annotations") return v === false;
  return v !== undefined;
}

/**
 * containerd's merge of `imports` (services/server/config): later files override
 * earlier ones key by key, but a proxy plugin or stream processor section from an
 * import replaces the whole section, and so does a plugin section on containerd 1.x
 * (`major` 1); 2.x merges plugin sections key by key (its `config dump` of a drop-in
 * that sets one key keeps the main file's other keys of that plugin).
 */
export function effectiveConfig(main: Table, imports: Table[], major = 1): Table {
  const out = structuredClone(main);
  const v = versionOf(main);
  for (const imp0 of imports) {
    const imp = structuredClone(imp0);
    if (versionOf(imp) === 1 && v === 2) migrateV1Import(imp);
    for (const [k, val] of Object.entries(imp)) {
      if (k === "version" || k === "imports") continue;
      if (k === "plugins" && major >= 2) out[k] = overrideMerge(out[k], val);
      else if (k === "plugins" || k === "proxy_plugins" || k === "stream_processors") {
        out[k] = { ...(out[k] ?? {}), ...(val as Table) };
      } else out[k] = deepMerge(out[k], val);
    }
  }
  return out;
}

/**
 * A version-1 (or version-less) import onto a version-2 main file, as containerd 1.x
 * reads it: short plugin IDs become URIs, and a section already named by its URI counts
 * too (unlike in a version-1 main file, see migrateV1): 1.6.20 and 1.7.24 dump Talos's
 * version-less registry part `plugins."io.containerd.grpc.v1.cri".registry` as CRI's.
 */
function migrateV1Import(doc: Table): void {
  const plugins = doc.plugins as Table | undefined;
  if (plugins) doc.plugins = Object.fromEntries(Object.entries(plugins).map(([k, v]) => [k.includes(".") ? k : v1PluginUri(k), v]));
  doc.version = 2;
}

/** Tables merged key by key, anything else (arrays too) replaced: mergo's WithOverride, as containerd 2.x merges plugin sections. */
function overrideMerge(a: unknown, b: unknown): unknown {
  const isTable = (v: unknown): v is Table => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
  if (isTable(a) && isTable(b)) {
    const o: Table = { ...a };
    for (const [k, v] of Object.entries(b)) o[k] = overrideMerge(o[k], v);
    return o;
  }
  return b;
}

function deepMerge(a: unknown, b: unknown): unknown {
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const o: Table = { ...(a as Table) };
    for (const [k, v] of Object.entries(b as Table)) o[k] = deepMerge(o[k], v);
    return o;
  }
  if (Array.isArray(a) && Array.isArray(b)) return [...a, ...b];
  return b;
}

/** Deep equality of TOML values regardless of key order and prototype (smol-toml's tables have none). */
export function sameValue(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}
function canonical(v: unknown): string {
  if (v === undefined) return "undefined";
  if (typeof v === "bigint") return `${v}`;
  if (typeof v === "number" && Number.isInteger(v)) return `${v}`; // 1n and 1 (an integer written by apparate) are the same TOML integer
  if (v === null || typeof v !== "object" || v instanceof Date) return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Table)[k])}`).join(",")}}`;
}

export function readKey(text: string, path: string[]): unknown {
  return get(parseConfig(text), path);
}
