// Oracle 1, the format: every layer the eStargz writer makes is opened by the
// stargz-snapshotter's own estargz library (Debian's package, v0.12), its TOC digest
// checked against the one we would annotate, every chunk checked by the library's
// verifier, and the tree it sees compared with what went in.
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConvertError, convertLayer, FOOTER_SIZE, parseFooter, type ConvertedLayer } from "../../src/convert/estargz.js";
import { TarError } from "../../src/convert/tar.js";
import { buildOracle, oracleBuildable, verifyWithOracle, type OracleEntry } from "../support/estargz-oracle.js";
import { gzipTar, type TarSpec } from "../support/tarball.js";

const sha = (b: Buffer | string) => "sha256:" + createHash("sha256").update(b).digest("hex");
const MiB = 1 << 20;
let dir: string;

async function convertToFile(layer: Buffer, name: string, chunkSize?: number): Promise<{ path: string; r: ConvertedLayer; blob: Buffer }> {
  const parts: Buffer[] = [];
  // Fed in uneven pieces, as a registry response arrives.
  const source = (async function* () { for (let i = 0; i < layer.length; i += 65_521) yield layer.subarray(i, i + 65_521); })();
  const r = await convertLayer(source, { write: async (b) => { parts.push(b); } }, { label: name, ...(chunkSize ? { chunkSize } : {}) });
  const blob = Buffer.concat(parts);
  const path = join(dir, `${name}.blob`);
  writeFileSync(path, blob);
  return { path, r, blob };
}

const big = randomBytes(9 * MiB + 123);
const exact4 = randomBytes(4 * MiB);
const exact8 = randomBytes(8 * MiB);
const cap = Buffer.from("0100000200200000000000000000000000000000", "hex");

/** Hand-made layers: each kind of entry, and what the snapshotter must see of it. */
const HANDMADE: Array<{ name: string; specs: TarSpec[]; expect: Array<Partial<OracleEntry> & { name: string }> }> = [
  {
    name: "kinds",
    specs: [
      { name: "etc/", type: "5", mode: 0o755 },
      { name: "etc/passwd", data: "root:x:0:0::/root:/bin/sh\n", uname: "root", gname: "root" },
      { name: "etc/hard", type: "1", linkname: "etc/passwd" },
      { name: "etc/sym", type: "2", linkname: "passwd" },
      { name: "dev/", type: "5" },
      { name: "dev/null", type: "3", devmajor: 1, devminor: 3, mode: 0o666 },
      { name: "dev/sda", type: "4", devmajor: 8, devminor: 0, mode: 0o660 },
      { name: "run/", type: "5" },
      { name: "run/fifo", type: "6", mode: 0o600 },
      { name: "empty", data: "" },
      { name: "home/", type: "5" },
      { name: "home/u/", type: "5", uid: 1000, gid: 1000, uname: "u", gname: "u" },
      { name: "home/u/f", data: "x", uid: 1000, gid: 1000, uname: "u", gname: "u", mode: 0o4755 },
    ],
    expect: [
      { name: "etc/passwd", type: "reg", numLink: 2, digest: sha("root:x:0:0::/root:/bin/sh\n") },
      { name: "etc/hard", type: "reg", numLink: 2, digest: sha("root:x:0:0::/root:/bin/sh\n") },
      { name: "etc/sym", type: "symlink", linkName: "passwd" },
      { name: "dev/null", type: "char", devMajor: 1, devMinor: 3, mode: 0o666 },
      { name: "dev/sda", type: "block", devMajor: 8, mode: 0o660 },
      { name: "run/fifo", type: "fifo", mode: 0o600 },
      { name: "empty", type: "reg", size: 0, digest: sha("") },
      { name: "home/u/f", type: "reg", uid: 1000, gid: 1000, mode: 0o4755 },
    ],
  },
  {
    name: "whiteouts-xattrs-longnames",
    specs: [
      { name: "a/", type: "5" },
      { name: "a/.wh..wh..opq", data: "" },
      { name: "a/.wh.gone", data: "" },
      { name: "bin/", type: "5" },
      { name: "bin/ping", data: "ELF", pax: { "SCHILY.xattr.security.capability": cap, "SCHILY.xattr.user.note": "<&>" } },
      { name: `p/${"d".repeat(120)}/${"f".repeat(90)}`, data: "pax path" },
      { name: `g/${"n".repeat(150)}`, data: "gnu longname", gnuLongName: true },
      { name: "old-style-dir/", type: "\0" },
    ],
    expect: [
      { name: "a/.wh..wh..opq", type: "reg", size: 0 },
      { name: "a/.wh.gone", type: "reg", size: 0 },
      { name: "bin/ping", type: "reg", xattrs: { "security.capability": cap.toString("base64"), "user.note": Buffer.from("<&>").toString("base64") } },
      { name: `p/${"d".repeat(120)}/${"f".repeat(90)}`, type: "reg", digest: sha("pax path") },
      { name: `g/${"n".repeat(150)}`, type: "reg", digest: sha("gnu longname") },
      { name: "old-style-dir", type: "dir" },
    ],
  },
  {
    name: "sizes-and-duplicates",
    specs: [
      { name: "four", data: exact4 },
      { name: "eight", data: exact8 },
      { name: "big", data: big },
      { name: "dup", data: "first" },
      { name: "./dup", data: "second, the one extraction keeps" },
    ],
    expect: [
      { name: "four", type: "reg", size: 4 * MiB, chunks: 1, digest: sha(exact4) },
      { name: "eight", type: "reg", size: 8 * MiB, chunks: 2, digest: sha(exact8) },
      { name: "big", type: "reg", size: big.length, chunks: 3, digest: sha(big) },
      { name: "dup", type: "reg", digest: sha("second, the one extraction keeps") },
    ],
  },
];

