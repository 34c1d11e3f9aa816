// Where apparate's keys go when the node's containerd config imports other files (pure).
//
// Distributions keep CRI settings in imported files (Talos: /etc/cri/conf.d, k0s:
// /etc/k0s/containerd.d/*.toml, containerd 2 distributions: conf.d/*.toml). There the
// natural, reversible edit is a file of apparate's own in the imported directory: the
// node's files stay byte-identical and uninstall deletes one file. How containerd merges
// an import decides what that file must hold (checked with `containerd config dump` of
// 1.6.20, 1.7.24 and 2.1.9):
//  - 1.x: an imported `plugins.<id>` table replaces the whole table (services/server/config
//    mergeConfig: `to.Plugins[k] = v`), so the drop-in carries the CRI section as the last
//    file that sets it has it, plus apparate's keys, and must come after that file;
//  - 2.x: imported plugin tables merge key by key, so the drop-in holds apparate's keys
//    only, in the main file's schema version (a version-3 import on a version-2 main file
//    makes 2.1.9 drop the main file's CRI settings: seen in its dump).
import { get, type Table, versionOf } from "./containerd-config.js";

/** One file containerd imports, in containerd's order (each pattern's matches sorted). */
export interface ImportedFile {
  /** Host path. */
  path: string;
  /** Index of the `imports` entry it came from. */
  pattern: number;
  doc: Table;
}

export interface DropInPlace {
  /** Host path of apparate's drop-in. */
  path: string;
  /** Index of the `imports` entry whose glob matches it. */
  pattern: number;
}

export type DropInDecision =
  | { mode: "main" }
  | { mode: "dropin"; place: DropInPlace }
  | { mode: "refuse"; reason: string; message: string };

/** The drop-in's name inside a glob `<prefix>*<suffix>`: `<prefix>zz-apparate<suffix>` (sorts after digits and lowercase names). */
export const DROPIN_STEM = "zz-apparate";
/** First line of every drop-in apparate writes: how its own file is recognised. */
export const DROPIN_HEADER = "# Written by the apparate node agent (removed on uninstall). Edits here are overwritten.\n";

const CRI_IDS_1 = ["io.containerd.grpc.v1.cri", "cri"];
const CRI_IDS_2 = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "cri"];

/** Whether a file sets any CRI plugin section containerd `major` reads. */
export function setsCri(doc: Table, major: number): boolean {
  const plugins = doc.plugins as Table | undefined;
  return Boolean(plugins && (major >= 2 ? CRI_IDS_2 : CRI_IDS_1).some((id) => plugins[id] !== undefined));
}

/** Whether a file holds legacy registry tables apparate must move to hosts.toml (a drop-in cannot delete them). */
export function hasLegacyRegistry(doc: Table): boolean {
  for (const id of ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "cri"]) {
    const r = get(doc, ["plugins", id, "registry"]) as Table | undefined;
    if (!r || typeof r !== "object") continue;
    if (r.mirrors !== undefined) return true;
    if (Object.values((r.configs ?? {}) as Table).some((c) => c && typeof c === "object" && (c as Table).tls !== undefined)) return true;
  }
  return false;
}

/** `<prefix>zz-apparate<suffix>` for a glob basename with exactly one `*` and no other wildcard. */
export function dropInName(globBase: string): string | undefined {
  const m = /^([^*?[\]\\]*)\*([^*?[\]\\]*)$/.exec(globBase);
  return m ? `${m[1]}${DROPIN_STEM}${m[2]}` : undefined;
}

const dirOf = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";
const baseOf = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/**
 * Main file or drop-in, and where. `patterns` are the main file's imports made absolute;
 * `files` what they match (apparate's own drop-in left out); `dirExists` says whether a
 * glob's directory is there (apparate never creates a directory the node does not import).
 */
export function decideDropIn(main: Table, patterns: string[], files: ImportedFile[], major: number, dirExists: (dir: string) => boolean): DropInDecision {
  if (patterns.length === 0) return { mode: "main" };
  const version = versionOf(main);
  const criFiles = files.filter((f) => setsCri(f.doc, major));
  // A glob in an existing directory, where apparate's file name matches and is not
  // shadowed by a later CRI file of the same glob: the last such import wins.
  const places: DropInPlace[] = [];
  patterns.forEach((p, i) => {
    const name = dropInName(baseOf(p));
    if (!name || /[*?[]/.test(dirOf(p)) || !dirExists(dirOf(p))) return;
    places.push({ path: `${dirOf(p)}/${name}`, pattern: i });
  });
  const legacy = hasLegacyRegistry(main) || files.some((f) => hasLegacyRegistry(f.doc));
  const named = (f: ImportedFile) => `${f.path} (imports entry ${JSON.stringify(patterns[f.pattern])})`;

  if (major >= 2) {
    // Key-by-key merge: the main file's edit works unless an import sets the same keys (the
    // candidate's dump shows it); a drop-in keeps the node's files as they are.
    if (places.length === 0 || legacy || version === 1) return { mode: "main" };
    const place = places[places.length - 1]!;
    const after = criFiles.find((f) => f.pattern === place.pattern && baseOf(f.path) > baseOf(place.path));
    if (after) return { mode: "main" };
    return { mode: "dropin", place };
  }

  if (criFiles.length === 0) return { mode: "main" };
  const last = criFiles[criFiles.length - 1]!;
  const why = `containerd 1.x takes the whole CRI section plugins."io.containerd.grpc.v1.cri" from the last file that sets it, ${named(last)}`;
  if (version !== 2) {
    return { mode: "refuse", reason: "CriSectionImported", message: `${why}; the main config has schema version ${version}, and apparate writes a drop-in only next to a version-2 main config on containerd 1.x` };
  }
  const usable = places.filter((p) => p.pattern >= last.pattern && !criFiles.some((f) => f.pattern === p.pattern && baseOf(f.path) > baseOf(p.path)));
  if (usable.length === 0) {
    const globs = places.length > 0 ? `the imported directories (${places.map((p) => JSON.stringify(patterns[p.pattern])).join(", ")}) come before it or hold a CRI file that sorts after ${DROPIN_STEM}` : "the main config imports no existing directory by a glob";
    return { mode: "refuse", reason: "CriSectionImported", message: `${why}; apparate's keys would have to come in a file imported after it, and ${globs}. Nothing was changed` };
  }
  return { mode: "dropin", place: usable[usable.length - 1]! };
}

/** The ordered import list with apparate's drop-in at its place (containerd sorts each glob's matches). */
export function withDropIn<T extends { path: string; pattern: number }>(files: T[], dropIn: T): T[] {
  const out = files.filter((f) => f.path !== dropIn.path);
  let i = out.findIndex((f) => f.pattern > dropIn.pattern || (f.pattern === dropIn.pattern && f.path > dropIn.path));
  if (i < 0) i = out.length;
  out.splice(i, 0, dropIn);
  return out;
}
