import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Under CI=true a missing real component fails the run by name (no silent skips).
    globalSetup: ["test/support/required-tools.ts"],
  },
});
