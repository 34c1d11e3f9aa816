// A streaming tar reader for layer conversion: ustar, PAX ('x' and global 'g') and GNU
// long names ('L'/'K'). Hand-written rather than tar-stream because the converter needs
// what tar-stream hides: the raw header blocks of each entry (they are copied into the
// eStargz blob unchanged, so the converted layer extracts exactly as the source) and the
// PAX records as given (SCHILY.xattr.* for the TOC), and it must refuse sparse entries
// by name instead of expanding them.
import { ApparateError } from "../errors.js";

export class TarError extends ApparateError {}

export type TarType = "reg" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarHeader {
  name: string;
  type: TarType;
  /** The tar header's mode number as is (Go's tar.Header.Mode). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  /** Seconds since the epoch, fractional when a PAX mtime says so. */
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  pax: Record<string, string>;
  /** PAX SCHILY.xattr.* records, values as raw bytes (capabilities are binary). */
  xattrs: Record<string, Buffer>;
}

export interface TarEntry {
  header: TarHeader;
  /** Every header block of the entry (PAX, GNU long name, the ustar block), as read. */
  raw: Buffer;
  /** Payload bytes that follow in the stream (non-regular entries may carry some too). */
  payloadSize: number;
}

/** Pulls exact byte counts out of an async stream of buffers, keeping little in memory. */
export class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  /** Bytes handed out so far. */
  position = 0;

  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n && !this.done) {
      const r = await this.it.next();
      if (r.done) { this.done = true; break; }
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    }
    return this.buf.length >= n;
  }

  /** Exactly n bytes, or undefined at a clean end of stream before any byte. */
  async read(n: number): Promise<Buffer | undefined> {
    if (n === 0) return Buffer.alloc(0);
    if (!(await this.fill(n))) {
      if (this.buf.length === 0) return undefined;
      throw new TarError("tar-truncated", `tar stream ends inside a block (${this.buf.length} of ${n} bytes at offset ${this.position})`);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.position += n;
    return out;
  }

  /** Up to max bytes (at least one unless the stream ended). */
  async readSome(max: number): Promise<Buffer | undefined> {
    if (!(await this.fill(1))) return undefined;
    const n = Math.min(max, this.buf.length);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.position += n;
    return out;
  }

  /** Reads and drops everything left (the tar trailer and any padding after it). */
  async drain(): Promise<void> {
    this.buf = Buffer.alloc(0);
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
    }
  }
}

const BLOCK = 512;

function cbytes(b: Buffer, off: number, len: number): Buffer {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return z < 0 ? s : s.subarray(0, z);
}

function cstring(b: Buffer, off: number, len: number): string {
  return cbytes(b, off, len).toString("utf8");
}

/**
 * Octal (NUL/space padded) or GNU base-256 numbers, as Go's archive/tar parseNumeric
 * reads them: base-256 is big-endian two's complement below the marker bit, so
 * 0xff… is negative (GNU tar writes pre-1970 mtimes that way). Values a JS number
 * cannot hold exactly are refused, naming the entry, rather than rounded.
 */
export function numeric(b: Buffer, off: number, len: number, field: string, entry: string): number {
  const s = b.subarray(off, off + len);
  if (s[0]! & 0x80) {
    const negative = (s[0]! & 0x40) !== 0;
    const inv = negative ? 0xff : 0;
    let v = 0n;
    for (let i = 0; i < s.length; i++) {
      let c = s[i]! ^ inv;
      if (i === 0) c &= 0x7f;
      v = (v << 8n) | BigInt(c);
    }
    const n = negative ? -v - 1n : v;
    if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new TarError("tar-header", `tar entry ${JSON.stringify(entry)}: field ${field} holds ${n}, beyond what is supported (±2^53)`, entry);
    }
    return Number(n);
  }
  // Go trims NULs and spaces at both ends, then reads up to the first NUL left.
  const trimmed = s.toString("latin1").replace(/[\0 ]+$/, "").replace(/^[\0 ]+/, "");
  const text = trimmed.split("\0")[0]!;
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError("tar-header", `tar entry ${JSON.stringify(entry)}: field ${field} is not an octal number (${JSON.stringify(text)})`, entry);
  return Number.parseInt(text, 8);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Bytes shown for an error: valid UTF-8 as is, other bytes as \xNN. */
