// The unit suite, for Stryker: fast tests of the pure core, no real components.
// MUTATION_TESTS narrows it to the test files of the files being mutated (a
// comma-separated list of globs): a mutant in config.ts is otherwise run against
// every test that happens to load a config, which is nearly all of them.
import { defineConfig } from "vitest/config";

const only = process.env.MUTATION_TESTS?.split(",").filter(Boolean);

export default defineConfig({
  test: {
    include: only ?? ["test/unit/**/*.test.ts"],
    exclude: ["test/unit/cli.test.ts", "test/unit/required-tools.test.ts"],
    testTimeout: 30_000,
    pool: "forks",
  },
});