describe.skipIf(!oracleBuildable && process.env.CI !== "true")("eStargz writer, checked by the snapshotter's estargz library (oracle 1)", () => {
  beforeAll(() => {
    buildOracle();
    dir = mkdtempSync(join(tmpdir(), "apparate-estargz-"));
  }, 300_000);
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it.each(HANDMADE)("layer $name: the library verifies the TOC digest and every chunk, and sees each entry as written", async ({ name, specs, expect: wanted }) => {
    const { path, r, blob } = await convertToFile(gzipTar(specs), name);
    const seen = await verifyWithOracle(path, r.tocDigest);
    const byName = new Map(seen.map((e) => [e.name, e]));
    for (const w of wanted) expect(byName.get(w.name), w.name).toMatchObject(w);
    // The landmark is there, and the blob ends with the footer that points at the TOC.
    expect(byName.get(".no.prefetch.landmark")).toMatchObject({ type: "reg", size: 1, digest: sha(Buffer.from([0x0f])) });
    expect(parseFooter(blob.subarray(-FOOTER_SIZE))).toBeGreaterThan(0);
    // What a full pull unpacks: the diffID and uncompressed size describe the gunzipped blob.
    const plain = gunzipSync(blob);
    expect(r.diffID).toBe(sha(plain));
    expect(r.uncompressedSize).toBe(plain.length);
    expect(r.digest).toBe(sha(blob));
  });

  it("a directory tree packed by GNU tar (pax and gnu formats): same files, modes, links and contents through the library", async () => {
    const root = join(dir, "tree");
    mkdirSync(join(root, "usr/lib/deep/" + "x".repeat(110)), { recursive: true });
    writeFileSync(join(root, "usr/lib/deep/" + "x".repeat(110), "long-named-file-" + "y".repeat(100)), "deep\n");
    writeFileSync(join(root, "usr/lib/data"), randomBytes(5 * MiB + 7));
    writeFileSync(join(root, "usr/lib/empty"), "");
    linkSync(join(root, "usr/lib/data"), join(root, "usr/lib/data-hardlink"));
    symlinkSync("../lib/data", join(root, "usr/lib/data-symlink"));
    execFileSync("mkfifo", [join(root, "usr/lib/fifo")]);
    writeFileSync(join(root, "usr/.wh.removed"), "");
    for (const format of ["pax", "gnu"]) {
      const tar = execFileSync("tar", ["-C", root, `--format=${format}`, "--sort=name", "-cf", "-", "."], { maxBuffer: 64 << 20 });
      const { path, r } = await convertToFile(gzipSync(tar), `gnu-tar-${format}`);
      const seen = await verifyWithOracle(path, r.tocDigest);
      const byName = new Map(seen.map((e) => [e.name, e]));
      const walk = (rel: string) => {
        for (const n of readdirSync(join(root, rel))) {
          const p = rel ? `${rel}/${n}` : n;
          const st = lstatSync(join(root, p));
          const e = byName.get(p);
          expect(e, `${format}: ${p}`).toBeDefined();
          expect(e!.mode & 0o7777, p).toBe(st.mode & 0o7777);
          if (st.isFile()) expect(e!.digest, p).toBe(sha(readFileSync(join(root, p))));
          if (st.isFIFO()) expect(e!.type).toBe("fifo");
          if (st.isSymbolicLink()) expect(e).toMatchObject({ type: "symlink", linkName: "../lib/data" });
          if (st.isDirectory()) { expect(e!.type).toBe("dir"); walk(p); }
        }
      };
      walk("");
      expect(byName.get("usr/lib/data")!.numLink).toBe(2);
    }
  });

  it("an already-eStargz layer converted again keeps one landmark and one TOC, and still verifies", async () => {
    const first = await convertToFile(gzipTar(HANDMADE[0]!.specs), "once");
    const again = await convertToFile(first.blob, "twice");
    const seen = await verifyWithOracle(again.path, again.r.tocDigest);
    expect(seen.filter((e) => e.name === ".no.prefetch.landmark")).toHaveLength(1);
    expect(seen.some((e) => e.name === "stargz.index.json")).toBe(false);
    expect(again.r.tocDigest).toBe(first.r.tocDigest);
  });

  it("a smaller --chunk-size makes more chunks, each verified", async () => {
    const { path, r } = await convertToFile(gzipTar([{ name: "f", data: big }]), "small-chunks", 1 * MiB);
    const seen = await verifyWithOracle(path, r.tocDigest);
    expect(seen.find((e) => e.name === "f")).toMatchObject({ chunks: 10, digest: sha(big) });
  });

  // Negative controls: the oracle does reject bad blobs, so its acceptance above means something.
  it("negative control: the oracle rejects a wrong TOC digest and a corrupted chunk", async () => {
    const { path, r, blob } = await convertToFile(gzipTar([{ name: "f", data: big }]), "control");
    await expect(verifyWithOracle(path, sha("not the toc"))).rejects.toThrow(/invalid TOC JSON/);
    const bad = Buffer.from(blob);
    bad[Math.floor(blob.length / 2)]! ^= 0xff;
    writeFileSync(path, bad);
    await expect(verifyWithOracle(path, r.tocDigest)).rejects.toThrow(/oracle rejected/);
  });
});

