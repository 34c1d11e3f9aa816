// Tars the container runtimes accept, written by GNU tar itself (Debian's `tar`), each
// converted exactly or refused naming the layer and the entry. The converted blob is
// opened by the stargz-snapshotter's estargz library (oracle 1), which checks the TOC
// digest and every chunk and lists the tree the snapshotter would serve.
//  - pre-1970 mtimes in GNU format (base-256 negative numbers), large uids/gids;
//  - PAX global headers: Go's archive/tar (containerd's extractor) applies them to no
//    entry, so the TOC must not either (GNU tar's own reader does apply them);
//  - a hard link to a name replaced later in the same layer (tar -r appends the new
//    file): extraction leaves the link on the old file;
//  - names that are not UTF-8: refused (a JSON TOC would turn their bytes into U+FFFD).
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, linkSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertLayer, FOOTER_SIZE, parseFooter, type ConvertedLayer, type TocEntry } from "../../src/convert/estargz.js";
import { TarError } from "../../src/convert/tar.js";
import { buildOracle, oracleBuildable, verifyWithOracle } from "../support/estargz-oracle.js";

const sha = (b: Buffer | string) => "sha256:" + createHash("sha256").update(b).digest("hex");
let dir: string;

async function convert(layer: Buffer, name: string): Promise<{ path: string; r: ConvertedLayer; toc: TocEntry[] }> {
  const parts: Buffer[] = [];
  const source = (async function* () { for (let i = 0; i < layer.length; i += 65_521) yield layer.subarray(i, i + 65_521); })();
  const r = await convertLayer(source, { write: async (b) => { parts.push(b); } }, { label: `layer ${name}` });
  const blob = Buffer.concat(parts);
  const path = join(dir, `${name}.blob`);
  writeFileSync(path, blob);
  const off = parseFooter(blob.subarray(-FOOTER_SIZE))!;
  const tar = gunzipSync(blob.subarray(off, blob.length - FOOTER_SIZE));
  const size = Number.parseInt(tar.subarray(124, 136).toString("latin1").replace(/\0.*$/, "").trim(), 8);
  return { path, r, toc: (JSON.parse(tar.subarray(512, 512 + size).toString("utf8")) as { entries: TocEntry[] }).entries };
}

/** A fresh directory of files for GNU tar to pack. */
function tree(name: string): string {
  const root = join(dir, name);
  mkdirSync(root, { recursive: true });
  return root;
}

const gnuTar = (root: string, args: string[]) => gzipSync(execFileSync("tar", ["-C", root, "--numeric-owner", "-cf", "-", ...args], { maxBuffer: 64 << 20 }));

