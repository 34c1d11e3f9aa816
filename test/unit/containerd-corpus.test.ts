// The corpus of real containerd configs (test/fixtures/containerd-configs) that the node agent's
// config handling is tried against (issue 12). These tests keep the corpus from rotting: every file
// is listed with its public origin, every .toml parses, and the variety it was collected for stays.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import { afterAll, describe, expect, it } from "vitest";

const dir = join(import.meta.dirname, "..", "fixtures", "containerd-configs");

interface Source {
  file: string;
  repository: string;
  path: string;
  commit: string;
  project: string;
  schemaVersion: number;
  notes: string;
  renderedFrom?: string;
  rendering?: string;
}

type Table = Record<string, unknown>;

function readSources(at: string): Source[] {
  return JSON.parse(readFileSync(join(at, "SOURCES.json"), "utf8")) as Source[];
}

/** Everything wrong with a corpus directory's bookkeeping; empty when every file is accounted for. */
function corpusProblems(at: string): string[] {
  const problems: string[] = [];
  const files = readdirSync(at).filter((f) => f !== "SOURCES.json");
  const sources = readSources(at);
  const listed = new Map<string, number>();
  for (const s of sources) listed.set(s.file, (listed.get(s.file) ?? 0) + 1);
  for (const f of files) if (!listed.has(f)) problems.push(`${f}: not listed in SOURCES.json`);
  for (const [f, n] of listed) if (n > 1) problems.push(`${f}: listed ${n} times`);
  for (const s of sources) {
    if (!files.includes(s.file)) problems.push(`${s.file}: listed but missing`);
    if (!/^[0-9a-f]{40}$/.test(s.commit)) problems.push(`${s.file}: commit ${JSON.stringify(s.commit)} is not 40 hex digits`);
    if (!/^[\w.-]+\/[\w.-]+$/.test(s.repository)) problems.push(`${s.file}: repository ${JSON.stringify(s.repository)} is not owner/name`);
    if (!s.path) problems.push(`${s.file}: no path`);
    if (!s.project || !s.notes) problems.push(`${s.file}: project and notes are required`);
    if (![1, 2, 3].includes(s.schemaVersion)) problems.push(`${s.file}: schemaVersion ${s.schemaVersion} is not 1, 2 or 3`);
    if (!s.file.endsWith(".toml") && !s.file.endsWith(".tmpl")) problems.push(`${s.file}: neither .toml nor .tmpl`);
    if (s.renderedFrom !== undefined) {
      if (!s.renderedFrom.endsWith(".tmpl") || !listed.has(s.renderedFrom)) problems.push(`${s.file}: renderedFrom ${s.renderedFrom} is not a listed template`);
      if (!s.rendering) problems.push(`${s.file}: rendered without saying how`);
    }
  }
  return problems;
}

const sources = readSources(dir);
const tomlFiles = sources.filter((s) => s.file.endsWith(".toml"));
const parsed = new Map(tomlFiles.map((s) => [s.file, parse(readFileSync(join(dir, s.file), "utf8")) as Table]));

function table(t: unknown, ...keys: string[]): Table | undefined {
  let cur: unknown = t;
  for (const k of keys) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Table)[k];
  }
  return typeof cur === "object" && cur !== null ? (cur as Table) : undefined;
}

/** The CRI registry tables of a config, wherever its schema keeps them. */
function registries(cfg: Table): Table[] {
  const plugins = table(cfg, "plugins") ?? {};
  return [
    table(plugins, "cri", "registry"),
    table(plugins, "io.containerd.grpc.v1.cri", "registry"),
    table(plugins, "io.containerd.cri.v1.images", "registry"),
  ].filter((t): t is Table => t !== undefined);
}

function filesWhere(pred: (cfg: Table) => boolean): string[] {
  return [...parsed].filter(([, cfg]) => pred(cfg)).map(([f]) => f);
}

