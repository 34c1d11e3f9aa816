// Rescans decide what is missing or stale from listings (an in-memory registry here;
// the real registry's pagination is in test/integration/converter.test.ts).
import { describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { RateLimiter } from "../../src/converter/rate-limit.js";
import { CatalogRefusedError, nextLink, type RegistryReader } from "../../src/converter/registry-reader.js";
import { scanRegistry, tagsToCheck } from "../../src/converter/scan.js";

const config = compileConfig({ acceleration: { registries: ["reg.example:5000"], rules: [{ registry: "reg.example:5000", namespace: "team" }] } });

/** repo -> tag -> { digest, recorded source of an accelerated tag } */
type Repo = Record<string, { digest: string; source?: string }>;
function reader(repos: Record<string, Repo>, catalog = true): RegistryReader & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async repositories(r) { calls.push(`catalog ${r}`); if (!catalog) throw new CatalogRefusedError("catalog-refused", `${r}: _catalog answered 401`); return Object.keys(repos); },
    async tags(_r, repo) { calls.push(`tags ${repo}`); return Object.keys(repos[repo] ?? {}); },
    async digest(_r, repo, tag) { calls.push(`digest ${repo}:${tag}`); return repos[repo]?.[tag]?.digest; },
    async recordedSource(_r, repo, tag) { calls.push(`recorded ${repo}:${tag}`); return repos[repo]?.[tag]?.source; },
  };
}

const REPOS: Record<string, Repo> = {
  "team/new": { v1: { digest: "sha256:n1" } },                                               // missing
  "team/stale": { v1: { digest: "sha256:s2" }, "v1-apparate": { digest: "sha256:a", source: "sha256:s1" } }, // stale
  "team/fresh": { v1: { digest: "sha256:f1" }, "v1-apparate": { digest: "sha256:b", source: "sha256:f1" } }, // up to date
  "team/theirs": { v1: { digest: "sha256:t1" }, "v1-apparate": { digest: "sha256:c" } },     // made elsewhere: no record
  "other/app": { v1: { digest: "sha256:o1" } },                                               // not selected by the rules
};

describe("rescan", () => {
  it("finds the missing and the stale, leaves the fresh and the user's own; lists tags only of selected repositories", async () => {
    const rd = reader(REPOS);
    const found: string[] = [];
    const report = await scanRegistry({ registry: "reg.example:5000" }, { reader: rd, config, signal: new AbortController().signal, found: (f) => found.push(`${f.repository}:${f.tag}@${f.digest} ${f.reason}`) });
    expect(found).toEqual(["team/new:v1@sha256:n1 missing", "team/stale:v1@sha256:s2 stale"]);
    expect(report).toMatchObject({ catalog: "listed", repositories: 4, upToDate: 2, errors: [] });
    expect(rd.calls).not.toContain("tags other/app");
    expect(rd.calls).not.toContain("recorded team/new:v1-apparate"); // absent from the listing: no request
  });

  it("a refused _catalog uses the configured repository list", async () => {
    const found: string[] = [];
    const report = await scanRegistry({ registry: "reg.example:5000", repositories: ["team/new"] }, { reader: reader(REPOS, false), config, signal: new AbortController().signal, found: (f) => found.push(f.repository) });
    expect(report.catalog).toBe("configured");
    expect(found).toEqual(["team/new"]);
  });

  it("a refused _catalog without a list is reported, naming the setting", async () => {
    const report = await scanRegistry({ registry: "reg.example:5000" }, { reader: reader(REPOS, false), config, signal: new AbortController().signal, found: () => {} });
    expect(report.catalog).toBe("refused");
    expect(report.errors[0]).toMatch(/converter\.scan\[\]\.repositories/);
  });

  it("one unreadable repository does not stop the scan", async () => {
    const rd = reader(REPOS);
    rd.tags = async (_r, repo) => { if (repo === "team/new") throw new Error("answered 500"); return Object.keys(REPOS[repo] ?? {}); };
    const found: string[] = [];
    const report = await scanRegistry({ registry: "reg.example:5000" }, { reader: rd, config, signal: new AbortController().signal, found: (f) => found.push(f.repository) });
    expect(found).toEqual(["team/stale"]);
    expect(report.errors).toEqual(["reg.example:5000/team/new: answered 500"]);
  });

  it("tagsToCheck: accelerated tags are never sources (the loop guard)", () => {
    expect(tagsToCheck("reg.example:5000", "team/x", ["v1", "v1-apparate", "v2"], config)).toEqual([
      { tag: "v1", target: "v1-apparate", targetExists: true },
      { tag: "v2", target: "v2-apparate", targetExists: false },
    ]);
  });
});

describe("nextLink", () => {
  it.each([
    // distribution 2.8's header (registry/handlers/catalog.go): a relative URL
    ['</v2/_catalog?last=b&n=2>; rel="next"', "http://r:5000/v2/_catalog?last=b&n=2"],
    ['<https://other.example/v2/x/tags/list?n=1&last=a>; rel=next', "https://other.example/v2/x/tags/list?n=1&last=a"],
    ['<http://r:5000/a>; rel="prev", </v2/b>; rel="next"', "http://r:5000/v2/b"],
    ['</v2/a>; rel="prev"', undefined],
    [undefined, undefined],
  ])("%j -> %s", (link, url) => {
    expect(nextLink(link, "http://r:5000")).toBe(url);
  });
});

describe("RateLimiter", () => {
  it("spaces requests at the configured rate", async () => {
    let now = 0;
    const waits: number[] = [];
    const l = new RateLimiter(4, { now: () => now, setTimeout: (fn, ms) => { waits.push(ms); fn(); return 0; }, clearTimeout: () => {} });
    for (let i = 0; i < 4; i++) await l.take();
    expect(waits).toEqual([250, 500, 750]);
    now = 5000;
    await l.take();
    expect(waits).toHaveLength(3); // idle long enough: no wait
  });
});