describe.skipIf(!oracleBuildable && process.env.CI !== "true")("tars GNU tar writes: converted exactly (oracle 1) or refused naming the entry", () => {
  beforeAll(() => {
    buildOracle();
    dir = mkdtempSync(join(tmpdir(), "apparate-tar-edges-"));
  }, 300_000);
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it.each(["gnu", "oldgnu"])("pre-1970 mtimes in --format=%s (base-256 negative numbers) convert, the TOC says 1960", async (format) => {
    const root = tree(`old-${format}`);
    writeFileSync(join(root, "old"), "from 1960\n");
    writeFileSync(join(root, "new"), "from 2020\n");
    execFileSync("touch", ["-d", "1960-01-01T00:00:00Z", join(root, "old")]);
    execFileSync("touch", ["-d", "2020-01-02T03:04:05Z", join(root, "new")]);
    const layer = gnuTar(root, [`--format=${format}`, "old", "new"]);
    // GNU tar really wrote base-256 here: the mtime field starts with 0xff.
    expect(gunzipSync(layer)[136]).toBe(0xff);
    const { path, r, toc } = await convert(layer, `old-${format}`);
    const seen = new Map((await verifyWithOracle(path, r.tocDigest)).map((e) => [e.name, e]));
    expect(seen.get("old")).toMatchObject({ type: "reg", digest: sha("from 1960\n") });
    const byName = new Map(toc.map((e) => [e.name, e]));
    expect(byName.get("old")?.modtime).toBe("1960-01-01T00:00:00Z");
    expect(byName.get("new")?.modtime).toBe("2020-01-02T03:04:05Z");
  });

  it("uids and gids beyond the octal field (--format=gnu writes base-256) come through exactly", async () => {
    const root = tree("ids");
    writeFileSync(join(root, "f"), "owned\n");
    const layer = gnuTar(root, ["--format=gnu", "--owner=3000000000", "--group=4000000000", "f"]);
    expect(gunzipSync(layer)[108]).toBe(0x80);
    const { path, r } = await convert(layer, "ids");
    const seen = new Map((await verifyWithOracle(path, r.tocDigest)).map((e) => [e.name, e]));
    expect(seen.get("f")).toMatchObject({ uid: 3_000_000_000, gid: 4_000_000_000 });
  });

  it("a PAX global header (tar --pax-option) changes no entry, as Go's archive/tar and containerd read it", async () => {
    const root = tree("global");
    writeFileSync(join(root, "f"), "own mtime\n");
    execFileSync("touch", ["-d", "2020-01-02T03:04:05Z", join(root, "f")]);
    // GNU tar writes mtime=1000000000 (2001) into a 'g' header before every entry.
    const layer = gnuTar(root, ["--format=pax", "--pax-option=mtime=1000000000,uid=4242", "f"]);
    expect(gunzipSync(layer)[156]).toBe("g".charCodeAt(0));
    const { path, r, toc } = await convert(layer, "global");
    const seen = new Map((await verifyWithOracle(path, r.tocDigest)).map((e) => [e.name, e]));
    expect(seen.get("f")).toMatchObject({ type: "reg", uid: 0, digest: sha("own mtime\n") });
    expect(toc.find((e) => e.name === "f")?.modtime).toBe("2020-01-02T03:04:05Z");
  });

  it("a hard link to a name replaced later in the layer (tar -r) keeps the old file, as extraction does", async () => {
    const root = tree("relink");
    writeFileSync(join(root, "x"), "old x\n");
    linkSync(join(root, "x"), join(root, "l"));
    linkSync(join(root, "x"), join(root, "m"));
    const file = join(dir, "relink.tar");
    execFileSync("tar", ["-C", root, "--format=gnu", "-cf", file, "x", "l", "m"]);
    rmSync(join(root, "x"));
    writeFileSync(join(root, "x"), "new x\n");
    execFileSync("tar", ["-C", root, "--format=gnu", "-rf", file, "x"]);
    // What extraction gives: GNU tar's own extraction of the same file.
    const out = tree("relink-extracted");
    execFileSync("tar", ["-C", out, "-xf", file]);
    expect(readFileSync(join(out, "l"), "utf8")).toBe("old x\n");
    const { path, r } = await convert(gzipSync(readFileSync(file)), "relink");
    const seen = new Map((await verifyWithOracle(path, r.tocDigest)).map((e) => [e.name, e]));
    expect(seen.get("x")).toMatchObject({ type: "reg", digest: sha("new x\n") });
    expect(seen.get("l")).toMatchObject({ type: "reg", digest: sha("old x\n"), numLink: 2 });
    expect(seen.get("m")).toMatchObject({ type: "reg", digest: sha("old x\n"), numLink: 2 });
  });

  it("negative control: a hard link to a name not replaced still resolves to that name", async () => {
    const root = tree("link");
    writeFileSync(join(root, "x"), "only x\n");
    linkSync(join(root, "x"), join(root, "l"));
    const { path, r } = await convert(gnuTar(root, ["--format=gnu", "x", "l"]), "link");
    const seen = new Map((await verifyWithOracle(path, r.tocDigest)).map((e) => [e.name, e]));
    expect(seen.get("x")).toMatchObject({ digest: sha("only x\n"), numLink: 2 });
    expect(seen.get("l")).toMatchObject({ digest: sha("only x\n"), numLink: 2 });
  });

  it.each(["gnu", "pax"])("a name that is not UTF-8 (--format=%s) is refused, naming the layer and the entry", async (format) => {
    const root = tree(`latin1-${format}`);
    mkdirSync(join(root, "etc"));
    // "café" in Latin-1: the byte 0xe9 is not UTF-8.
    writeFileSync(Buffer.from(join(root, "etc") + "/caf\xe9", "latin1"), "latin-1 name\n");
    const layer = gnuTar(root, [`--format=${format}`, "etc"]);
    const err = await convert(layer, `latin1-${format}`).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TarError);
    expect((err as TarError).code).toBe("tar-name-encoding");
    expect((err as Error).message).toContain(`layer latin1-${format}`);
    expect((err as Error).message).toContain("etc/caf\\xe9");
  });

  it("negative control: a UTF-8 name converts and the library serves it", async () => {
    const root = tree("utf8");
    writeFileSync(join(root, "café"), "utf-8 name\n");
    const { path, r } = await convert(gnuTar(root, ["--format=gnu", "café"]), "utf8");
    const seen = new Map((await verifyWithOracle(path, r.tocDigest)).map((e) => [e.name, e]));
    expect(seen.get("café")).toMatchObject({ digest: sha("utf-8 name\n") });
  });
});
