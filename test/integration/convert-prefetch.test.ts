// `apparate convert --prefetch FILE`: the listed files, their parent directories and
// (for a listed hard link) its target come first in each layer, behind
// `.prefetch.landmark`, the layout ctr-remote's optimize writes (stargz-snapshotter
// estargz/build.go sortEntries/moveRec). The stargz-snapshotter fetches [0, landmark
// offset) of the layer when it mounts it (fs/layer/layer.go prefetch, v0.12.0 as
// Debian packages it); `.no.prefetch.landmark` means no prefetch. Checked here on a
// tree GNU tar packs: the estargz library verifies the reordered layer, and GNU tar's
// extraction of it equals the source's.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePrefetchList } from "../../src/convert/command.js";
import { convertLayer, FOOTER_SIZE, parseFooter, type TocEntry } from "../../src/convert/estargz.js";
import { buildOracle, oracleBuildable, verifyWithOracle } from "../support/estargz-oracle.js";

const sha = (b: Buffer | string) => "sha256:" + createHash("sha256").update(b).digest("hex");
let dir: string;

async function convert(layer: Buffer, name: string, prefetch?: string[]) {
  const parts: Buffer[] = [];
  const source = (async function* () { for (let i = 0; i < layer.length; i += 65_521) yield layer.subarray(i, i + 65_521); })();
  const r = await convertLayer(source, { write: async (b) => { parts.push(b); } }, { label: name, chunkSize: 64 << 10, ...(prefetch ? { prefetch } : {}) });
  const blob = Buffer.concat(parts);
  const path = join(dir, `${name}.blob`);
  writeFileSync(path, blob);
  const off = parseFooter(blob.subarray(-FOOTER_SIZE))!;
  const tar = gunzipSync(blob.subarray(off, blob.length - FOOTER_SIZE));
  const size = Number.parseInt(tar.subarray(124, 136).toString("latin1").replace(/\0.*$/, "").trim(), 8);
  const toc = (JSON.parse(tar.subarray(512, 512 + size).toString("utf8")) as { entries: TocEntry[] }).entries;
  return { path, r, blob, toc };
}

/** Every file's type, mode and content digest under root. */
function treeOf(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const n of readdirSync(join(root, rel)).sort()) {
      const p = rel ? `${rel}/${n}` : n;
      const st = lstatSync(join(root, p));
      out[p] = `${st.mode.toString(8)} ${st.nlink} ${st.isFile() ? sha(readFileSync(join(root, p))) : st.isSymbolicLink() ? "link" : "dir"}`;
      if (st.isDirectory()) walk(p);
    }
  };
  walk("");
  return out;
}

describe.skipIf(!oracleBuildable && process.env.CI !== "true")("--prefetch: listed files first, behind .prefetch.landmark", () => {
  let layer: Buffer;
  let src: string;

  beforeAll(() => {
    buildOracle();
    dir = mkdtempSync(join(tmpdir(), "apparate-prefetch-"));
    src = join(dir, "src");
    for (const d of ["usr/bin", "usr/lib/python3/json", "etc", "var/cache"]) mkdirSync(join(src, d), { recursive: true });
    writeFileSync(join(src, "usr/bin/python3"), Buffer.alloc(200_000, "elf"));
    writeFileSync(join(src, "usr/lib/python3/json/__init__.py"), "import json\n");
    writeFileSync(join(src, "usr/lib/python3/os.py"), "# os\n");
    writeFileSync(join(src, "etc/hostname"), "box\n");
    writeFileSync(join(src, "var/cache/big"), Buffer.alloc(300_000, "cache"));
    linkSync(join(src, "usr/bin/python3"), join(src, "usr/bin/python3.11"));
    symlinkSync("python3", join(src, "usr/bin/py"));
    layer = gzipSync(execFileSync("tar", ["-C", src, "--sort=name", "--numeric-owner", "--format=gnu", "-cf", "-", "."], { maxBuffer: 64 << 20 }));
  }, 300_000);
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it("puts the listed files and their directories first, then .prefetch.landmark; the library verifies it and tar extracts the same tree", async () => {
    const list = parsePrefetchList("# recorded by a run\n/usr/bin/python3\n\nusr/lib/python3/json/__init__.py\n./usr/bin/python3.11\n/not/in/this/layer\n");
    const { path, r, blob, toc } = await convert(layer, "prefetch", list);
    const before = toc.slice(0, toc.findIndex((e) => e.name === ".prefetch.landmark")).filter((e) => e.type !== "chunk").map((e) => e.name);
    expect(before).toEqual(["./usr/", "./usr/bin/", "./usr/bin/python3", "./usr/bin/python3.11", "./usr/lib/", "./usr/lib/python3/", "./usr/lib/python3/json/", "./usr/lib/python3/json/__init__.py"]);
    expect(r.prefetched).toBe(before.length);
    // The parts are assembled after the fact: the diffID and size are still those of the blob's stream.
    const plain = gunzipSync(blob);
    expect(r.diffID).toBe(sha(plain));
    expect(r.uncompressedSize).toBe(plain.length);
    expect(r.digest).toBe(sha(blob));
    expect(toc.some((e) => e.name === ".no.prefetch.landmark")).toBe(false);
    // Every entry exactly once (the rest in layer order), and the library verifies all of it.
    const seen = await verifyWithOracle(path, r.tocDigest);
    expect(new Map(seen.map((e) => [e.name, e])).get("usr/bin/python3.11")).toMatchObject({ digest: sha(Buffer.alloc(200_000, "elf")), numLink: 2 });
    expect(toc.filter((e) => e.type !== "chunk").length).toBe(new Set(toc.map((e) => e.name)).size);
    // A full pull extracts the same tree (GNU tar as the extractor), landmark and TOC aside.
    const out = join(dir, "extracted");
    mkdirSync(out);
    execFileSync("tar", ["-C", out, "-xf", "-"], { input: gunzipSync(blob) });
    rmSync(join(out, ".prefetch.landmark"));
    rmSync(join(out, "stargz.index.json"));
    expect(treeOf(out)).toEqual(treeOf(src));
  });

  it("a listed hard link whose target is not listed stays after the landmark with its target (extraction needs the target first)", async () => {
    const { path, r, toc } = await convert(layer, "link-only", ["usr/bin/python3.11"]);
    const landmark = toc.findIndex((e) => e.name === ".prefetch.landmark");
    expect(toc.slice(0, landmark).map((e) => e.name)).toEqual(["./usr/", "./usr/bin/"]);
    expect(toc.findIndex((e) => e.name === "./usr/bin/python3.11")).toBeGreaterThan(landmark);
    expect(r.prefetched).toBe(2);
    await verifyWithOracle(path, r.tocDigest);
  });

  it("negative control: without a list the layer starts with .no.prefetch.landmark (nothing prefetched)", async () => {
    const { toc, r } = await convert(layer, "plain");
    expect(toc[0]!.name).toBe(".no.prefetch.landmark");
    expect(r.prefetched).toBe(0);
  });
});
