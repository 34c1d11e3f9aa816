// Oracles 2 and 3 for `apparate convert`, on loopback with Debian's docker-registry and
// containerd:
//  2. the reference tool: `ctr-remote images convert --estargz --oci` of the same image;
//     the TOC entries (name, type, size, mode, link, uid/gid, digests, chunking,
//     landmark position) are equal, offsets aside;
//  3. the content: containerd pulls the converted image in full (overlayfs; unpacking
//     checks every layer against its diffID) and the mounted tree equals the source's.
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { FOOTER_SIZE, parseFooter, type TocEntry } from "../../src/convert/estargz.js";
import { TestContainerd } from "../support/containerd.js";
import { getBlob, getManifest, pushTestImage } from "../support/oci-images.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";

const MiB = 1 << 20;
const canRun = registryAvailable && process.getuid?.() === 0 && existsSync("/usr/bin/containerd") && existsSync("/usr/bin/ctr-remote");
const sha = (b: Buffer | string) => "sha256:" + createHash("sha256").update(b).digest("hex");

/** The TOC of an eStargz blob, read from its footer (independently of the writer's own state). */
function tocOf(blob: Buffer): TocEntry[] {
  const off = parseFooter(blob.subarray(-FOOTER_SIZE));
  if (off === undefined) throw new Error("no eStargz footer");
  const tar = gunzipSync(blob.subarray(off, blob.length - FOOTER_SIZE));
  const size = Number.parseInt(tar.subarray(124, 136).toString("latin1").replace(/\0.*$/, "").trim(), 8);
  return (JSON.parse(tar.subarray(512, 512 + size).toString("utf8")) as { entries: TocEntry[] }).entries;
}

/**
 * What must agree between two converters: everything but where bytes landed. User and
 * group names are filled forward, because Go's estargz.Build writes each name only the
 * first time an id appears in each of its GOMAXPROCS parts.
 */
function comparable(entries: TocEntry[]): Array<Record<string, unknown>> {
  const users = new Map<number, string>();
  const groups = new Map<number, string>();
  return entries.map((e) => {
    const { offset: _o, innerOffset: _i, ...rest } = e;
    if (e.type === "chunk") return rest;
    if (e.userName) users.set(e.uid ?? 0, e.userName);
    if (e.groupName) groups.set(e.gid ?? 0, e.groupName);
    const u = users.get(e.uid ?? 0);
    const g = groups.get(e.gid ?? 0);
    return { ...rest, ...(u ? { userName: u } : {}), ...(g ? { groupName: g } : {}) };
  });
}

interface Node { type: string; mode: number; uid: number; gid: number; size?: number; digest?: string; link?: string; rdev?: number }

function treeOf(root: string): Map<string, Node> {
  const out = new Map<string, Node>();
  const walk = (rel: string) => {
    for (const n of readdirSync(join(root, rel)).sort()) {
      const p = rel ? `${rel}/${n}` : n;
      const st = lstatSync(join(root, p));
      const node: Node = { type: st.isDirectory() ? "dir" : st.isFile() ? "reg" : st.isSymbolicLink() ? "symlink" : st.isFIFO() ? "fifo" : st.isCharacterDevice() ? "char" : st.isBlockDevice() ? "block" : "other", mode: st.mode, uid: st.uid, gid: st.gid };
      if (st.isFile()) { node.size = st.size; node.digest = sha(readFileSync(join(root, p))); }
      if (st.isSymbolicLink()) node.link = readlinkSync(join(root, p));
      if (st.isCharacterDevice() || st.isBlockDevice()) node.rdev = st.rdev;
      out.set(p, node);
      if (st.isDirectory()) walk(p);
    }
  };
  walk("");
  return out;
}

