// Pure pieces of the converter: the default target and its loop guard, Go-compatible
// name cleaning (estargz compares names with path.Clean), the footer, the TOC's JSON.
import { describe, expect, it } from "vitest";
import { cleanEntryName, footer, FOOTER_SIZE, parseFooter, tocJson, ustarHeader } from "../../src/convert/estargz.js";
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
