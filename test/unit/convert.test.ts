// Pure pieces of the converter: the default target and its loop guard, Go-compatible
// name cleaning (estargz compares names with path.Clean), the footer, the TOC's JSON.
import { describe, expect, it } from "vitest";
import { cleanEntryName, entryJson, footer, FOOTER_SIZE, parseFooter, tocJson, ustarHeader } from "../../src/convert/estargz.js";
import { numeric, TarError } from "../../src/convert/tar.js";
import { parsePrefetchList } from "../../src/convert/command.js";
import { ImageConvertError, targetFor } from "../../src/convert/image.js";
import { parseReference } from "../../src/image/reference.js";

describe("targetFor: the default DST", () => {
  it.each([
    ["registry.example/team/web:1.4.2", "-apparate", "1.4.2-apparate"],
    ["localhost:5000/app:latest", "-esgz", "latest-esgz"],
  ])("%s + %s -> tag %s in the same repository", (src, suffix, tag) => {
    const ref = parseReference(src);
    expect(targetFor(ref, suffix)).toEqual({ domain: ref.domain, path: ref.path, tag });
  });

  it("refuses a tag that already ends with the suffix (its own output: a loop)", () => {
    expect(() => targetFor(parseReference("r.example/app:1-apparate"), "-apparate")).toThrow(/already ends with "-apparate"/);
  });

  it("refuses a source given by digest only, and a tag that would pass 128 characters", () => {
    expect(() => targetFor(parseReference(`r.example/app@sha256:${"a".repeat(64)}`), "-apparate")).toThrow(ImageConvertError);
    expect(() => targetFor(parseReference(`r.example/app:${"t".repeat(125)}`), "-apparate")).toThrow(/longer than 128/);
  });
});

describe("cleanEntryName: Go's strings.TrimPrefix(path.Clean(\"/\"+name), \"/\")", () => {
  // Rows from Go's path.Clean tests (src/path/path_test.go), prefixed with "/" as estargz does.
  it.each([
    ["abc", "abc"], ["abc/def", "abc/def"], ["a/b/c", "a/b/c"], [".", ""], ["..", ""], ["../..", ""],
    ["../../abc", "abc"], ["abc/", "abc"], ["abc/def/", "abc/def"], ["./abc", "abc"], ["abc//def//ghi", "abc/def/ghi"],
    ["abc/./def", "abc/def"], ["abc/def/..", "abc"], ["abc/def/../..", ""], ["abc/def/../../..", ""], ["abc/def/../../../ghi/jkl/../../../mno", "mno"],
  ])("%s -> %s", (name, want) => { expect(cleanEntryName(name)).toBe(want); });
});

describe("footer", () => {
  it("is 51 bytes: a gzip header with the SG extra field holding %016x of the TOC offset and STARGZ, an empty stored block, zero CRC and size", () => {
    const f = footer(0x1234);
    expect(f.length).toBe(FOOTER_SIZE);
    expect(f.subarray(0, 16).toString("hex")).toBe("1f8b08040000000000ff1a0053471600");
    expect(f.subarray(16, 38).toString("latin1")).toBe("0000000000001234STARGZ");
    expect(f.subarray(38).toString("hex")).toBe("010000ffff" + "00".repeat(8));
    expect(parseFooter(f)).toBe(0x1234);
  });

  it("negative control: 51 bytes that are not a footer are not read as one", () => {
    const f = footer(42);
    f.write("STARGY", 32, "latin1");
    expect(parseFooter(f)).toBeUndefined();
    expect(parseFooter(Buffer.alloc(51))).toBeUndefined();
  });
});

describe("TOC JSON as Go's json.MarshalIndent writes it", () => {
  it("indents with tabs and HTML-escapes <, > and &", () => {
    const j = tocJson([{ name: "a<b>&c", type: "reg" }]).toString();
    expect(j).toBe('{\n\t"version": 1,\n\t"entries": [\n\t\t{\n\t\t\t"name": "a\\u003cb\\u003e\\u0026c",\n\t\t\t"type": "reg"\n\t\t}\n\t]\n}');
    expect(JSON.parse(j).entries[0].name).toBe("a<b>&c");
  });
});

describe("ustarHeader (the landmark's and the TOC's tar header)", () => {
  it("is a valid ustar block with the name, size and a correct checksum", () => {
    const h = ustarHeader("stargz.index.json", 1234);
    expect(h.subarray(0, 17).toString()).toBe("stargz.index.json");
    expect(h.subarray(124, 136).toString()).toBe("00000002322\0");
    expect(h.subarray(257, 265).toString("latin1")).toBe("ustar\x0000");
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
    expect(Number.parseInt(h.subarray(148, 154).toString(), 8)).toBe(sum);
  });
});

