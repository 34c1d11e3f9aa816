// Hand-made tar streams for converter tests: the entry kinds GNU tar will not make on
// demand here (xattrs without setfattr, device nodes without root-only mknod calls, a
// name twice in one layer, GNU long names next to PAX ones, sparse files, old-style
// directories) written byte by byte as POSIX.1-2001 / GNU tar describe them.
import { gzipSync } from "node:zlib";

export interface TarSpec {
  name: string;
  /** Typeflag: "0" file, "1" hardlink, "2" symlink, "3" char, "4" block, "5" dir, "6" fifo, "S" GNU sparse, "\0" old file. */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: number;
  linkname?: string;
  data?: Buffer | string;
  devmajor?: number;
  devminor?: number;
  /** Extra PAX records (e.g. SCHILY.xattr.user.x); a long name goes to PAX "path" unless gnuLongName. */
  pax?: Record<string, string | Buffer>;
  gnuLongName?: boolean;
}

function header(name: string, type: string, size: number, s: Partial<TarSpec>): Buffer {
  const b = Buffer.alloc(512);
  const str = (off: number, len: number, v: string) => b.write(v, off, Math.min(len, Buffer.byteLength(v)), "utf8");
  const oct = (off: number, len: number, v: number) => str(off, len - 1, v.toString(8).padStart(len - 1, "0"));
  str(0, 100, name);
  oct(100, 8, s.mode ?? (type === "5" ? 0o755 : 0o644));
  oct(108, 8, s.uid ?? 0); oct(116, 8, s.gid ?? 0);
  oct(124, 12, size); oct(136, 12, s.mtime ?? 1_700_000_000);
  b.write(type, 156, 1, "latin1");
  str(157, 100, s.linkname ?? "");
  str(257, 6, "ustar\0"); str(263, 2, "00");
  str(265, 32, s.uname ?? ""); str(297, 32, s.gname ?? "");
  oct(329, 8, s.devmajor ?? 0); oct(337, 8, s.devminor ?? 0);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.fill(0, 148, 156);
  oct(148, 7, sum);
  b[155] = 0x20;
  return b;
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

export function tarEntries(specs: readonly TarSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of specs) {
    const type = s.type ?? "0";
    const data = typeof s.data === "string" ? Buffer.from(s.data) : (s.data ?? Buffer.alloc(0));
    const size = type === "0" || type === "\0" || type === "S" ? data.length : 0;
    const pax: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(s.pax ?? {})) pax[k] = Buffer.isBuffer(v) ? v : Buffer.from(v);
    let name = s.name;
    if (Buffer.byteLength(name) > 100) {
      if (s.gnuLongName) {
        const ln = Buffer.concat([Buffer.from(name), Buffer.from([0])]);
        parts.push(header("././@LongLink", "L", ln.length, {}), ln, pad(ln.length));
      } else pax.path = Buffer.from(name);
      name = name.slice(0, 99);
    }
    if (Object.keys(pax).length) {
      const body = Buffer.concat(Object.entries(pax).map(([k, v]) => paxRecord(k, v)));
      parts.push(header(`PaxHeaders/${name.slice(0, 80)}`, "x", body.length, {}), body, pad(body.length));
    }
    parts.push(header(name, type, size, s), data, pad(data.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function gzipTar(specs: readonly TarSpec[]): Buffer {
  return gzipSync(tarEntries(specs));
}
