// The node agent on real containerd configs collected from public projects
// (test/fixtures/containerd-configs, sources in SOURCES.json). For every version-1/2
// file: install -> a real containerd 1.6 runs the result with CRI loaded and using the
// snapshotter -> install again changes and deletes nothing -> uninstall restores bytes,
// mode, owner and symlink. Version-3 files are checked against containerd 2.x's plugin
// names and option types, taken from `containerd config default` of 2.1 (in the
// corpus): no containerd 2.x binary is packaged here.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { Writable } from "node:stream";
import { parse } from "smol-toml";
import { applyApparate, configPathDirs, criSnapshotter, migrateV1, versionOf } from "../../src/nodeagent/containerd-config.js";
import { sha256 } from "../../src/nodeagent/files.js";
import { Installer } from "../../src/nodeagent/installer.js";
import { createLogger } from "../../src/observability/logger.js";
import { run, SandboxedContainerd } from "../support/containerd.js";

const FIXTURES = "test/fixtures/containerd-configs";
interface Source { file: string; repository: string; path: string; commit: string; schemaVersion: number; project: string }
const sources: Source[] = JSON.parse(readFileSync(join(FIXTURES, "SOURCES.json"), "utf8"));
const configs = sources.filter((s) => s.file.endsWith(".toml"));
const canRun = process.getuid?.() === 0 && existsSync("/usr/bin/containerd");
const logger = createLogger({ destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

// Nodes apparate must not take over by default, and why (the rest must install).
const REFUSED: Record<string, string> = {
  "aks-agentbaker-artifact-streaming-rendered-v2.toml": "SnapshotterInUse", // overlaybd
  "docker-containerd-io-default.toml": "CriDisabled",
  "firecracker-containerd-v2.toml": "CriDisabled",
  "nydus-snapshotter-example-v1.toml": "SnapshotterInUse",
  "nydus-snapshotter-example-v2.toml": "SnapshotterInUse",
  "stargz-snapshotter-kind-v2.toml": "SnapshotterInUse", // the user's own proxy_plugins.stargz
};

let spec: string | undefined;
const ociSpec = async () => (spec ??= (await run("ctr", ["oci", "spec"])).stdout);

// Configs whose CRI does not load on containerd 1.6 even untouched: the probe must catch
// it before the live file changes (nydus's example predates CRI's runtimes defaults).
const PROBE_FAILS: Record<string, RegExp> = {
  "nydus-snapshotter-example-v1.toml": /no corresponding runtime configured in `containerd.runtimes`/,
};

/** Every file under dir with its sha256 (what "changes nothing, deletes nothing" compares). */
function tree(dir: string, skip: (p: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      const st = lstatSync(p);
      if (skip(p)) continue;
      if (st.isDirectory()) walk(p);
      else out[relative(dir, p)] = st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : `${sha256(readFileSync(p))} ${(st.mode & 0o7777).toString(8)}`;
    }
  };
  walk(dir);
  return out;
}

describe("the corpus", () => {
  it("has at least 15 real configs, each with repository, path and commit recorded", () => {
    expect(configs.length).toBeGreaterThanOrEqual(15);
    for (const s of sources) {
      expect(existsSync(join(FIXTURES, s.file)), s.file).toBe(true);
      expect(s.repository, s.file).toMatch(/^[\w.-]+\/[\w.-]+$/);
      expect(s.commit, s.file).toMatch(/^[0-9a-f]{40}$/);
      expect(s.path, s.file).not.toBe("");
    }
  });
});

describe.skipIf(!canRun)("node agent on every version-1/2 config of the corpus, with a real containerd 1.6", () => {
  let base: string;
  beforeAll(() => { base = mkdtempSync(join(tmpdir(), "apparate-corpus-")); });
  afterAll(() => { if (base) rmSync(base, { recursive: true, force: true }); });

  const v12 = configs.filter((s) => s.schemaVersion !== 3);
  it.each(v12.map((s, i) => [s.file, i] as const))("%s: install -> CRI loads with the snapshotter -> install again changes nothing -> uninstall restores bytes, mode, owner, symlink", async (file, i) => {
    const original = readFileSync(join(FIXTURES, file));
    const root = join(base, String(i));
    // Every other node has its config behind a symlink (absolute or relative), all have mode 0640 and a non-root owner.
    const link = i % 3 === 1 ? "/opt/node/containerd.toml" : i % 3 === 2 ? "real/config.toml" : undefined;
    const real = link ? (link.startsWith("/") ? link : `/etc/containerd/${link}`) : "/etc/containerd/config.toml";
    mkdirSync(dirname(join(root, real)), { recursive: true });
    mkdirSync(join(root, "etc/containerd"), { recursive: true });
    writeFileSync(join(root, real), original, { mode: 0o640 });
    chownSync(join(root, real), 1000, 1000);
    if (link) symlinkSync(link, join(root, "etc/containerd/config.toml"));

    let installer: Installer | undefined;
    // The node's own files its config names (kubespray's and EKS's base runtime spec).
    for (const m of original.toString("utf8").matchAll(/base_runtime_spec\s*=\s*["'](\/etc\/containerd\/[^"']+)["']/g)) {
      writeFileSync(join(root, m[1]!), await ociSpec());
    }
    // The files a config imports by name (no glob): containerd refuses to start without them.
    for (const imp of ((parse(original.toString("utf8")) as { imports?: string[] }).imports ?? []).filter((f) => !/[*?[]/.test(f))) {
      const p = join(root, imp.startsWith("/") ? imp : join("/etc/containerd", imp));
      if (!existsSync(p)) { mkdirSync(dirname(p), { recursive: true }); writeFileSync(p, ""); }
    }
    const ctd = new SandboxedContainerd(join(root, "ctd"), () => installer!.effectiveLive(), join(root, "etc/containerd"));
    const mk = (replaceSnapshotter: boolean) => new Installer({
      hostRoot: root, containerdConfig: "/etc/containerd/config.toml", certsDir: "/etc/containerd/certs.d",
      snapshotterSocket: "/run/apparate-stargz/stargz.sock", snapshotterConfigDir: "/etc/apparate-stargz",
      mirrors: { "quay.io": ["quay.mirror.example"] }, plainHttp: [], stateDir: "/var/lib/apparate-node", replaceSnapshotter,
    }, ctd, logger);
    installer = mk(false);
    await ctd.start();
    try {
      let r = await installer.apply();
      if (REFUSED[file]) {
        expect(r).toMatchObject({ status: "refused", reason: REFUSED[file] });
        // Refused: the node's file is untouched.
        expect(readFileSync(join(root, real))).toEqual(original);
        if (REFUSED[file] === "CriDisabled") return;
        installer = mk(true);
        if (PROBE_FAILS[file]) {
          await expect(installer.apply()).rejects.toThrow(PROBE_FAILS[file]);
          expect(readFileSync(join(root, real))).toEqual(original);
          expect(ctd.restarts).toBe(0);
          return;
        }
        r = await installer.apply();
      }
      expect(r, ctd.log.slice(-2000)).toMatchObject({ status: "installed", restarted: true, changed: true });
      const st = await ctd.criStatus();
      expect(st).toMatchObject({ loaded: true, snapshotter: "stargz" });
      const written = readFileSync(join(root, real), "utf8");
      expect(parse(written).version).toBe(2);
      // Mode, owner and symlink kept.
      expect(statSync(join(root, real)).mode & 0o7777).toBe(0o640);
      expect(statSync(join(root, real)).uid).toBe(1000);
      if (link) expect(readlinkSync(join(root, "etc/containerd/config.toml"))).toBe(link);
      // The configured mirror is in hosts.toml in the config's own (first) config_path directory.
      const hostsDir = configPathDirs(parse(written) as never, 2)[0]!;
      expect(readFileSync(join(root, hostsDir, "quay.io", "hosts.toml"), "utf8")).toContain("https://quay.mirror.example");

      // Again: nothing changes, nothing is deleted, no restart.
      const skipState = (p: string) => p.startsWith(join(root, "var/lib/apparate-node")) || p.startsWith(join(root, "ctd"));
      const before = tree(root, skipState);
      const restarts = ctd.restarts;
      const again = await installer.apply();
      expect(again).toMatchObject({ status: "installed", restarted: false, changed: false });
      expect(tree(root, skipState)).toEqual(before);
      expect(ctd.restarts).toBe(restarts);

      const u = await installer.uninstall();
      if (process.env.DEBUG_CORPUS) console.log(file, JSON.stringify(u), readFileSync(join(root, real), "utf8"), "\n----\n", original.toString());
      expect(u, JSON.stringify(u)).toMatchObject({ restored: true });
      expect(readFileSync(join(root, real))).toEqual(original);
      expect(statSync(join(root, real)).mode & 0o7777).toBe(0o640);
      expect(statSync(join(root, real)).uid).toBe(1000);
      if (link) expect(readlinkSync(join(root, "etc/containerd/config.toml"))).toBe(link);
      expect(existsSync(join(root, `${real}.apparate-backup`))).toBe(false);
      expect(existsSync(join(root, hostsDir, "quay.io"))).toBe(false);
      // containerd runs the node's own snapshotter again.
      const od = parse(original.toString("utf8")) as never;
      if (versionOf(od) === 1) migrateV1(od);
      expect(await ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: criSnapshotter(od, 2) });
      // Uninstall again: idempotent.
      expect(await installer.uninstall()).toMatchObject({ restored: true });
      expect(readFileSync(join(root, real))).toEqual(original);
    } finally {
      await ctd.stop();
    }
  }, 60_000);
});

describe("node agent on every version-3 config of the corpus (checked against containerd 2.x plugin names and option types; no 2.x binary is packaged here)", () => {
  const reference = parse(readFileSync(join(FIXTURES, "containerd-2.1-default-v3.toml"), "utf8")) as any;
  const knownPlugins = new Set(Object.keys(reference.plugins));
  const images = reference.plugins["io.containerd.cri.v1.images"];
  const v3 = configs.filter((s) => s.schemaVersion === 3);

  it.each(v3.map((s) => s.file))("%s", (file) => {
    const text = readFileSync(join(FIXTURES, file), "utf8");
    const input = parse(text) as any;
    const r = applyApparate(text, { containerdMajor: 2, snapshotterSocket: "/run/apparate-stargz/stargz.sock", certsDir: "/etc/containerd/certs.d" });
    expect(r.refused).toBeUndefined();
    const doc = parse(r.text) as any;
    expect(doc.version).toBe(3);
    // Only plugin sections containerd 2.x registers, or ones the node already had.
    for (const k of Object.keys(doc.plugins)) expect(knownPlugins.has(k) || k in (input.plugins ?? {}), k).toBe(true);
    const mine = doc.plugins["io.containerd.cri.v1.images"];
    // Each key apparate sets exists in 2.x's images plugin with the same type.
    for (const k of ["snapshotter", "disable_snapshot_annotations"]) {
      expect(k in images, k).toBe(true);
      expect(typeof mine[k], k).toBe(typeof images[k]);
    }
    expect(mine.snapshotter).toBe("stargz");
    expect(mine.disable_snapshot_annotations).toBe(false);
    expect(typeof mine.registry.config_path).toBe(typeof images.registry.config_path);
    expect(doc.proxy_plugins.stargz).toEqual({ type: "snapshot", address: "/run/apparate-stargz/stargz.sock" });
    // Nothing written at a 1.x location in a version-3 file; the node's own keys kept.
    expect(doc.plugins["io.containerd.grpc.v1.cri"]?.containerd?.snapshotter).toBe(input.plugins?.["io.containerd.grpc.v1.cri"]?.containerd?.snapshotter);
    expect(doc.plugins["io.containerd.cri.v1.runtime"]).toEqual(input.plugins?.["io.containerd.cri.v1.runtime"]);
    // Idempotent.
    expect(applyApparate(r.text, { containerdMajor: 2, snapshotterSocket: "/run/apparate-stargz/stargz.sock", certsDir: "/etc/containerd/certs.d" }).changed).toBe(false);
  });

  it("negative control: a version-2 edit of a version-3 file is caught by the same checks", () => {
    const text = readFileSync(join(FIXTURES, "containerd-2.1-default-v3.toml"), "utf8");
    expect(() => applyApparate(text, { containerdMajor: 1, snapshotterSocket: "/s", certsDir: "/c" })).toThrow(/reads config version 2, the file has version 3/);
  });
});
