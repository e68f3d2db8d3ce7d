import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/node/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Suites share one embedded Postgres per file and spawn processes; run files one at a time on 2 cores.
    fileParallelism: false,
    passWithNoTests: false,
  },
});
