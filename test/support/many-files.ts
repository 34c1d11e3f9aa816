// A layer of many small files, as a large node_modules or site-packages makes one:
// directories of 64 files each, a few hundred bytes per file, written as ustar by
// GNU tar's rules (the same header layout as test/support/tarball.ts), streamed so a
// layer of 1,000,000 files never sits in memory. Gzip level 1: the source's
// compression is not what is measured.
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { createGzip } from "node:zlib";

function header(name: string, type: string, size: number, mode: number): Buffer {
  const b = Buffer.alloc(512);
  const str = (off: number, len: number, v: string) => b.write(v, off, Math.min(len, Buffer.byteLength(v)), "utf8");
  const oct = (off: number, len: number, v: number) => str(off, len - 1, v.toString(8).padStart(len - 1, "0"));
  str(0, 100, name);
  oct(100, 8, mode); oct(108, 8, 1000); oct(116, 8, 1000);
  oct(124, 12, size); oct(136, 12, 1_700_000_000);
  b.write(type, 156, 1, "latin1");
  str(257, 6, "ustar\0"); str(263, 2, "00");
  str(265, 32, "node"); str(297, 32, "node");
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.fill(0, 148, 156);
  oct(148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** The uncompressed tar of `files` small files, in pieces. */
export function* manyFilesTar(files: number): Generator<Buffer> {
  const parts: Buffer[] = [header("node_modules/", "5", 0, 0o755)];
  for (let i = 0; i < files; i++) {
    const dir = `node_modules/pkg-${Math.floor(i / 64)}/`;
    if (i % 64 === 0) parts.push(header(dir, "5", 0, 0o755));
    const data = Buffer.from(`// file ${i} of a package\n'use strict';\nmodule.exports = function f${i}(x) { return x + ${i}; };\n`);
    parts.push(header(`${dir}lib/file-${i}.js`.replace("lib/", ""), "0", data.length, 0o644), data, Buffer.alloc((512 - (data.length % 512)) % 512));
    if (parts.length > 256) { yield Buffer.concat(parts); parts.length = 0; }
  }
  parts.push(Buffer.alloc(1024));
  yield Buffer.concat(parts);
}

/** Writes the gzip layer of `files` small files to `path`; returns its size. */
export async function writeManyFilesLayer(path: string, files: number): Promise<number> {
  const gz = createGzip({ level: 1 });
  const out = createWriteStream(path);
  gz.pipe(out);
  for (const b of manyFilesTar(files)) if (!gz.write(b)) await once(gz, "drain");
  gz.end();
  await once(out, "close");
  return out.bytesWritten;
}
