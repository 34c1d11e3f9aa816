// The eStargz layer writer (stargz-snapshotter v0.18 format), streaming: a gzip tar
// layer in, an eStargz blob out, in bounded memory whatever the layer's size.
//
// The blob is a run of gzip members: one opened at the start, a new one before every
// payload chunk of a regular file (offsets recorded in the TOC), one for the TOC
// (stargz.index.json and the tar end-of-archive) and the 51-byte footer that points at
// it. The landmark file comes first (no prioritised files: `.no.prefetch.landmark`).
// Entry headers are copied as read, so the uncompressed stream extracts exactly as the
// source did; only the source's own landmark / TOC entries and its trailer are dropped.
// Gzip and gunzip run on libuv's thread pool (Node's async zlib), hashes on the caller's.
import { createHash, type Hash } from "node:crypto";
import { once } from "node:events";
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createGunzip, createGzip, gzip, gzipSync, type Gzip } from "node:zlib";
import { ApparateError } from "../errors.js";
import { ByteReader, TarReader, type TarHeader } from "./tar.js";
import { TocSpill } from "./toc-spill.js";

export class ConvertError extends ApparateError {}

export const TOC_NAME = "stargz.index.json";
export const NO_PREFETCH_LANDMARK = ".no.prefetch.landmark";
export const PREFETCH_LANDMARK = ".prefetch.landmark";
export const LANDMARK_CONTENTS = 0x0f;
export const FOOTER_SIZE = 51;
export const DEFAULT_CHUNK_SIZE = 4 << 20;
export const TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest";
export const UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size";

/** Where the converted blob goes: a file, a registry upload, a hash. */
export interface Sink {
  write(chunk: Buffer): Promise<void>;
}

export interface WriterOptions {
  chunkSize?: number;
  /** gzip level, 9 as ctr-remote's default. */
  level?: number;
  /** Names the layer in errors, e.g. "layer 2 (sha256:…)". */
  label?: string;
  /** Called with (compressed bytes read, bytes written) as the conversion goes. */
  onProgress?: (read: number, written: number) => void;
  /** Paths to put first, behind `.prefetch.landmark` (any of "a/b", "/a/b", "./a/b"). */
  prefetch?: readonly string[];
}

export interface ConvertedLayer {
  /** sha256 digest and size of the eStargz blob. */
  digest: string;
  size: number;
  /** sha256 of the new uncompressed tar: the config's rootfs.diff_ids entry. */
  diffID: string;
  uncompressedSize: number;
  tocDigest: string;
  /** What was read: the source blob's digest and size, and its uncompressed digest. */
  sourceDigest: string;
  sourceSize: number;
  sourceDiffID: string;
  entries: number;
  /** Entries placed before the landmark (prioritised files and their directories). */
  prefetched: number;
}

/** One TOC entry, fields in the order Go's estargz.TOCEntry marshals them. */
export interface TocEntry {
  name: string;
  type: string;
  size?: number;
  modtime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  offset?: number;
  innerOffset?: number;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, string>;
  digest?: string;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
}

const hexOf = (h: Hash) => "sha256:" + h.digest("hex");

/** Go's path.Clean("/"+name) without the leading slash: how estargz compares names. */
export function cleanEntryName(name: string): string {
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop(); else out.push(part);
  }
  return out.join("/");
}

