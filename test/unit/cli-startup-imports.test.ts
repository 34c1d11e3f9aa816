// What every `apparate` run loads before it knows its command: the static import graph from
// src/cli.ts. The Kubernetes client costs ~70 MiB of RSS at load (measured: `apparate --version`
// 142 -> 80 MiB max RSS once record-prefetch's spec stopped pulling it in), and a conversion of
// 1,000,000 files has a 256 MiB target: commands that need it load it on run (dynamic import).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";

/** Packages reached from `entry` through static imports and re-exports (type-only ones skipped). */
function staticPackages(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?(?:[^;]*?\sfrom\s+)?["']([^"']+)["']/gms)) {
      if (m[1]) continue;
      const spec = m[2]!;
      if (spec.startsWith(".")) visit(join(dirname(file), spec.replace(/\.js$/, ".ts")));
      else if (!spec.startsWith("node:")) packages.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
    }
  };
  visit(entry);
  return packages;
}

describe("the CLI's start-up imports", () => {
  it("src/cli.ts does not load the Kubernetes client before a command runs (apparate convert never needs it)", () => {
    const pkgs = staticPackages("src/cli.ts");
    expect(pkgs.has("@kubernetes/client-node")).toBe(false);
    // It does load what every command's help needs (the walker follows the graph).
    expect(pkgs.size).toBeGreaterThan(0);
  });

  it("negative control: the walker finds the client behind record-prefetch's command module, which the CLI imports only when that command runs", () => {
    expect(staticPackages("src/nodeagent/record-prefetch.ts").has("@kubernetes/client-node")).toBe(true);
    expect(readFileSync("src/cli/commands.ts", "utf8")).toMatch(/await import\("\.\.\/nodeagent\/record-prefetch\.js"\)/);
  });
});
