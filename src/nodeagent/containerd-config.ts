// containerd's config.toml, edited as TOML (smol-toml), never by text appends. Pure.
// Version 2 (containerd 1.6/1.7) and version 3 (containerd 2.x) name the CRI
// sections differently; registry mirrors move from the legacy `registry.mirrors`
// table into hosts.toml first, because containerd refuses both with config_path.
import { parse, stringify } from "smol-toml";
import { ApparateError } from "../errors.js";

export class ContainerdConfigError extends ApparateError {}

type Table = Record<string, any>;

export interface EditOptions {
  /** containerd's major version (1 or 2): decides the config schema. */
  containerdMajor: number;
  snapshotterSocket: string;
  certsDir: string;
  snapshotterName?: string;
}

export interface EditResult {
  text: string;
  changed: boolean;
  /** Legacy registry.mirrors entries moved out: host -> endpoints, for hosts.toml. */
  movedMirrors: Record<string, string[]>;
}

function table(root: Table, path: string[]): Table {
  let t = root;
  for (const p of path) {
    if (t[p] === undefined) t[p] = {};
    if (typeof t[p] !== "object" || Array.isArray(t[p])) throw new ContainerdConfigError("config-shape", `${path.join(".")} is not a table`, path);
    t = t[p];
  }
  return t;
}

function get(root: Table, path: string[]): any {
  let t: any = root;
  for (const p of path) { if (t === undefined || t === null || typeof t !== "object") return undefined; t = t[p]; }
  return t;
}

export function parseConfig(text: string): Table {
  try {
    return text.trim() === "" ? {} : (parse(text) as Table);
  } catch (err) {
    throw new ContainerdConfigError("config-toml", `containerd config is not valid TOML: ${(err as Error).message}`, undefined, { cause: err });
  }
}

/** The config schema version a file uses, and the one apparate writes for this containerd. */
export function schemaVersionFor(major: number): number {
  return major >= 2 ? 3 : 2;
}

function criPaths(version: number) {
  return version >= 3
    ? { images: ["plugins", "io.containerd.cri.v1.images"], registry: ["plugins", "io.containerd.cri.v1.images", "registry"] }
    : { images: ["plugins", "io.containerd.grpc.v1.cri", "containerd"], registry: ["plugins", "io.containerd.grpc.v1.cri", "registry"] };
}

/** Applies apparate's keys. Idempotent: a second call reports no change. */
export function applyApparate(text: string, o: EditOptions): EditResult {
  const doc = parseConfig(text);
  const before = stringify(doc);
  const want = schemaVersionFor(o.containerdMajor);
  const have = doc.version === undefined ? 1 : Number(doc.version);
  if (text.trim() !== "" && have !== want) {
    throw new ContainerdConfigError("config-version", `containerd ${o.containerdMajor}.x needs config version ${want}, the file has version ${have}; migrate it first (containerd config migrate)`, have);
  }
  doc.version = want;
  const name = o.snapshotterName ?? "stargz";
  table(doc, ["proxy_plugins", name]).type = "snapshot";
  table(doc, ["proxy_plugins", name]).address = o.snapshotterSocket;
  const p = criPaths(want);
  const images = table(doc, p.images);
  images.snapshotter = name;
  images.disable_snapshot_annotations = false;
  images.discard_unpacked_layers = false;
  const registry = table(doc, p.registry);
  const moved: Record<string, string[]> = {};
  const legacy = registry.mirrors as Record<string, { endpoint?: string[] }> | undefined;
  if (legacy && typeof legacy === "object") {
    for (const [host, m] of Object.entries(legacy)) moved[host] = Array.isArray(m?.endpoint) ? m.endpoint : [];
    delete registry.mirrors;
  }
  registry.config_path = o.certsDir;
  const text2 = stringify(doc);
  return { text: text2, changed: text2 !== before || text.trim() === "", movedMirrors: moved };
}

/** Removes only apparate's keys (used when the live file changed after apparate wrote it). */
export function removeApparate(text: string, o: EditOptions): string {
  const doc = parseConfig(text);
  const name = o.snapshotterName ?? "stargz";
  if (doc.proxy_plugins?.[name]) delete doc.proxy_plugins[name];
  if (doc.proxy_plugins && Object.keys(doc.proxy_plugins).length === 0) delete doc.proxy_plugins;
  const p = criPaths(Number(doc.version ?? 2));
  const images = get(doc, p.images);
  if (images?.snapshotter === name) delete images.snapshotter;
  return stringify(doc);
}

export function readKey(text: string, path: string[]): unknown {
  return get(parseConfig(text), path);
}
