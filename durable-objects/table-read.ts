/**
 * One read of a channel's rows from Postgres (db/functions/rows.sql,
 * notifiws.table_rows()): one connection through @neondatabase/serverless
 * and one round trip of three statements in the simple query protocol, so
 * the rows and notifiws.snapshot() come from one REPEATABLE READ READ ONLY
 * transaction. The values are never parsed here: the body is the JSON text
 * Postgres built, with every number a float could round already text.
 */
import type { Config } from "../shared/worker-config";
import { useProxy } from "../shared/neon";

/** Why a channel has no rows to serve (the function's refusals, and a role or schema that cannot serve them; HTTP statuses in shared/http-errors.ts). */
export type TableRefusal = "CHANNEL_NOT_A_TABLE" | "TABLE_HAS_NO_KEY" | "TABLE_TOO_LARGE" | "ROWS_MISCONFIGURED";

/**
 * Postgres errors that retrying cannot fix (SQLSTATE): the role may not read a
 * column or the schema (42501), or the database lacks notifiws.table_rows()
 * (42883, 3F000: migrations not applied).
 */
const MISCONFIGURED = new Set(["42501", "42883", "3F000"]);

export type TableRead = { ok: true; body: string } | { ok: false; code: TableRefusal; message: string };

/** A read that takes longer fails with DATABASE_UNAVAILABLE; every load waiting on it gets that answer. */
export const TABLE_READ_TIMEOUT_MS = 15_000;

/** A SQL string literal; standard_conforming_strings is on (the default since Postgres 9.1). */
const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

export async function readTable(config: Config, channel: string): Promise<TableRead> {
  if (!config.ROWS_DATABASE_URL) throw new Error("ROWS_DATABASE_URL is not set");
  // Loaded on the first read: isolates that never serve the rows route never evaluate the driver.
  const { Client, neonConfig } = await import("@neondatabase/serverless");
  useProxy(neonConfig, config.NEON_WS_PROXY);
  const client = new Client({ connectionString: config.ROWS_DATABASE_URL });
  // The driver emits the socket's loss (also after end()) as an 'error' event; unheard, it is an
  // uncaught exception, which would reset this object and drop its sockets. Failures of the read
  // itself reject the query below.
  client.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Postgres within ${TABLE_READ_TIMEOUT_MS} ms`)), TABLE_READ_TIMEOUT_MS);
  });
  try {
    const results = (await Promise.race([
      (async () => {
        await client.connect();
        return client.query(
          "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; " +
            `SELECT code, message, body FROM notifiws.table_rows(${literal(channel)}, ${config.ROWS_MAX_ROWS}, ${config.ROWS_MAX_BYTES}); ` +
            "COMMIT",
        );
      })(),
      timeout,
    ])) as unknown as { rows: { code: TableRefusal | null; message: string | null; body: string | null }[] }[];
    const row = results[1]?.rows[0];
    if (!row) throw new Error("notifiws.table_rows() returned no row");
    if (row.code !== null) return { ok: false, code: row.code, message: row.message ?? row.code };
    return { ok: true, body: row.body! };
  } catch (err) {
    const sqlState = (err as { code?: unknown }).code;
    if (typeof sqlState === "string" && MISCONFIGURED.has(sqlState))
      return {
        ok: false,
        code: "ROWS_MISCONFIGURED",
        message: `ROWS_DATABASE_URL's role cannot read channel ${channel}: ${(err as Error).message} (grant it SELECT on the published columns and those the condition reads, and apply the migrations: docs/live-tables.md)`,
      };
    throw err;
  } finally {
    clearTimeout(timer);
    void client.end().catch(() => undefined);
  }
}