describe("containerd config corpus", () => {
  const scratch = mkdtempSync(join(tmpdir(), "corpus-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("lists every file in SOURCES.json with repository, path and a 40-hex commit", () => {
    expect(corpusProblems(dir)).toEqual([]);
  });

  it("bookkeeping check catches an unlisted file and a short commit (negative control)", () => {
    writeFileSync(join(scratch, "stray.toml"), "version = 2\n");
    const gone: Source = { file: "gone.toml", repository: "o/r", path: "p", commit: "abc123", project: "x", schemaVersion: 2, notes: "n" };
    writeFileSync(join(scratch, "SOURCES.json"), JSON.stringify([gone]));
    expect(corpusProblems(scratch)).toEqual([
      "stray.toml: not listed in SOURCES.json",
      "gone.toml: listed but missing",
      'gone.toml: commit "abc123" is not 40 hex digits',
    ]);
  });

  it("has at least 25 collected files and at least 15 parseable configs", () => {
    expect(sources.length).toBeGreaterThanOrEqual(25);
    expect(tomlFiles.length).toBeGreaterThanOrEqual(15);
  });

  it.each(tomlFiles.map((s) => [s.file, s.schemaVersion] as const))("%s parses and declares schema version %i", (file, schema) => {
    const cfg = parsed.get(file)!;
    // containerd reads a file without `version` as version 1.
    expect(cfg.version ?? 1).toBe(schema);
    const containerdKeys = ["version", "plugins", "disabled_plugins", "imports", "proxy_plugins", "root"];
    expect(Object.keys(cfg).some((k) => containerdKeys.includes(k))).toBe(true);
  });

  it("templates are kept as .tmpl because they are not TOML yet (negative control for the parser)", () => {
    const tmpl = readFileSync(join(dir, "eks-nodeadm-config2.template.toml.tmpl"), "utf8");
    expect(() => parse(tmpl)).toThrow();
    expect(() => parse(readFileSync(join(dir, "cke-imagecache-poc.toml.tmpl"), "utf8"))).toThrow();
  });

  // The variety issue 12 names; each row must stay covered by at least one real file.
  it.each([
    ["version 1 (no version key, plugins.cri)", (c: Table) => c.version === undefined && table(c, "plugins", "cri") !== undefined],
    ["version 3", (c: Table) => c.version === 3],
    ["imports drop-ins", (c: Table) => Array.isArray(c.imports) && c.imports.length > 0],
    ["legacy registry.mirrors", (c: Table) => registries(c).some((r) => Object.keys(table(r, "mirrors") ?? {}).length > 0)],
    ["legacy registry.configs.<host>.tls", (c: Table) => registries(c).some((r) => Object.values(table(r, "configs") ?? {}).some((h) => table(h, "tls")))],
    ["wildcard \"*\" mirror", (c: Table) => registries(c).some((r) => table(r, "mirrors", "*") !== undefined)],
    ["mirror rewrite", (c: Table) => registries(c).some((r) => Object.values(table(r, "mirrors") ?? {}).some((m) => table(m, "rewrite")))],
    ["config_path with several dirs", (c: Table) => registries(c).some((r) => typeof r.config_path === "string" && r.config_path.includes(":"))],
    ["discard_unpacked_layers = true", (c: Table) => JSON.stringify(c).includes('"discard_unpacked_layers":true')],
    ["proxy_plugins snapshotter", (c: Table) => Object.keys(table(c, "proxy_plugins") ?? {}).length > 0],
    ["CRI disabled", (c: Table) => Array.isArray(c.disabled_plugins) && c.disabled_plugins.some((p) => p === "cri" || p === "io.containerd.grpc.v1.cri")],
  ] as const)("covers %s", (_name, pred) => {
    expect(filesWhere(pred)).not.toEqual([]);
  });

  it.each(["fuse-overlayfs", "nydus", "stargz", "overlaybd"])("covers a %s proxy snapshotter", (name) => {
    expect(filesWhere((c) => table(c, "proxy_plugins", name) !== undefined)).not.toEqual([]);
  });
});
