/** One local stack (Postgres, wrangler dev, relay) per test file, in a temp folder, torn down after. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { Stack, type StackOptions } from "../../scripts/stack";

export interface StackFixture {
  stack: Stack;
  db: pg.Pool;
}

/** Registers beforeAll/afterAll; `cleanup` runs first at teardown (close clients). */
export function useStack(name: string, opts: StackOptions = {}, cleanup: () => void | Promise<void> = () => {}): StackFixture {
  const fx = {} as StackFixture;
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `notifiws-${name}-`));
    fx.stack = await new Stack({ stateDir: dir, ...opts, relayEnv: { LOG_LEVEL: "error", ...opts.relayEnv } }).start();
    fx.db = new pg.Pool({ connectionString: fx.stack.databaseUrl, max: 4 });
  }, 120_000);
  afterAll(async () => {
    await cleanup();
    await fx.db?.end();
    await fx.stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return fx;
}
