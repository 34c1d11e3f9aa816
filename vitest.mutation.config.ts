// The unit suite, for Stryker: fast tests of the pure core, no real components.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    exclude: ["test/unit/cli.test.ts", "test/unit/required-tools.test.ts"],
    testTimeout: 30_000,
    pool: "forks",
  },
});
