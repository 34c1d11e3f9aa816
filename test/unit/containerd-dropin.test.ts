// Where apparate's keys go when the containerd config imports files (src/nodeagent/dropin.ts),
// and the merge each containerd major does of an import (effectiveConfig). The merge rules
// were read from `containerd config dump` of 1.6.20, 1.7.24 and 2.1.9; the integration test
// test/integration/node-config-layouts.test.ts runs the outcomes on those binaries.
import { describe, expect, it } from "vitest";
import { parse } from "smol-toml";
import { applyApparate, effectiveConfig, type Table } from "../../src/nodeagent/containerd-config.js";
import { decideDropIn, dropInName, type ImportedFile, withDropIn } from "../../src/nodeagent/dropin.js";

const t = (s: string) => parse(s) as Table;
const cri2 = (body: string) => t(`version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n${body}\n`);
const file = (path: string, pattern: number, doc: Table): ImportedFile => ({ path, pattern, doc });
const exists = () => true;

describe("the drop-in's name in an imported glob", () => {
  it.each([
    ["*.toml", "zz-apparate.toml"],
    ["*.part", "zz-apparate.part"],
    ["runtime_*.toml", "runtime_zz-apparate.toml"],
    ["*", "zz-apparate"],
    ["cri.toml", undefined], // a file named outright is no directory to drop into
    ["*.t?ml", undefined],
    ["[a-z]*.toml", undefined],
    ["*-*.toml", undefined],
  ])("%s -> %s", (glob, name) => {
    expect(dropInName(glob)).toBe(name);
  });
});

describe("main file or drop-in", () => {
  const main2 = (imports: string[], extra = "") => t(`version = 2\nimports = ${JSON.stringify(imports)}\n${extra}`);
  const main3 = (imports: string[]) => t(`version = 3\nimports = ${JSON.stringify(imports)}\n`);

  it("containerd 1.x, the CRI section in a file of an imported directory: a drop-in after it, in that directory", () => {
    const files = [file("/var/cri/conf.d/registries.toml", 0, cri2('sandbox_image = "x"'))];
    expect(decideDropIn(main2(["/var/cri/conf.d/*.toml"]), ["/var/cri/conf.d/*.toml"], files, 1, exists)).toEqual({ mode: "dropin", place: { path: "/var/cri/conf.d/zz-apparate.toml", pattern: 0 } });
  });

  it("containerd 1.x, a version-1 import (plugins.cri) counts as setting the CRI section", () => {
    const files = [file("/d/a.toml", 0, t('[plugins.cri]\nsandbox_image = "x"\n'))];
    expect(decideDropIn(main2(["/d/*.toml"]), ["/d/*.toml"], files, 1, exists)).toMatchObject({ mode: "dropin" });
  });

  it("containerd 1.x, no import sets CRI: the main file is edited (its CRI section is the one that counts)", () => {
    const files = [file("/d/a.toml", 0, t('version = 2\n[plugins."io.containerd.internal.v1.opt"]\npath = "/x"\n'))];
    expect(decideDropIn(main2(["/d/*.toml"]), ["/d/*.toml"], files, 1, exists)).toEqual({ mode: "main" });
    expect(decideDropIn(t("version = 2\n"), [], [], 1, exists)).toEqual({ mode: "main" });
  });

  it("containerd 1.x, the CRI section from a file imported by name with no directory after it: refused, naming the file", () => {
    const files = [file("/etc/cri/conf.d/cri.toml", 0, cri2('sandbox_image = "x"'))];
    const d = decideDropIn(main2(["/etc/cri/conf.d/cri.toml"]), ["/etc/cri/conf.d/cri.toml"], files, 1, exists);
    expect(d).toMatchObject({ mode: "refuse", reason: "CriSectionImported" });
    expect(d.mode === "refuse" && d.message).toMatch(/\/etc\/cri\/conf\.d\/cri\.toml .*imports no existing directory by a glob/);
  });

  it("containerd 1.x, a directory imported before the file that sets CRI cannot hold the drop-in", () => {
    const files = [file("/run/k0s/containerd-cri.toml", 1, cri2('sandbox_image = "x"'))];
    const d = decideDropIn(main2(["/etc/k0s/containerd.d/*.toml", "/run/k0s/containerd-cri.toml"]), ["/etc/k0s/containerd.d/*.toml", "/run/k0s/containerd-cri.toml"], files, 1, exists);
    expect(d).toMatchObject({ mode: "refuse", reason: "CriSectionImported" });
    expect(d.mode === "refuse" && d.message).toMatch(/come before it/);
  });

  it("containerd 1.x, a CRI file that sorts after zz-apparate in the same directory: refused (the drop-in would be replaced)", () => {
    const files = [file("/d/zzz-last.toml", 0, cri2('sandbox_image = "x"'))];
    expect(decideDropIn(main2(["/d/*.toml"]), ["/d/*.toml"], files, 1, exists)).toMatchObject({ mode: "refuse", reason: "CriSectionImported" });
  });

  it("containerd 1.x, an imported directory that does not exist is not created", () => {
    const files = [file("/etc/cri/cri.toml", 0, cri2('sandbox_image = "x"'))];
    expect(decideDropIn(main2(["/etc/cri/cri.toml", "/nowhere/*.toml"]), ["/etc/cri/cri.toml", "/nowhere/*.toml"], files, 1, (d) => d !== "/nowhere")).toMatchObject({ mode: "refuse" });
  });

  it("containerd 2.x, an imported directory: a drop-in there whatever sets CRI (keys merge one by one)", () => {
    expect(decideDropIn(main3(["/etc/k0s/containerd.d/*.toml"]), ["/etc/k0s/containerd.d/*.toml"], [], 2, exists)).toEqual({ mode: "dropin", place: { path: "/etc/k0s/containerd.d/zz-apparate.toml", pattern: 0 } });
  });

  it("containerd 2.x, only files imported by name: the main file (2.x merges an import key by key, the candidate's dump is checked)", () => {
    const files = [file("/etc/cri/conf.d/cri.toml", 0, t('version = 3\n[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = true\n'))];
    expect(decideDropIn(main3(["/etc/cri/conf.d/cri.toml"]), ["/etc/cri/conf.d/cri.toml"], files, 2, exists)).toEqual({ mode: "main" });
  });

  it("containerd 2.x, legacy registry mirrors to move: the main file (a drop-in cannot delete them)", () => {
    const files = [file("/d/a.toml", 0, t('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\nendpoint = ["https://m"]\n'))];
    expect(decideDropIn(main2(["/d/*.toml"]), ["/d/*.toml"], files, 2, exists)).toEqual({ mode: "main" });
  });
});