describe.skipIf(!canRun && process.env.CI !== "true")("apparate convert vs ctr-remote (oracle 2) and a full containerd pull (oracle 3)", () => {
  let reg: RunningRegistry;
  let ctd: TestContainerd;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "apparate-oracles-"));
    reg = await startRegistry();
    const configPath = join(dir, "containerd.toml");
    writeFileSync(configPath, `version = 2\nroot = "${dir}/ctd/root"\nstate = "${dir}/ctd/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\naddress = "${dir}/ctd/containerd.sock"\n`);
    ctd = new TestContainerd(join(dir, "ctd"), configPath);
    await ctd.start();

    // Layer 1: a real tree packed by GNU tar; layers 2-3: hand-made entries GNU tar will not make here.
    const root = join(dir, "tree");
    mkdirSync(join(root, "usr/share/doc/" + "long".repeat(30)), { recursive: true });
    mkdirSync(join(root, "etc"), { recursive: true });
    writeFileSync(join(root, "etc/hostname"), "apparate\n");
    writeFileSync(join(root, "usr/share/doc/" + "long".repeat(30), "README-" + "x".repeat(120)), "long names\n");
    writeFileSync(join(root, "usr/share/four"), randomBytes(4 * MiB));
    writeFileSync(join(root, "usr/share/eight"), randomBytes(8 * MiB));
    writeFileSync(join(root, "usr/share/large"), Buffer.concat([randomBytes(6 * MiB), Buffer.alloc(7 * MiB, "compressible ")]));
    writeFileSync(join(root, "usr/share/empty"), "");
    linkSync(join(root, "usr/share/four"), join(root, "usr/share/four.hardlink"));
    symlinkSync("../share/eight", join(root, "usr/share/eight.symlink"));
    execFileSync("mkfifo", [join(root, "usr/share/fifo")]);
    execFileSync("chown", ["-R", "1000:1000", join(root, "usr/share/doc")]);
    const l1 = gzipSync(execFileSync("tar", ["-C", root, "--format=pax", "--sort=name", "--numeric-owner", "-cf", "-", "."], { maxBuffer: 128 << 20 }));
    const l2 = gzipTar([
      { name: "etc/", type: "5" }, { name: "etc/.wh.hostname", data: "" },
      { name: "usr/", type: "5" }, { name: "usr/share/", type: "5" }, { name: "usr/share/doc/", type: "5" }, { name: "usr/share/doc/.wh..wh..opq", data: "" },
      { name: "usr/share/doc/new", data: "after the opaque dir\n", uid: 33, gid: 33, uname: "www-data", gname: "www-data" },
      { name: "bin/", type: "5" }, { name: "bin/tool", data: "#!/bin/sh\n", mode: 0o755, pax: { "SCHILY.xattr.user.origin": "apparate" } },
      { name: "dev/", type: "5" }, { name: "dev/null", type: "3", devmajor: 1, devminor: 3, mode: 0o666 },
    ]);
    const l3 = gzipTar([
      { name: "twice", data: "first\n" }, { name: "x/", type: "5" }, { name: "x/y", data: "y\n" }, { name: "twice", data: "second wins\n" },
    ]);
    await pushTestImage(reg.url, "oracle/app", "1", [{ layers: [{ blob: l1 }, { blob: l2 }, { blob: l3 }] }]);
  }, 300_000);

  afterAll(async () => {
    await ctd?.stop();
    await reg?.stop();
    try { execFileSync("bash", ["-c", `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]); } catch { /* none */ }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("oracle 2: every layer's TOC equals ctr-remote's, offsets aside (names, types, sizes, modes, links, ids, xattrs, digests, chunks, landmark first)", async () => {
    const src = `${reg.host}/oracle/app:1`;
    let err = "";
    const code = await main(["convert", src, "--plain-http"], new Writable({ write(_c, _e, cb) { cb(); } }), new Writable({ write(c, _e, cb) { err += c; cb(); } }));
    expect(code, err).toBe(0);
    await ctd.ctr(["images", "pull", "--plain-http", src]);
    await ctd.ctr(["images", "convert", "--estargz", "--oci", src, `${reg.host}/oracle/app:1-ctr`]);
    await ctd.ctr(["images", "push", "--plain-http", `${reg.host}/oracle/app:1-ctr`]);

    const ours = (await getManifest(reg.url, "oracle/app", "1-apparate")).json;
    const theirs = (await getManifest(reg.url, "oracle/app", "1-ctr")).json;
    expect(ours.layers).toHaveLength(3);
    expect(theirs.layers).toHaveLength(3);
    let bytesOurs = 0, bytesTheirs = 0;
    for (let i = 0; i < 3; i++) {
      const a = tocOf(await getBlob(reg.url, "oracle/app", ours.layers[i].digest));
      const b = tocOf(await getBlob(reg.url, "oracle/app", theirs.layers[i].digest));
      expect(a[0]!.name).toBe(".no.prefetch.landmark");
      expect(comparable(a), `layer ${i + 1}`).toEqual(comparable(b));
      // Both annotate what the snapshotter needs.
      expect(Object.keys(theirs.layers[i].annotations ?? {})).toContain("containerd.io/snapshot/stargz/toc.digest");
      bytesOurs += ours.layers[i].size;
      bytesTheirs += theirs.layers[i].size;
    }
    // Same compression level and chunking: sizes within 1 %.
    expect(Math.abs(bytesOurs - bytesTheirs) / bytesTheirs).toBeLessThan(0.01);
  }, 300_000);

  it("oracle 3: containerd pulls the converted image in full (diffIDs checked on unpack) and its tree equals the source's", async () => {
    const src = `${reg.host}/oracle/app:1`;
    await ctd.ctr(["images", "pull", "--plain-http", src]);
    await ctd.ctr(["images", "pull", "--plain-http", `${src}-apparate`]);
    const a = join(dir, "mnt-src"), b = join(dir, "mnt-apparate");
    mkdirSync(a); mkdirSync(b);
    await ctd.ctr(["images", "mount", src, a]);
    await ctd.ctr(["images", "mount", `${src}-apparate`, b]);
    try {
      const want = treeOf(a);
      const got = treeOf(b);
      // eStargz layers carry two files of their own, extracted by a full pull of any eStargz
      // image (ctr-remote's too): the landmark and the TOC. Everything else is the source's.
      for (const n of [".no.prefetch.landmark", "stargz.index.json"]) expect(got.delete(n), n).toBe(true);
      expect(want.get("twice")?.digest).toBe(sha("second wins\n"));
      expect(want.has("etc/hostname")).toBe(false);
      expect([...want.keys()].filter((k) => k.startsWith("usr/share/doc/"))).toEqual(["usr/share/doc/new"]);
      expect([...got.keys()]).toEqual([...want.keys()]);
      expect(got).toEqual(want);
    } finally {
      await ctd.ctr(["images", "unmount", a]).catch(() => undefined);
      await ctd.ctr(["images", "unmount", b]).catch(() => undefined);
    }
  }, 300_000);
});
