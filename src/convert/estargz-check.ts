// Whether a layer that claims to be eStargz (its descriptor carries a toc.digest
// annotation) really is one before it is copied as is: the blob's digest, a footer
// that points inside the blob, and a TOC member there that holds stargz.index.json
// whose sha256 is the annotated digest. Anything else is converted like a plain layer:
// an annotation alone proves nothing. The blob is spooled to a temporary file (the TOC
// sits at its end), so memory stays bounded whatever its size.
import { createHash } from "node:crypto";
import { createReadStream, mkdtempSync, openSync, closeSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import { FOOTER_SIZE, parseFooter, TOC_NAME } from "./estargz.js";

export type EstargzCheck = { ok: true } | { ok: false; reason: string };

/** Reads `source` to the end and says whether it is the eStargz blob `digest` with TOC `tocDigest`. */
export async function checkEstargzBlob(source: AsyncIterable<Buffer>, digest: string, tocDigest: string): Promise<EstargzCheck> {
  const dir = mkdtempSync(join(tmpdir(), "apparate-esgz-check-"));
  const path = join(dir, "blob");
  const fd = openSync(path, "w+");
  try {
    const hash = createHash("sha256");
    let size = 0;
    for await (const c of source) {
      const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
      hash.update(b);
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done, size + done);
      size += b.length;
    }
    const got = "sha256:" + hash.digest("hex");
    if (got !== digest) return { ok: false, reason: `the blob's digest is ${got}, not ${digest}` };
    if (size < FOOTER_SIZE) return { ok: false, reason: `the blob (${size} bytes) is shorter than an eStargz footer` };
    const tail = Buffer.alloc(FOOTER_SIZE);
    readSync(fd, tail, 0, FOOTER_SIZE, size - FOOTER_SIZE);
    const tocOffset = parseFooter(tail);
    if (tocOffset === undefined) return { ok: false, reason: "the blob does not end with an eStargz footer" };
    if (tocOffset >= size - FOOTER_SIZE) return { ok: false, reason: `the footer points at byte ${tocOffset}, past the TOC area` };
    return await checkToc(path, tocOffset, size - FOOTER_SIZE - 1, tocDigest);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The gzip member(s) at [start, end]: a tar header named stargz.index.json and the JSON whose digest is `tocDigest`. */
async function checkToc(path: string, start: number, end: number, tocDigest: string): Promise<EstargzCheck> {
  const gunzip = createGunzip();
  createReadStream(path, { start, end }).on("error", (e) => gunzip.destroy(e)).pipe(gunzip);
  const hash = createHash("sha256");
  let header = Buffer.alloc(0);
  let size = -1;
  let hashed = 0;
  try {
    for await (const c of gunzip) {
      let b = c as Buffer;
      if (size < 0) {
        header = Buffer.concat([header, b]);
        if (header.length < 512) continue;
        const name = header.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
        if (name !== TOC_NAME) return { ok: false, reason: `the footer points at ${JSON.stringify(name)}, not ${TOC_NAME}` };
        size = Number.parseInt(header.subarray(124, 136).toString("latin1").replace(/[\0 ].*$/s, ""), 8);
        if (!Number.isSafeInteger(size)) return { ok: false, reason: "the TOC's tar header has no valid size" };
        b = header.subarray(512);
      }
      const take = Math.min(b.length, size - hashed);
      hash.update(b.subarray(0, take));
      hashed += take;
    }
  } catch (err) {
    return { ok: false, reason: `the TOC is not valid gzip (${(err as Error).message})` };
  }
  if (size < 0 || hashed < size) return { ok: false, reason: "the TOC ends early" };
  const got = "sha256:" + hash.digest("hex");
  if (got !== tocDigest) return { ok: false, reason: `the TOC's digest is ${got}, not the annotated ${tocDigest}` };
  return { ok: true };
}
