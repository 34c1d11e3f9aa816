// The spilled TOC's name index: names whose 31-bit hashes collide are told apart (the
// name is read back from the spill file), a new holder of a name replaces the old one
// and no other, and the typed-array table keeps every name across its growth.
import { afterEach, describe, expect, it } from "vitest";
import { TocSpill } from "../../src/convert/toc-spill.js";

const clean = (n: string) => n.replace(/^\.?\//, "").replace(/\/$/, "");

/** FNV-1a folded as toc-spill.ts folds it: only to find a real collision for the test. */
function hash31(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return (h >>> 1) & 0x3fffffff;
}

function collidingPair(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const n = `usr/lib/python3/dist-packages/m${i}.py`;
    const h = hash31(n);
    const other = seen.get(h);
    if (other !== undefined) return [other, n];
    seen.set(h, n);
  }
}

describe("TocSpill name index", () => {
  let spill: TocSpill | undefined;
  afterEach(() => { spill?.close(); spill = undefined; });

  it("names with the same hash are told apart; claiming one replaces only that name", () => {
    const [a, b] = collidingPair();
    expect(hash31(a)).toBe(hash31(b));
    spill = new TocSpill(clean);
    const ia = spill.add({ name: a, type: "reg" }, 0);
    spill.claim(a, ia);
    expect(spill.lookup(b)).toBeUndefined();
    const ib = spill.add({ name: b, type: "reg" }, 0);
    spill.claim(b, ib);
    expect([spill.lookup(a), spill.lookup(b)]).toEqual([ia, ib]);
    const ia2 = spill.add({ name: a, type: "symlink", linkName: "x" }, 0);
    spill.claim(a, ia2);
    expect([spill.lookup(a), spill.lookup(b)]).toEqual([ia2, ib]);
  });

  it("keeps every one of 50,000 names through the table's growth; an absent name is absent", () => {
    spill = new TocSpill(clean);
    const idx: number[] = [];
    for (let i = 0; i < 50_000; i++) {
      const n = `node_modules/pkg-${i >> 6}/file-${i}.js`;
      idx.push(spill.add({ name: n, type: "reg" }, 0));
      spill.claim(n, idx[i]!);
    }
    for (let i = 0; i < 50_000; i += 997) expect(spill.lookup(`node_modules/pkg-${i >> 6}/file-${i}.js`)).toBe(idx[i]);
    expect(spill.lookup("node_modules/pkg-0/file-50000.js")).toBeUndefined();
  });
});