/** A ustar header block as Go's tar.Writer writes one for a plain Header{Name, Typeflag: reg, Size}. */
export function ustarHeader(name: string, size: number): Buffer {
  const b = Buffer.alloc(512);
  const str = (off: number, len: number, s: string) => { b.write(s, off, Math.min(len, Buffer.byteLength(s)), "utf8"); };
  const oct = (off: number, len: number, v: number) => { str(off, len - 1, v.toString(8).padStart(len - 1, "0")); };
  if (Buffer.byteLength(name) > 100) throw new Error(`ustarHeader: name too long: ${name}`);
  str(0, 100, name);
  oct(100, 8, 0); oct(108, 8, 0); oct(116, 8, 0);
  oct(124, 12, size); oct(136, 12, 0);
  b[156] = 0x30;
  str(257, 6, "ustar\0"); str(263, 2, "00");
  oct(329, 8, 0); oct(337, 8, 0);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.fill(0, 148, 156);
  oct(148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** The 51-byte footer: an empty gzip member whose extra field says where the TOC starts. */
export function footer(tocOffset: number): Buffer {
  const subfield = tocOffset.toString(16).padStart(16, "0") + "STARGZ";
  const b = Buffer.alloc(FOOTER_SIZE);
  b.set([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff], 0);
  b.writeUInt16LE(26, 10);
  b.set([0x53, 0x47], 12);
  b.writeUInt16LE(22, 14);
  b.write(subfield, 16, "latin1");
  b.set([0x01, 0x00, 0x00, 0xff, 0xff], 38);
  // CRC32 and ISIZE of the empty payload: eight zero bytes (already zero).
  return b;
}

/** Reads the TOC offset out of a footer, or undefined when these 51 bytes are not one. */
export function parseFooter(b: Buffer): number | undefined {
  if (b.length !== FOOTER_SIZE || b[0] !== 0x1f || b[1] !== 0x8b || b[3] !== 0x04) return undefined;
  const s = b.subarray(16, 38).toString("latin1");
  if (!/^[0-9a-f]{16}STARGZ$/.test(s)) return undefined;
  return Number.parseInt(s.slice(0, 16), 16);
}

/** Go's json.MarshalIndent(toc, "", "\t"): tab indents, HTML-escaped <, >, &, U+2028/9. */
export function tocJson(entries: readonly TocEntry[]): Buffer {
  return Buffer.from(TOC_JSON_HEAD + entries.map(entryJson).join(",\n") + TOC_JSON_TAIL, "utf8");
}

const TOC_JSON_HEAD = '{\n\t"version": 1,\n\t"entries": [\n';
const TOC_JSON_TAIL = "\n\t]\n}";

/** One entry as MarshalIndent renders it at depth 2 of {"version":1,"entries":[…]}. */
export function entryJson(e: TocEntry): string {
  return ("\t\t" + JSON.stringify(e, null, "\t").replace(/\n/g, "\n\t\t"))
    .replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/** Go's formatModtime: RFC 3339 UTC rounded to the second, omitted for the zero time / epoch. */
function modtime(seconds: number): string | undefined {
  const s = Math.round(seconds);
  if (!Number.isFinite(s) || s === 0) return undefined;
  return new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Counts and hashes what leaves: the compressed blob. */
class CountingSink {
  n = 0;
  readonly hash = createHash("sha256");
  constructor(private readonly sink: Sink, private readonly progress?: (n: number) => void) {}
  async write(b: Buffer): Promise<void> {
    this.n += b.length;
    this.hash.update(b);
    // zlib hands out small results as views of much larger allocations (16 KiB and up):
    // a sink that holds many (an upload's pending PATCH) would hold all of those. Copy.
    if (b.buffer.byteLength > 2 * b.length + 4096) b = Buffer.from(b);
    await this.sink.write(b);
    this.progress?.(this.n);
  }
}

/**
 * The current gzip member and the uncompressed stream's hash and size. A member is
 * buffered until it passes BUFFERED_MEMBER bytes and then compressed in one call: a
 * layer of many small files makes one member per file, and a zlib stream per member
 * costs more than the compression itself. Larger members stream through zlib.
 */
class Members {
  private gz: Gzip | undefined;
  private pump: Promise<void> | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Assignable: a later part of the blob continues the hash of the parts before it. */
  diff = createHash("sha256");
  uncompressed = 0;

  constructor(private readonly out: CountingSink, private readonly level: number) {}

  get compressedOffset(): number { return this.out.n; }

  async write(b: Buffer): Promise<void> {
    if (b.length === 0) return;
    this.diff.update(b);
    this.uncompressed += b.length;
    if (!this.gz) {
      // Copied: the caller's buffer may be a view of one that is reused.
      this.pending.push(Buffer.from(b));
      this.pendingBytes += b.length;
      if (this.pendingBytes <= BUFFERED_MEMBER) return;
      this.open();
      const held = Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
      b = held;
    }
    if (!this.gz!.write(b)) await Promise.race([once(this.gz!, "drain"), this.pump]);
  }

  private open(): void {
    const gz = createGzip({ level: this.level });
    this.gz = gz;
    const out = this.out;
    this.pump = (async () => { for await (const chunk of gz) await out.write(chunk as Buffer); })();
  }

  /** Ends the current member; resolves when all of its bytes reached the sink. */
  async close(): Promise<void> {
    if (this.pendingBytes > 0) {
      const held = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
      // Small members inline (a thread-pool hop costs more than they do), others off-thread.
      await this.out.write(held.length <= 16_384 ? gzipSync(held, { level: this.level }) : await gzipAsync(held, { level: this.level }));
      return;
    }
    if (!this.gz) return;
    this.gz.end();
    await this.pump;
    this.gz = undefined;
    this.pump = undefined;
  }
}

/** Members up to this size are compressed in one call. */
const BUFFERED_MEMBER = 1 << 20;
const gzipAsync = promisify(gzip);

/** A temporary file that a part of the blob is written to before assembly (prefetch mode). */
class FileSink implements Sink {
  readonly fd: number;
  n = 0;
  constructor(readonly path: string) { this.fd = openSync(path, "w+"); }
  async write(b: Buffer): Promise<void> {
    let done = 0;
    while (done < b.length) done += writeSync(this.fd, b, done, b.length - done, this.n + done);
    this.n += b.length;
  }
  /** The file's bytes in order, 1 MiB at a time. */
  async *read(): AsyncGenerator<Buffer> {
    for (let at = 0; at < this.n;) {
      const b = Buffer.alloc(Math.min(1 << 20, this.n - at));
      const got = readSync(this.fd, b, 0, b.length, at);
      if (got === 0) break;
      at += got;
      yield b.subarray(0, got);
    }
  }
  close(): void { try { closeSync(this.fd); } catch { /* closed */ } }
}

/** Where the entries go: 0 the prioritised files, 1 the landmark, 2 everything else. */
const PART_PREFETCH = 0, PART_LANDMARK = 1, PART_REST = 2;

/** Every ancestor directory of each name (clean names): they move with the prioritised files. */
function ancestorsOf(names: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const n of names) {
    for (let i = n.lastIndexOf("/"); i > 0; i = n.lastIndexOf("/", i - 1)) out.add(n.slice(0, i));
  }
  return out;
}

/**
 * Converts one gzip (or plain) tar layer to eStargz, writing the blob to `sink`.
 * Throws ConvertError / TarError naming the layer and the entry on bad input.
 *
 * Memory does not grow with the number of entries: TOC entries are spilled to a
 * temporary file as they are made (TocSpill) and the TOC is streamed from it at the end.
 * With `prefetch`, the prioritised files (and their parent directories) are written to a
 * temporary file while the rest goes to another; the blob is assembled from the two
 * around `.prefetch.landmark`, as ctr-remote's optimize lays it out.
 */
export async function convertLayer(source: AsyncIterable<Buffer>, sink: Sink, opts: WriterOptions = {}): Promise<ConvertedLayer> {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const level = opts.level ?? 9;
  const label = opts.label ?? "layer";
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new ConvertError("chunk-size", `chunk size must be a positive integer, not ${chunkSize}`, chunkSize);
  const wanted = new Set((opts.prefetch ?? []).map(cleanEntryName).filter((n) => n !== ""));
  const wantedDirs = ancestorsOf(wanted);
  const prefetchMode = wanted.size > 0;

  let read = 0;
  const out = new CountingSink(sink, opts.onProgress ? (n) => opts.onProgress!(read, n) : undefined);
  const spill = new TocSpill(cleanEntryName);
  const tmp = prefetchMode ? mkdtempSync(join(tmpdir(), "apparate-prefetch-")) : undefined;
  const preFile = tmp ? new FileSink(join(tmp, "prefetch")) : undefined;
  const restFile = tmp ? new FileSink(join(tmp, "rest")) : undefined;
  try {
    const sourceHash = createHash("sha256");
    const sourceDiff = createHash("sha256");

    // Source bytes: hashed as read; gunzipped when they start with the gzip magic.
    const counted = (async function* () {
      for await (const c of source) {
        const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
        read += b.length;
        sourceHash.update(b);
        yield b;
      }
    })();
    const head = await counted.next();
    const first = head.done ? Buffer.alloc(0) : head.value;
    const rest = (async function* () { if (first.length) yield first; yield* counted; })();
    const gzipped = first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b;
    let plain: AsyncIterable<Buffer>;
    if (gzipped) {
      const gunzip = createGunzip();
      // Errors reach the reader through the async iterator; this keeps a late one (after
      // the reader stopped) from becoming an unhandled 'error' event.
      gunzip.on("error", () => undefined);
      // A failed read of the source (network) stays what it is: only zlib's own errors say
      // the blob is not gzip, which no retry can change.
      let sourceFailure: unknown;
      const feed = (async () => {
        try {
          for await (const b of rest) if (!gunzip.write(b)) await once(gunzip, "drain");
          gunzip.end();
        } catch (err) { sourceFailure = err; gunzip.destroy(err as Error); }
      })();
      feed.catch(() => undefined);
      plain = (async function* () {
        try {
          for await (const b of gunzip) { sourceDiff.update(b as Buffer); yield b as Buffer; }
        } catch (err) {
          if (sourceFailure !== undefined && err === sourceFailure) throw err;
          throw new ConvertError("gzip", `${label}: the source blob is not valid gzip (${(err as Error).message})`, label, { cause: err });
        }
        await feed;
      })();
    } else {
      plain = (async function* () { for await (const b of rest) { sourceDiff.update(b); yield b; } })();
    }

    const reader = new ByteReader(plain);
    const tar = new TarReader(reader, label);
    // Without prefetch everything streams to the sink, landmark first; with it, the two
    // parts go to their files and the landmark is made at assembly.
    const restMembers = new Members(restFile ? new CountingSink(restFile) : out, level);
    const preMembers = preFile ? new Members(new CountingSink(preFile), level) : undefined;
    let count = 0;
    let prefetched = 0;

    /** Writes a regular file's header and payload into `members`; spills its entries. */
    const addRegular = async (members: Members, part: number, header: TarHeader, raw: Buffer, payload: () => Promise<Buffer | undefined>, xattrsOf: TocEntry["xattrs"]): Promise<number> => {
      await members.write(raw);
      const ent = baseEntry(header, xattrsOf);
      const made: TocEntry[] = [];
      const fileHash = createHash("sha256");
      let written = 0;
      let current: TocEntry = ent;
      let carry: Buffer | undefined;
      while (written < header.size) {
        const remain = header.size - written;
        const thisChunk = Math.min(chunkSize, remain);
        if (remain >= chunkSize) current.chunkSize = chunkSize;
        await members.close();
        current.offset = members.compressedOffset;
        if (written > 0) current.chunkOffset = written;
        const chunkHash = createHash("sha256");
        let got = 0;
        while (got < thisChunk) {
          let b = carry ?? (await payload());
          carry = undefined;
          if (!b) throw new ConvertError("tar-truncated", `${label}: entry ${JSON.stringify(header.name)} ends early`, header.name);
          if (b.length > thisChunk - got) { carry = b.subarray(thisChunk - got); b = b.subarray(0, thisChunk - got); }
          chunkHash.update(b);
          fileHash.update(b);
          await members.write(b);
          got += b.length;
        }
        current.chunkDigest = hexOf(chunkHash);
        made.push(current);
        written += thisChunk;
        current = { name: header.name, type: "chunk" };
      }
      ent.digest = hexOf(fileHash);
      if (made.length === 0) made.push(ent);
      const head = spill.add(reorder(made[0]!), part, made.length);
      for (const c of made.slice(1)) spill.add(reorder(c), part);
      return head;
    };

    const landmarkEntry = (name: string): TarHeader => ({ name, type: "reg", mode: 0, uid: 0, gid: 0, uname: "", gname: "", size: 1, mtime: 0, linkname: "", devmajor: 0, devminor: 0, pax: {}, xattrs: {} });
    const addLandmark = async (members: Members, name: string) => {
      let sent = false;
      await addRegular(members, PART_LANDMARK, landmarkEntry(name), ustarHeader(name, 1), async () => { if (sent) return undefined; sent = true; return Buffer.from([LANDMARK_CONTENTS]); }, undefined);
      await members.write(Buffer.alloc(511));
    };
    if (!prefetchMode) await addLandmark(restMembers, NO_PREFETCH_LANDMARK);

    // Hard links by the entry they resolve to: when that entry's name is replaced later in
    // the layer, extraction keeps the links on the old file, so the TOC must too.
    const linksTo = new Map<number, number[]>();
    const retire = (prev: number) => {
      const links = (linksTo.get(prev) ?? []).filter((l) => !spill.isDropped(l));
      linksTo.delete(prev);
      if (links.length === 0) { spill.drop(prev); return; }
      const old = spill.entry(prev);
      if (old.type === "hardlink") {
        // The replaced name was itself a link: its links now name its target directly.
        const target = spill.lookup(cleanEntryName(old.linkName ?? ""));
        for (const l of links) spill.relink(l, old.linkName ?? "");
        if (target !== undefined) linksTo.set(target, [...(linksTo.get(target) ?? []), ...links]);
        spill.drop(prev);
        return;
      }
      // The old file lives on under its first link's name; the other links point there.
      const [heir, ...others] = links as [number, ...number[]];
      const heirName = spill.entry(heir).name;
      spill.drop(heir);
      spill.rename(prev, heirName);
      for (const l of others) spill.relink(l, heirName);
      linksTo.set(prev, [...others, ...(linksTo.get(heir) ?? [])]);
      linksTo.delete(heir);
      spill.claim(cleanEntryName(heirName), prev);
    };

    for (;;) {
      const e = await tar.next();
      if (!e) break;
      const h = e.header;
      const clean = cleanEntryName(h.name);
      if (clean === TOC_NAME || clean === NO_PREFETCH_LANDMARK || clean === PREFETCH_LANDMARK) {
        // A layer made eStargz before: its TOC and landmark are rebuilt, not copied.
        while (await tar.readPayload(1 << 20)) { /* drop */ }
        await tar.readPadding(e.payloadSize);
        continue;
      }
      count++;
      const target = h.type === "hardlink" ? spill.lookup(cleanEntryName(h.linkname)) : undefined;
      let part = PART_REST;
      if (prefetchMode && (wanted.has(clean) || (h.type === "dir" && wantedDirs.has(clean)))) {
        // A link goes first only with its target (extraction needs the target before it).
        if (h.type !== "hardlink" || (target !== undefined && spill.partOf(target) === PART_PREFETCH)) part = PART_PREFETCH;
      }
      const members = part === PART_PREFETCH ? preMembers! : restMembers;
      const xattrs = Object.keys(h.xattrs).length ? Object.fromEntries(Object.keys(h.xattrs).sort().map((k) => [k, h.xattrs[k]!.toString("base64")])) : undefined;
      const prev = spill.lookup(clean);
      let index: number;
      if (h.type === "reg") {
        index = await addRegular(members, part, h, e.raw, () => tar.readPayload(1 << 20), xattrs);
        await members.write(await tar.readPadding(h.size));
      } else {
        await members.write(e.raw);
        index = spill.add(reorder(baseEntry(h, xattrs)), part);
      }
      if (part === PART_PREFETCH) prefetched++;
      // A name seen before: extraction keeps the last one, so the TOC does too.
      if (prev !== undefined) retire(prev);
      spill.claim(clean, index);
      if (target !== undefined) linksTo.set(target, [...(linksTo.get(target) ?? []), index]);
    }
    await reader.drain();
    await restMembers.close();
    await preMembers?.close();

    // Assembly (prefetch mode): prioritised part, landmark, rest; offsets rebased.
    const bases = [0, 0, 0];
    let diff = restMembers.diff;
    let uncompressed = restMembers.uncompressed;
    if (prefetchMode) {
      const pre = preMembers!;
      const landmarkName = prefetched > 0 ? PREFETCH_LANDMARK : NO_PREFETCH_LANDMARK;
      for await (const b of preFile!.read()) await out.write(b);
      // The landmark is written straight to the blob: its offsets are absolute already.
      const lm = new Members(out, level);
      lm.diff = pre.diff;
      lm.uncompressed = pre.uncompressed;
      await addLandmark(lm, landmarkName);
      await lm.close();
      bases[PART_REST] = out.n;
      diff = lm.diff;
      uncompressed = lm.uncompressed;
      // The rest part's uncompressed bytes continue the diffID: read back through gunzip.
      const gunzip = createGunzip();
      const hashing = (async () => { for await (const b of gunzip) { diff.update(b as Buffer); uncompressed += (b as Buffer).length; } })();
      for await (const b of restFile!.read()) {
        await out.write(b);
        if (!gunzip.write(b)) await Promise.race([once(gunzip, "drain"), hashing]);
      }
      gunzip.end();
      await hashing;
    }

    // The TOC: prioritised entries, the landmark, the rest; names filled as Go does.
    const tocFile = new FileSink(join(spill.dir, "toc.json"));
    const tocHash = createHash("sha256");
    const users = new Map<number, string>();
    const groups = new Map<number, string>();
    let firstEntry = true;
    const put = (s: string) => { const b = Buffer.from(s, "utf8"); tocHash.update(b); return tocFile.write(b); };
    await put(TOC_JSON_HEAD);
    for (const part of [PART_PREFETCH, PART_LANDMARK, PART_REST]) {
      for (const { entry } of spill.entries(part)) {
        if (entry.offset !== undefined) entry.offset += bases[part]!;
        if (entry.type !== "chunk") fillName(entry, users, groups);
        await put((firstEntry ? "" : ",\n") + entryJson(entry));
        firstEntry = false;
      }
    }
    await put(TOC_JSON_TAIL);
    const tocMembers = new Members(out, level);
    tocMembers.diff = diff;
    tocMembers.uncompressed = uncompressed;
    const tocOffset = out.n;
    await tocMembers.write(ustarHeader(TOC_NAME, tocFile.n));
    for await (const b of tocFile.read()) await tocMembers.write(b);
    tocFile.close();
    await tocMembers.write(Buffer.alloc((512 - (tocFile.n % 512)) % 512 + 1024));
    await tocMembers.close();
    await out.write(footer(tocOffset));

    return {
      digest: hexOf(out.hash), size: out.n,
      diffID: hexOf(tocMembers.diff), uncompressedSize: tocMembers.uncompressed,
      tocDigest: hexOf(tocHash),
      sourceDigest: hexOf(sourceHash), sourceSize: read, sourceDiffID: hexOf(sourceDiff),
      entries: count, prefetched,
    };
  } finally {
    spill.close();
    preFile?.close();
    restFile?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

/** userName/groupName are written only when they change for that id (Go's nameIfChanged). */
function fillName(e: TocEntry, users: Map<number, string>, groups: Map<number, string>): void {
  const u = e.userName;
  if (u) { if (users.get(e.uid ?? 0) === u) delete e.userName; else users.set(e.uid ?? 0, u); }
  const g = e.groupName;
  if (g) { if (groups.get(e.gid ?? 0) === g) delete e.groupName; else groups.set(e.gid ?? 0, g); }
}

function baseEntry(h: TarHeader, xattrs: TocEntry["xattrs"]): TocEntry {
  const e: TocEntry = { name: h.name, type: h.type };
  if (h.type === "reg" && h.size) e.size = h.size;
  const mt = modtime(h.mtime);
  if (mt) e.modtime = mt;
  if ((h.type === "symlink" || h.type === "hardlink") && h.linkname) e.linkName = h.linkname;
  if (h.mode) e.mode = h.mode;
  if (h.uid) e.uid = h.uid;
  if (h.gid) e.gid = h.gid;
  if (h.uname) e.userName = h.uname;
  if (h.gname) e.groupName = h.gname;
  if (h.devmajor) e.devMajor = h.devmajor;
  if (h.devminor) e.devMinor = h.devminor;
  if (xattrs) e.xattrs = xattrs;
  return e;
}

const ORDER: ReadonlyArray<keyof TocEntry> = ["name", "type", "size", "modtime", "linkName", "mode", "uid", "gid", "userName", "groupName", "offset", "innerOffset", "devMajor", "devMinor", "xattrs", "digest", "chunkOffset", "chunkSize", "chunkDigest"];

/** A copy with keys in Go's field order and zero values omitted (omitempty). */
function reorder(e: TocEntry): TocEntry {
  const out: Record<string, unknown> = {};
  for (const k of ORDER) {
    const v = e[k];
    if (v === undefined || v === 0 || v === "") continue;
    out[k] = v;
  }
  return out as unknown as TocEntry;
}
