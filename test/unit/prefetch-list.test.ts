// A learned prefetch list read back from its ConfigMap is untrusted input (any node may have
// written it): the converter takes it only for the repository it names, parsed and bounded;
// anything else is refused with the ConfigMap named, and the conversion goes on without it.
import { describe, expect, it } from "vitest";
import { learnedPrefetch } from "../../src/converter/learned-prefetch.js";
import { listFromConfigMap, MAX_PREFETCH_PATHS, prefetchConfigMap, prefetchConfigMapName, PrefetchListError } from "../../src/kube/prefetch-list.js";

const REPO = "registry.example.com/team/web";

describe("prefetch list ConfigMap", () => {
  it("round-trips: the name is a valid, repository-specific object name; the list comes back in order", () => {
    const cm = prefetchConfigMap(REPO, ["/usr/bin/python3", "/usr/lib/python3.11/json/__init__.py"], "apparate-system", "node-1");
    expect(cm.metadata!.name).toMatch(/^apparate-prefetch-[0-9a-f]{20}$/);
    expect(prefetchConfigMapName("registry.example.com/team/api")).not.toBe(cm.metadata!.name);
    expect(cm.metadata!.annotations).toEqual({ "apparate.io/recorded-by": "node-1" });
    expect(listFromConfigMap(cm, REPO)).toEqual(["/usr/bin/python3", "/usr/lib/python3.11/json/__init__.py"]);
  });

  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ["another repository's list under this name", { repository: "registry.example.com/team/api", prefetch: "/bin/sh\n" }, /is for "registry.example.com\/team\/api", not registry.example.com\/team\/web/],
    ["no repository key", { prefetch: "/bin/sh\n" }, /is for undefined/],
    ["an empty list", { repository: REPO, prefetch: "# nothing\n\n" }, /names no path/],
    ["a broken JSON record", { repository: REPO, prefetch: "{not json\n" }, /not JSON/],
    ["more paths than the bound", { repository: REPO, prefetch: Array.from({ length: MAX_PREFETCH_PATHS + 1 }, (_, i) => `/f${i}`).join("\n") }, /more than 20000/],
  ];
  it.each(bad)("refuses %s, naming the ConfigMap", (_name, data, message) => {
    const cm = { metadata: { name: prefetchConfigMapName(REPO) }, data };
    expect(() => listFromConfigMap(cm, REPO)).toThrow(PrefetchListError);
    expect(() => listFromConfigMap(cm, REPO)).toThrow(message);
    expect(() => listFromConfigMap(cm, REPO)).toThrow(prefetchConfigMapName(REPO));
  });

  it("the converter's hook: a refused or unreadable list is logged and the image converts without one; a good one is passed on", async () => {
    const warnings: unknown[] = [];
    const logger = { info: () => undefined, warn: (o: unknown) => { warnings.push(o); } };
    const failing = learnedPrefetch({ read: async () => { throw new PrefetchListError("prefetch-list-invalid", "ConfigMap x names no path"); } }, logger as never);
    expect(await failing(REPO)).toBeUndefined();
    expect(warnings).toEqual([{ repository: REPO, err: "ConfigMap x names no path" }]);
    const good = learnedPrefetch({ read: async (r) => (r === REPO ? ["/bin/sh"] : undefined) }, logger as never);
    expect(await good(REPO)).toEqual(["/bin/sh"]);
    expect(await good("registry.example.com/other")).toBeUndefined();
  });
});