function shown(b: Buffer): string {
  let out = "";
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    out += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/**
 * A name as UTF-8, or a refusal naming the layer and the entry: the TOC is JSON, so
 * any other bytes would be replaced by U+FFFD and two names could become one.
 */
function utf8Name(b: Buffer, what: string, label: string): string {
  try { return utf8.decode(b); } catch {
    throw new TarError("tar-name-encoding", `${label}: entry "${shown(b)}": the ${what} is not UTF-8, which an eStargz TOC (JSON) cannot hold exactly`, shown(b));
  }
}

function checksumOk(b: Buffer): boolean {
  let stored: number;
  try { stored = numeric(b, 148, 8, "chksum", ""); } catch { return false; }
  let unsigned = 0, signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

/** PAX extended header records: "<len> key=value\n", values as raw bytes. */
export function parsePax(data: Buffer, entry: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number.parseInt(data.subarray(i, sp).toString("latin1"), 10);
    if (!Number.isFinite(len) || len <= 0 || i + len > data.length) throw new TarError("tar-pax", `tar entry ${JSON.stringify(entry)}: malformed PAX record at byte ${i}`, entry);
    const rec = data.subarray(sp + 1, i + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq > 0) out[rec.subarray(0, eq).toString("utf8")] = Buffer.from(rec.subarray(eq + 1));
    i += len;
  }
  return out;
}

const TYPES: Record<string, TarType> = { "0": "reg", "\0": "reg", "7": "reg", "1": "hardlink", "2": "symlink", "3": "char", "4": "block", "5": "dir", "6": "fifo" };

/**
 * Reads the entries of a tar stream. After each yielded entry the caller must consume
 * exactly `header.size` payload bytes plus padding with readPayload / skipPayload.
 */
export class TarReader {
  private pendingPayload = 0;

  constructor(readonly input: ByteReader, private readonly label: string) {}

  /** The next entry, or undefined at the end-of-archive marker / end of stream. */
  async next(): Promise<TarEntry | undefined> {
    if (this.pendingPayload > 0) throw new Error("TarReader.next before the previous payload was read");
    const raws: Buffer[] = [];
    let pax: Record<string, Buffer> = {};
    let longName: Buffer | undefined;
    let longLink: Buffer | undefined;
    for (;;) {
      const block = await this.input.read(BLOCK);
      if (!block) return undefined;
      if (block.every((x) => x === 0)) return undefined;
      if (!checksumOk(block)) throw new TarError("tar-checksum", `${this.label}: tar header checksum mismatch at offset ${this.input.position - BLOCK} (not a tar stream, or corrupt)`, this.label);
      const flag = String.fromCharCode(block[156]!);
      const rawName = cstring(block, 0, 100);
      const size = numeric(block, 124, 12, "size", rawName);
      if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
        const padded = Math.ceil(size / BLOCK) * BLOCK;
        const body = await this.input.read(padded);
        if (!body) throw new TarError("tar-truncated", `${this.label}: tar stream ends inside a ${flag} header`, this.label);
        raws.push(block, body);
        const data = body.subarray(0, size);
        if (flag === "x") pax = { ...pax, ...parsePax(data, rawName) };
        else if (flag === "g") {
          // Go's archive/tar returns a global header as an entry of its own and applies
          // it to nothing; containerd and Docker then skip it. Its bytes stay in the
          // stream; its records change no entry here either.
          parsePax(data, rawName);
        } else {
          const z = data.indexOf(0);
          const v = Buffer.from(z < 0 ? data : data.subarray(0, z));
          if (flag === "L") longName = v; else longLink = v;
        }
        continue;
      }
      raws.push(block);
      const records = pax;
      const all: Record<string, string> = {};
      const xattrs: Record<string, Buffer> = {};
      for (const [k, v] of Object.entries(records)) {
        all[k] = v.toString("utf8");
        if (k.startsWith("SCHILY.xattr.")) xattrs[k.slice("SCHILY.xattr.".length)] = v;
      }
      const magic = block.subarray(257, 263).toString("latin1");
      const ustarPrefix = magic === "ustar\0" ? cbytes(block, 345, 155) : Buffer.alloc(0);
      const rawNameBytes = cbytes(block, 0, 100);
      const nameBytes = records.path ?? longName ?? (ustarPrefix.length ? Buffer.concat([ustarPrefix, Buffer.from("/"), rawNameBytes]) : rawNameBytes);
      const name = utf8Name(nameBytes, "name", this.label);
      const linkname = utf8Name(records.linkpath ?? longLink ?? cbytes(block, 157, 100), `link target of ${JSON.stringify(name)}`, this.label);
      if (flag === "S" || Object.keys(all).some((k) => k.startsWith("GNU.sparse."))) {
        throw new TarError("tar-sparse", `${this.label}: entry ${JSON.stringify(name)} is a sparse file, which eStargz cannot represent`, name);
      }
      let type = TYPES[flag];
      if (!type) throw new TarError("tar-type", `${this.label}: entry ${JSON.stringify(name)} has unsupported tar type ${JSON.stringify(flag)}`, name);
      // Old tars mark directories as regular files with a trailing slash (Go does the same).
      if (flag === "\0" && name.endsWith("/")) type = "dir";
      const entrySize = all.size !== undefined ? Number(all.size) : size;
      const header: TarHeader = {
        name, type,
        mode: numeric(block, 100, 8, "mode", name),
        uid: all.uid !== undefined ? Number(all.uid) : numeric(block, 108, 8, "uid", name),
        gid: all.gid !== undefined ? Number(all.gid) : numeric(block, 116, 8, "gid", name),
        uname: all.uname ?? cstring(block, 265, 32),
        gname: all.gname ?? cstring(block, 297, 32),
        size: type === "reg" ? entrySize : 0,
        mtime: all.mtime !== undefined ? Number(all.mtime) : numeric(block, 136, 12, "mtime", name),
        linkname,
        devmajor: type === "char" || type === "block" ? numeric(block, 329, 8, "devmajor", name) : 0,
        devminor: type === "char" || type === "block" ? numeric(block, 337, 8, "devminor", name) : 0,
        pax: all, xattrs,
      };
      // Directories, links and devices carry no payload whatever their size field says
      // (as Go's reader treats them); only regular files do.
      this.pendingPayload = header.size;
      return { header, raw: raws.length === 1 ? raws[0]! : Buffer.concat(raws), payloadSize: header.size };
    }
  }

  /** Up to max payload bytes of the current entry; undefined once it is all read (padding consumed). */
  async readPayload(max: number): Promise<Buffer | undefined> {
    if (this.pendingPayload === 0) return undefined;
    const want = Math.min(max, this.pendingPayload);
    const b = await this.input.readSome(want);
    if (!b) throw new TarError("tar-truncated", `${this.label}: tar stream ends inside an entry's payload`, this.label);
    this.pendingPayload -= b.length;
    return b;
  }

  /** The padding after a payload of `size` bytes. */
  async readPadding(size: number): Promise<Buffer> {
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    const b = await this.input.read(pad);
    if (pad > 0 && !b) throw new TarError("tar-truncated", `${this.label}: tar stream ends inside padding`, this.label);
    return b ?? Buffer.alloc(0);
  }
}