describe("imports merged as each containerd major merges them", () => {
  const main = t('version = 3\n[plugins."io.containerd.cri.v1.images"]\ndiscard_unpacked_layers = true\n[plugins."io.containerd.cri.v1.images".pinned_images]\nsandbox = "main/pause:1"\n');
  const dropIn = t('version = 3\n[plugins."io.containerd.cri.v1.images"]\nsnapshotter = "stargz"\n');

  it("2.x: a plugin section from an import is merged key by key (2.1.9's dump keeps the main file's sandbox)", () => {
    expect(effectiveConfig(main, [dropIn], 2).plugins["io.containerd.cri.v1.images"]).toEqual({ discard_unpacked_layers: true, pinned_images: { sandbox: "main/pause:1" }, snapshotter: "stargz" });
  });

  it("1.x: it replaces the whole section (1.6.20's and 1.7.24's dumps lose the main file's sandbox_image)", () => {
    const m = cri2('sandbox_image = "main/pause:1"');
    const d = t('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "stargz"\n');
    expect(effectiveConfig(m, [d]).plugins["io.containerd.grpc.v1.cri"]).toEqual({ containerd: { snapshotter: "stargz" } });
  });

  it("1.x: a version-less import keeps a section named by its URI (Talos's registry part; dumped by 1.6.20 and 1.7.24)", () => {
    const talos = t('[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/etc/cri/conf.d/hosts"\n');
    expect(effectiveConfig(t("version = 2\n"), [talos]).plugins["io.containerd.grpc.v1.cri"]).toEqual({ registry: { config_path: "/etc/cri/conf.d/hosts" } });
  });
});

describe("what the drop-in holds", () => {
  const o = { snapshotterSocket: "/run/apparate-stargz/stargz.sock", certsDir: "/etc/containerd/certs.d", snapshotterName: "stargz" };

  it("2.x: apparate's keys only, config_path left to the import that sets it", () => {
    const merged = t('version = 3\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/etc/k0s/containerd.d/certs.d"\n');
    const r = applyApparate("version = 3\n", { ...o, containerdMajor: 2, effectiveIsDump: true, mergedOnto: merged }, merged);
    expect(parse(r.text)).toEqual({ version: 3, proxy_plugins: { stargz: { type: "snapshot", address: o.snapshotterSocket } }, plugins: { "io.containerd.cri.v1.images": { snapshotter: "stargz", disable_snapshot_annotations: false } } });
    expect(r.hostsDir).toBe("/etc/k0s/containerd.d/certs.d");
  });

  it("1.x: the whole CRI section as the imports make it, plus apparate's keys", () => {
    const eff = effectiveConfig(t("version = 2\n"), [cri2('sandbox_image = "x"\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/h"')]);
    const skeleton = `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "x"\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/h"\n`;
    const r = applyApparate(skeleton, { ...o, containerdMajor: 1 }, eff);
    expect(r.refused).toBeUndefined();
    expect((parse(r.text) as Table).plugins["io.containerd.grpc.v1.cri"]).toEqual({ sandbox_image: "x", registry: { config_path: "/h" }, containerd: { snapshotter: "stargz", disable_snapshot_annotations: false } });
  });
});

describe("the drop-in's place in containerd's import order", () => {
  it("each glob's matches sorted, globs in the order of imports", () => {
    const f = (path: string, pattern: number) => ({ path, pattern });
    const files = [f("/a/1.toml", 0), f("/b/a.toml", 1), f("/b/zzz.toml", 1), f("/c/x.toml", 2)];
    expect(withDropIn(files, f("/b/zz-apparate.toml", 1)).map((x) => x.path)).toEqual(["/a/1.toml", "/b/a.toml", "/b/zz-apparate.toml", "/b/zzz.toml", "/c/x.toml"]);
    expect(withDropIn([], f("/b/zz-apparate.toml", 1)).map((x) => x.path)).toEqual(["/b/zz-apparate.toml"]);
  });
});
