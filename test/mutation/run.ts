// `npm run test:mutation`: Stryker over each group of files with only that group's
// test files (see groups.json), one report per group, then the per-file score gate
// (score.ts). `npm run test:mutation -- config image` runs only those groups; arguments
// starting with "--" go to Stryker, values joined with "=" (`-- image --logLevel=debug`).
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, realpathSync } from "node:fs";

interface Group { name: string; mutate: string[]; tests: string[] }
const groups = JSON.parse(readFileSync(new URL("./groups.json", import.meta.url), "utf8")) as Group[];
const args = process.argv.slice(2);
const strykerArgs = args.filter((a) => a.startsWith("--"));
const wanted = args.filter((a) => !a.startsWith("--"));
const unknown = wanted.filter((w) => !groups.some((g) => g.name === w));
if (unknown.length) {
  console.error(`unknown group(s): ${unknown.join(", ")}; groups: ${groups.map((g) => g.name).join(", ")}`);
  process.exit(2);
}
mkdirSync(".tmp/mutation", { recursive: true });
// The sandbox under .tmp's real path: in a git worktree .tmp is a symlink, and vitest,
// which resolves symlinks, then finds no test related to the sandbox's mutated files.
const tempDir = `${realpathSync(".tmp")}/stryker`;
const reports: string[] = [];
for (const g of groups.filter((g) => wanted.length === 0 || wanted.includes(g.name))) {
  console.log(`== ${g.name}: ${g.mutate.join(" ")}  (tests: ${g.tests.join(" ")})`);
  const r = spawnSync("npx", ["stryker", "run", "--mutate", g.mutate.join(","), "--reporters", "json,progress", "--tempDirName", tempDir, ...strykerArgs], {
    stdio: "inherit", env: { ...process.env, MUTATION_TESTS: g.tests.join(",") },
  });
  if (r.status !== 0) { console.error(`stryker failed on group ${g.name}`); process.exit(1); }
  const out = `.tmp/mutation/${g.name}.json`;
  copyFileSync(".tmp/mutation/mutation.json", out);
  reports.push(out);
}
const score = spawnSync(process.execPath, ["--import", "tsx", "test/mutation/score.ts", ...reports], { stdio: "inherit" });
process.exit(score.status ?? 1);