describe("eStargz writer: bad layers fail naming the layer and the entry", () => {
  const collect = async (layer: Buffer) => convertLayer((async function* () { yield layer; })(), { write: async () => {} }, { label: "layer 3 (sha256:abc)" });

  it("a GNU sparse entry is refused by name", async () => {
    await expect(collect(gzipTar([{ name: "ok", data: "x" }, { name: "holes.img", type: "S", data: "" }]))).rejects.toThrow(TarError);
    await expect(collect(gzipTar([{ name: "holes.img", type: "S", data: "" }]))).rejects.toThrow(/layer 3 \(sha256:abc\): entry "holes.img" is a sparse file/);
  });

  it("a PAX sparse entry (GNU.sparse.*) is refused by name", async () => {
    await expect(collect(gzipTar([{ name: "p.img", data: "abc", pax: { "GNU.sparse.major": "1", "GNU.sparse.minor": "0" } }]))).rejects.toThrow(/entry "p.img" is a sparse file/);
  });

  it("a corrupt gzip stream is refused as such", async () => {
    const layer = gzipTar([{ name: "f", data: randomBytes(100_000) }]);
    const bad = Buffer.from(layer);
    bad[bad.length - 6]! ^= 0xff; // the CRC32 trailer
    await expect(collect(bad)).rejects.toThrow(ConvertError);
    await expect(collect(layer.subarray(0, layer.length / 2))).rejects.toThrow(/not valid gzip|ends/);
  });

  it("bytes that are not a tar stream are refused with the offset", async () => {
    await expect(collect(gzipSync(randomBytes(4096)))).rejects.toThrow(/layer 3 \(sha256:abc\): tar header checksum mismatch at offset 0/);
  });
});