describe("tar numbers as Go's archive/tar parseNumeric reads them", () => {
  // Rows of TestParseNumeric, Go 1.19.8 (Debian golang-1.19-src 1.19.8-2,
  // /usr/share/go-1.19/src/archive/tar/strconv_test.go). Go reads int64; beyond ±2^53 a
  // JS number is not exact, so those rows (and Go's own failures) are refused here.
  const REFUSED = "refused";
  const rows: Array<[string, number | typeof REFUSED]> = [
    ["", 0], ["\x80", 0], ["\x80\x00", 0], ["\x80\x00\x00", 0],
    ["\xbf", (1 << 6) - 1], ["\xbf\xff", (1 << 14) - 1], ["\xbf\xff\xff", (1 << 22) - 1],
    ["\xff", -1], ["\xff\xff", -1], ["\xff\xff\xff", -1],
    ["\xc0", -1 * (1 << 6)], ["\xc0\x00", -1 * (1 << 14)], ["\xc0\x00\x00", -1 * (1 << 22)],
    ["\x87\x76\xa2\x22\xeb\x8a\x72\x61", REFUSED], // 537795476381659745 in Go
    ["\xf7\x76\xa2\x22\xeb\x8a\x72\x61", REFUSED], // -615126028225187231 in Go
    ["\x80\x7f\xff\xff\xff\xff\xff\xff\xff", REFUSED], // MaxInt64
    ["\x80\x80\x00\x00\x00\x00\x00\x00\x00", REFUSED], ["\xff\x7f\xff\xff\xff\xff\xff\xff\xff", REFUSED],
    ["\xf5\xec\xd1\xc7\x7e\x5f\x26\x48\x81\x9f\x8f\x9b", REFUSED],
    ["0000000\x00", 0], [" \x0000000\x00", 0], [" \x0000003\x00", 3], ["00000000227\x00", 0o227],
    ["032033\x00 ", 0o32033], ["320330\x00 ", 0o320330], ["0000660\x00 ", 0o660], ["\x00 0000660\x00 ", 0o660],
    ["0123456789abcdef", REFUSED], ["0123456789\x00abcdef", REFUSED], ["01234567\x0089abcdef", 342391], ["0123\x7e\x5f\x264123", REFUSED],
    // GNU tar's pre-1970 mtime (touch -d 1960-01-01): 12-byte base-256 of -315619200.
    ["\xff\xff\xff\xff\xff\xff\xff\xff\xed\x30\x08\x80", -315_619_200],
  ];
  it.each(rows)("%j -> %s", (input, want) => {
    const b = Buffer.from(input, "latin1");
    if (want === REFUSED) expect(() => numeric(b, 0, b.length, "mtime", "f")).toThrow(TarError);
    else expect(numeric(b, 0, b.length, "mtime", "f")).toBe(want);
  });
});

describe("entryJson / tocJson: one entry at a time renders as MarshalIndent renders the whole TOC", () => {
  it("nested xattrs, escapes and several entries join to JSON.stringify's tab-indented document", () => {
    const entries = [
      { name: "a", type: "dir", mode: 493 },
      { name: "b<&>", type: "reg", size: 3, xattrs: { "user.x": "eA==", "security.capability": "AQAAAg==" }, digest: "sha256:00" },
    ];
    const whole = JSON.stringify({ version: 1, entries }, null, "\t").replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
    expect(tocJson(entries).toString()).toBe(whole);
    expect(entryJson(entries[1]!)).toContain('\t\t\t"xattrs": {\n\t\t\t\t"user.x": "eA==",');
  });
});

describe("parsePrefetchList: the --prefetch file", () => {
  it("one path a line, blank lines and # comments ignored, paths kept as written", () => {
    expect(parsePrefetchList("# recorded\n/usr/bin/python3\n\n  # indented comment\nusr/lib/python3.11/json/__init__.py\r\n./etc/hosts\n")).toEqual(["/usr/bin/python3", "usr/lib/python3.11/json/__init__.py", "./etc/hosts"]);
  });

  it("reads ctr-remote optimize --record-out records (JSON lines with path, manifestDigest, layerIndex)", () => {
    const rec = '{"path":"/usr/bin/python3.11","manifestDigest":"sha256:aa","layerIndex":2}\n{"path":"/usr/lib/x86_64-linux-gnu/libz.so.1","manifestDigest":"sha256:aa","layerIndex":0}\n';
    expect(parsePrefetchList(rec)).toEqual(["/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libz.so.1"]);
  });

  it("negative control: a JSON line without a path is refused, naming it", () => {
    expect(() => parsePrefetchList('{"file":"/x"}\n')).toThrow(/without a "path"/);
    expect(() => parsePrefetchList("{not json\n")).toThrow(/not JSON/);
  });
});
