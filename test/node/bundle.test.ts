/**
 * The deployed Worker is the product, within its size budget: what
 * `wrangler deploy --dry-run` would upload (minified, as wrangler.toml sets)
 * is at most 400 KiB, and carries no demo code (the demo route is
 * src/demo.ts, served only by npm run dev). The Postgres driver is in it for
 * the rows route, evaluated only on a channel object's first read
 * (durable-objects/table-read.ts).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/process";

/** The budget, KiB, as wrangler reports "Total Upload". docs/benchmarks.md, "Bundle size". */
const BUDGET_KIB = 400;

describe("deploy bundle", () => {
  it(`is at most ${BUDGET_KIB} KiB and holds no demo code`, () => {
    const out = mkdtempSync(join(tmpdir(), "notifiws-deploy-"));
    try {
      const report = execFileSync(join(ROOT, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--outdir", out], {
        cwd: ROOT,
        env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
        encoding: "utf8",
      });
      const kib = Number(/Total Upload: ([\d.]+) KiB/.exec(report)?.[1]);
      console.log(JSON.stringify({ level: "info", msg: "deploy bundle", totalUploadKiB: kib }));
      expect(kib).toBeGreaterThan(0);
      expect(kib).toBeLessThanOrEqual(BUDGET_KIB);
      const bundle = readFileSync(join(out, "index.js"), "utf8");
      expect(bundle).not.toContain("/api/demo/state");
      // The driver is behind a lazy module init: a dynamic import bundled in place.
      expect(bundle).toMatch(/await Promise\.resolve\(\)\.then\(\(\)=>\([\w$]+\(\),[\w$]+\)\);[\w$]+\([\w$]+,[\w$]+\.NEON_WS_PROXY\)/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);
});
