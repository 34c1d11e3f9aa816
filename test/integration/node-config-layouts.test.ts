// The node agent on distributions whose containerd config imports other files (k0s,
// Talos), laid out as on the node (test/fixtures/containerd-layouts, sources in
// SOURCES.json), against each real containerd. The live daemon reads the node's imports
// itself (its own merge, the node's etc/var laid over the machine's in a private mount
// namespace), so what is compared is what that binary runs: install -> CRI status (and a
// 2.x binary's dumped images plugin) differs from the original in apparate's keys only ->
// install again changes nothing -> uninstall leaves every file of the node byte-identical
// and the daemon's CRI config equal to the original's.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { parseConfig } from "../../src/nodeagent/containerd-config.js";
import { Installer } from "../../src/nodeagent/installer.js";
import { createLogger } from "../../src/observability/logger.js";
import { containerds, run, SandboxedContainerd } from "../support/containerd.js";
import { tree } from "../support/node-tree.js";

const FIXTURES = "test/fixtures/containerd-layouts";
interface FileSource { file: string; repository: string; path: string; commit: string; rendering: string }
/** `dirs`: directories the node has though no file of the layout is in them (a glob's directory, empty). */
interface Layout { layout: string; project: string; config: string; files: FileSource[]; dirs?: string[] }
const layouts: Layout[] = JSON.parse(readFileSync(join(FIXTURES, "SOURCES.json"), "utf8"));
const canRun = process.getuid?.() === 0 && existsSync("/usr/bin/containerd");
const logger = createLogger({ destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
const releases = containerds();

/**
 * What each layout must come to, per containerd major version: installed into apparate's
 * drop-in (the node's files untouched) or into the main file, or refused with this reason.
 */
const K3S = "/var/lib/rancher/k3s/agent/etc/containerd";
const EXPECTED: Record<string, Record<1 | 2, { dropIn?: string; main?: true; error?: string; refused?: string; says?: RegExp; hostsDir: string }>> = {
  // containerd 2 layout: version 3 (1.x does not read it); a drop-in next to k0s's own, config_path from the docs' drop-in.
  "k0s-containerd2": { 1: { error: "config-version", hostsDir: "" }, 2: { dropIn: "/etc/k0s/containerd.d/zz-apparate.toml", hostsDir: "/etc/k0s/containerd.d/certs.d" } },
  // k0s merges CRI drop-ins itself into a file containerd imports by name, last: no place for a drop-in on 1.x; on
  // 2.x that file's 1.x section (with runtimes) sets snapshotter = "overlayfs", which overrides the main file's edit.
  "k0s-containerd1": {
    1: { refused: "CriSectionImported", says: /from the last file that sets it, \/run\/k0s\/containerd-cri\.toml .*imports no existing directory by a glob/, hostsDir: "" },
    2: { refused: "EditNotEffective", says: /CRI's snapshotter would be "overlayfs"/, hostsDir: "" },
  },
  // Imports one file by name: 2.x merges key by key, so the main file's edit holds; config_path is the imported one.
  "talos-cri-containerd2": { 1: { error: "config-version", hostsDir: "" }, 2: { main: true, hostsDir: "/etc/cri/conf.d/hosts" } },
  // The CRI section comes from a file in the imported directory: on 1.x the drop-in carries the whole section.
  "talos-cri-glob-v2": { 1: { dropIn: "/var/cri/conf.d/zz-apparate.toml", hostsDir: "/etc/cri/conf.d/hosts" }, 2: { dropIn: "/var/cri/conf.d/zz-apparate.toml", hostsDir: "/etc/cri/conf.d/hosts" } },
  // k3s 2025 imports <dir>/config-v3.toml.d/*.toml: with the directory there, 2.x gets a drop-in, which survives k3s
  // rewriting config.toml from its template at every start (an edit of the main file would not).
  "k3s-containerd2": { 1: { error: "config-version", hostsDir: "" }, 2: { dropIn: `${K3S}/config-v3.toml.d/zz-apparate.toml`, hostsDir: `${K3S}/certs.d` } },
};


const APPARATE_STATUS_KEYS = [/^containerd\.snapshotter$/, /^containerd\.disableSnapshotAnnotations$/, /^registry\.configPath$/];
const APPARATE_DUMP_KEYS = [/^snapshotter$/, /^disable_snapshot_annotations$/, /^registry\.config_path$/];
function diffPaths(a: unknown, b: unknown, at = ""): string[] {
  const obj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
  if (obj(a) && obj(b)) return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((k) => diffPaths(a[k], b[k], at === "" ? k : `${at}.${k}`));
  const text = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? Number(x) : x));
  return text(a) === text(b) ? [] : [at];
}
const notApparate = (paths: string[], allowed: RegExp[]) => paths.filter((p) => !allowed.some((r) => r.test(p)));

let spec: string | undefined;
const ociSpec = async () => (spec ??= (await run("ctr", ["oci", "spec"])).stdout);

/** The node: the layout's files under root, and the base runtime specs they name. */
async function node(root: string, layout: Layout): Promise<void> {
  cpSync(join(FIXTURES, layout.layout), root, { recursive: true });
  for (const d of layout.dirs ?? []) mkdirSync(join(root, d), { recursive: true });
  for (const f of layout.files) {
    for (const m of readFileSync(join(root, f.file), "utf8").matchAll(/base_runtime_spec\s*=\s*["']([^"']+)["']/g)) {
      mkdirSync(dirname(join(root, m[1]!)), { recursive: true });
      writeFileSync(join(root, m[1]!), await ociSpec());
    }
  }
}

const results: Record<string, Record<string, string>> = {};
const TABLE_BEGIN = "<!-- layout-table:begin (generated by test/integration/node-config-layouts.test.ts; UPDATE_CORPUS_TABLE=1 rewrites it) -->";
const TABLE_END = "<!-- layout-table:end -->";

describe("the layouts", () => {
  it("each file has repository, path, commit and how it was made recorded", () => {
    expect(layouts.map((l) => l.layout).sort()).toEqual(Object.keys(EXPECTED).sort());
    for (const l of layouts) {
      for (const f of l.files) {
        expect(existsSync(join(FIXTURES, l.layout, f.file)), f.file).toBe(true);
        expect(f.repository).toMatch(/^[\w.-]+\/[\w.-]+$/);
        expect(f.commit).toMatch(/^[0-9a-f]{40}$/);
        expect(f.rendering).not.toBe("");
      }
    }
  });
});

describe.skipIf(!canRun).each(releases.map((r) => [r.version, r] as const))("node agent on distribution layouts with imports, with a real containerd %s", (_v, release) => {
  let base: string;
  beforeAll(() => { base = mkdtempSync(join(tmpdir(), "apparate-layouts-")); });
  afterAll(() => { if (base) rmSync(base, { recursive: true, force: true }); });
  const major = Number(release.version.split(".")[0]) >= 2 ? 2 : 1;

  /** A sandboxed node at root: the real containerd reading `config` (imports kept) and an agent for it. */
  function sandbox(root: string, config: string, mirrors: Record<string, string[]> = {}): { ctd: SandboxedContainerd; installer: Installer } {
    const ctd = new SandboxedContainerd(join(root, "ctd"), () => parseConfig(readFileSync(join(root, config), "utf8")), undefined, release, { hostRoot: root, keepImports: true });
    const installer = new Installer({
      hostRoot: root, containerdConfig: config, certsDir: "/etc/containerd/certs.d",
      snapshotterSocket: "/run/apparate-stargz/stargz.sock", snapshotterConfigDir: "/etc/apparate-stargz", mirrors, plainHttp: [], stateDir: "/var/lib/apparate-node",
    }, ctd, logger);
    return { ctd, installer };
  }

  it.each(layouts.map((l) => [l.layout, l] as const))("%s", async (name, layout) => {
    const want = EXPECTED[name]![major];
    const root = join(base, name);
    await node(root, layout);
    const skip = (p: string) => p.startsWith(join(root, "var/lib/apparate-node")) || p.startsWith(join(root, "ctd"));
    const original = tree(root, skip);
    const mainText = () => readFileSync(join(root, layout.config), "utf8");
    const { ctd, installer } = sandbox(root, layout.config, { "quay.io": ["quay.mirror.example"] });
    const record = (o: string) => { results[name] = { ...results[name], [release.version]: o }; };
    const nodeFiles = (t: Record<string, string>) => Object.fromEntries(Object.entries(t).filter(([k]) => !k.startsWith("etc/apparate-stargz") && !k.includes("/quay.io/")));
    await ctd.start();
    try {
      const st0 = await ctd.criStatus();
      const images = async () => (major >= 2 ? ((await ctd.configDump(parseConfig(mainText()))) as any).plugins["io.containerd.cri.v1.images"] : undefined);
      const images0 = await images();
      let r: Awaited<ReturnType<Installer["apply"]>>;
      try { r = await installer.apply(); } catch (e) {
        const code = (e as { code?: string }).code ?? "?";
        record(`error: ${code}`);
        expect(code, (e as Error).message).toBe(want.error);
        expect(tree(root, skip)).toEqual(original);
        expect(ctd.restarts).toBe(0);
        return;
      }
      expect(want.error, JSON.stringify(r)).toBeUndefined();
      if (r.status === "refused") {
        record(`refused: ${r.reason}`);
        expect(r.reason, r.message).toBe(want.refused);
        expect(r.message).toMatch(want.says!);
        expect(tree(root, skip)).toEqual(original);
        return;
      }
      expect(st0, ctd.log.slice(-2000)).toMatchObject({ loaded: true });
      expect(r, ctd.log.slice(-2000)).toMatchObject({ status: "installed", restarted: true, changed: true });
      const st1 = await ctd.criStatus();
      expect(st1, ctd.log.slice(-2000)).toMatchObject({ loaded: true, snapshotter: "stargz" });
      // What the daemon runs (its own merge of the imports) differs from the node's own config in apparate's keys only.
      if (st0.loaded && st1.loaded) expect(notApparate(diffPaths(st0.config, st1.config), APPARATE_STATUS_KEYS)).toEqual([]);
      if (major >= 2) {
        const images1 = await images();
        expect(images1).toMatchObject({ snapshotter: "stargz", disable_snapshot_annotations: false });
        expect(notApparate(diffPaths(images0, images1), APPARATE_DUMP_KEYS)).toEqual([]);
      }
      const now = nodeFiles(tree(root, skip));
      if (want.dropIn) {
        // The node's own files are untouched; apparate's drop-in is the one new file besides hosts.toml.
        expect(Object.keys(now).filter((k) => !(k in original))).toEqual([want.dropIn.slice(1)]);
        for (const [k, v] of Object.entries(original)) expect(now[k], k).toBe(v);
        if (process.env.DEBUG_LAYOUTS) console.log(release.version, name, readFileSync(join(root, want.dropIn), "utf8"));
        record(`installed: drop-in ${want.dropIn}`);
      } else {
        expect(now[layout.config.slice(1)]).not.toBe(original[layout.config.slice(1)]);
        record("installed: main config edited");
      }
      // The configured mirror is in the hosts directory CRI really reads.
      expect(readFileSync(join(root, want.hostsDir, "quay.io", "hosts.toml"), "utf8")).toContain("https://quay.mirror.example");

      const before = tree(root, skip);
      const restarts = ctd.restarts;
      expect(await installer.apply()).toMatchObject({ status: "installed", restarted: false, changed: false });
      expect(tree(root, skip)).toEqual(before);
      expect(ctd.restarts).toBe(restarts);

      const u = await installer.uninstall();
      expect(u, JSON.stringify(u)).toMatchObject({ restored: true });
      expect(tree(root, skip)).toEqual(original);
      const st2 = await ctd.criStatus();
      expect(st2).toMatchObject({ loaded: true, snapshotter: st0.loaded ? st0.snapshotter : "?" });
      if (st0.loaded && st2.loaded) expect(st2.config).toEqual(st0.config);
      if (major >= 2) expect(await images()).toEqual(images0);
    } finally {
      await ctd.stop();
    }
  }, 90_000);

  it.skipIf(major >= 2)("a 1.x drop-in follows the node: when Talos rewrites its CRI file, the copy is stale, and applying again carries the new settings", async () => {
    const layout = layouts.find((l) => l.layout === "talos-cri-glob-v2")!;
    const root = join(base, "stale");
    await node(root, layout);
    const part = join(root, "var/cri/conf.d/registries.toml");
    const { ctd, installer } = sandbox(root, layout.config);
    await ctd.start();
    try {
      expect(await installer.apply(), ctd.log.slice(-2000)).toMatchObject({ status: "installed", restarted: true });
      expect(installer.dropInStale()).toBe(false);
      // Talos writes a new registry part (another user); containerd restarts on it and would run apparate's old copy.
      writeFileSync(part, readFileSync(part, "utf8").replace('username = "root"', 'username = "rotated"'));
      expect(installer.dropInStale()).toBe(true);
      await ctd.restart();
      const auth = async () => ((await ctd.criStatus()) as any).config?.registry?.configs?.["some.host:123"]?.auth?.username;
      expect(await auth()).toBe("root");
      expect(await installer.apply()).toMatchObject({ status: "installed", changed: true, restarted: true });
      expect(installer.dropInStale()).toBe(false);
      expect(await ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "stargz" });
      expect(await auth()).toBe("rotated");
      expect((await installer.uninstall()).restored).toBe(true);
      expect(await auth()).toBe("rotated");
      expect(readdirSync(join(root, "var/cri/conf.d"))).toEqual(["registries.toml"]);
    } finally {
      await ctd.stop();
    }
  }, 90_000);

  it("a node that now must be refused gets its own config back: the drop-in is withdrawn and containerd restarted", async () => {
    const layout = layouts.find((l) => l.layout === "talos-cri-glob-v2")!;
    const root = join(base, "withdrawn");
    await node(root, layout);
    const { ctd, installer } = sandbox(root, layout.config);
    await ctd.start();
    try {
      expect(await installer.apply(), ctd.log.slice(-2000)).toMatchObject({ status: "installed", restarted: true });
      // The node now points "stargz" at its own snapshotter: apparate must not take it over.
      writeFileSync(join(root, "var/cri/conf.d/other-snapshotter.toml"), 'version = 2\n[proxy_plugins.stargz]\ntype = "snapshot"\naddress = "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock"\n');
      const restarts = ctd.restarts;
      expect(await installer.apply()).toMatchObject({ status: "refused", reason: "SnapshotterInUse" });
      expect(readdirSync(join(root, "var/cri/conf.d")).sort()).toEqual(["other-snapshotter.toml", "registries.toml"]);
      expect(ctd.restarts).toBe(restarts + 1);
      expect(await ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "overlayfs" });
      expect((await installer.uninstall()).restored).toBe(true);
    } finally {
      await ctd.stop();
    }
  }, 90_000);

  it("negative control: a directory of CRI settings that the config does not import is not used; apparate edits the main file", async () => {
    const root = join(base, "not-imported");
    const v = major >= 2 ? 3 : 2;
    const images = v === 3 ? '"io.containerd.cri.v1.images"' : '"io.containerd.grpc.v1.cri".containerd';
    mkdirSync(join(root, "etc/containerd/conf.d"), { recursive: true });
    writeFileSync(join(root, "etc/containerd/config.toml"), `version = ${v}\n[plugins.${images}]\nsnapshotter = "overlayfs"\n`);
    writeFileSync(join(root, "etc/containerd/conf.d/10-cri.toml"), `version = ${v}\n[plugins.${images}]\nsnapshotter = "native"\n`);
    const skip = (p: string) => p.startsWith(join(root, "var/lib/apparate-node")) || p.startsWith(join(root, "ctd"));
    const original = tree(root, skip);
    const { ctd, installer } = sandbox(root, "/etc/containerd/config.toml");
    await ctd.start();
    try {
      expect(await installer.apply(), ctd.log.slice(-2000)).toMatchObject({ status: "installed", restarted: true, changed: true });
      expect(await ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "stargz" });
      expect(readdirSync(join(root, "etc/containerd/conf.d"))).toEqual(["10-cri.toml"]);
      expect(readFileSync(join(root, "etc/containerd/config.toml"), "utf8")).toContain("stargz");
      expect((await installer.uninstall()).restored).toBe(true);
      expect(tree(root, skip)).toEqual(original);
    } finally {
      await ctd.stop();
    }
  }, 90_000);
});

describe.skipIf(!canRun)("the README's table of layout results", () => {
  it("is what this run found, per containerd version (UPDATE_CORPUS_TABLE=1 rewrites it)", () => {
    if (releases.length < 3 || Object.keys(results).length < layouts.length) return; // a partial run proves nothing here
    const versions = releases.map((r) => r.version);
    const rows = layouts.map((l) => `| ${l.layout} | ${l.project} | ${versions.map((v) => results[l.layout]?.[v] ?? "not run").join(" | ")} |`);
    const table = [TABLE_BEGIN, "", `| layout | project | ${versions.map((v) => `containerd ${v}`).join(" | ")} |`, `|---|---|${versions.map(() => "---").join("|")}|`, ...rows, "", TABLE_END].join("\n");
    const readme = readFileSync("README.md", "utf8");
    const a = readme.indexOf(TABLE_BEGIN);
    const b = readme.indexOf(TABLE_END);
    if (process.env.UPDATE_CORPUS_TABLE === "1" && a >= 0 && b > a) writeFileSync("README.md", readme.slice(0, a) + table + readme.slice(b + TABLE_END.length));
    else expect(a >= 0 && b > a ? readme.slice(a, b + TABLE_END.length) : "(no table in README.md)").toBe(table);
  });
});
