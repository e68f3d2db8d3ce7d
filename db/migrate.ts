/**
 * Applies db/migrations/*.sql in name order, each in its own transaction,
 * recording what it applied in notifiws.schema_migrations; then the
 * repeatable definitions in db/functions/*.sql (the one home of each SQL
 * function), each re-applied whenever its SHA-256 differs from the one
 * recorded in notifiws.schema_functions. Safe to re-run and safe to run
 * concurrently (an advisory lock serializes runners).
 * Usage: DATABASE_URL=postgres://... npm run db:migrate
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { PostgresUrl } from "../shared/zod";

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), "migrations");
const FUNCTIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), "functions");
/** Advisory lock key for migration runs (distinct from the relay's leader lock). */
const MIGRATION_LOCK = 7_354_001;

export async function migrate(databaseUrl: string, log: (msg: string) => void = () => {}, opts: { upTo?: string } = {}): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const applied: string[] = [];
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    await client.query("CREATE SCHEMA IF NOT EXISTS notifiws");
    await client.query("CREATE TABLE IF NOT EXISTS notifiws.schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    const done = new Set((await client.query<{ name: string }>("SELECT name FROM notifiws.schema_migrations")).rows.map((r) => r.name));
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
    for (const file of files) {
      // `upTo` stops after that file: tests build an older schema, then upgrade it.
      if (opts.upTo !== undefined && file > opts.upTo) break;
      if (done.has(file)) continue;
      const sql = await readFile(join(MIGRATIONS_DIR, file), "utf8");
      await client.query("BEGIN");
      try {
        await client.query(sql);
        await client.query("INSERT INTO notifiws.schema_migrations (name) VALUES ($1)", [file]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${file} failed: ${(err as Error).message}`);
      }
      applied.push(file);
      log(`applied ${file}`);
    }
    // `upTo` builds an older schema: the definitions of that time came with its migrations.
    if (opts.upTo === undefined) applied.push(...(await applyFunctions(client, log)));
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
    await client.end();
  }
  return applied;
}

/** Applies each db/functions/*.sql whose checksum changed, in name order, each in one transaction. */
async function applyFunctions(client: pg.Client, log: (msg: string) => void): Promise<string[]> {
  await client.query(
    "CREATE TABLE IF NOT EXISTS notifiws.schema_functions (name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
  );
  const recorded = new Map(
    (await client.query<{ name: string; sha256: string }>("SELECT name, sha256 FROM notifiws.schema_functions")).rows.map((r) => [r.name, r.sha256]),
  );
  const applied: string[] = [];
  for (const file of (await readdir(FUNCTIONS_DIR)).filter((f) => f.endsWith(".sql")).sort()) {
    const sql = await readFile(join(FUNCTIONS_DIR, file), "utf8");
    const sha256 = createHash("sha256").update(sql).digest("hex");
    if (recorded.get(file) === sha256) continue;
    await client.query("BEGIN");
    try {
      await client.query(sql);
      await client.query(
        "INSERT INTO notifiws.schema_functions (name, sha256) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
        [file, sha256],
      );
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK");
      throw new Error(`db/functions/${file} failed: ${(err as Error).message}`);
    }
    applied.push(`functions/${file}`);
    log(`applied functions/${file}`);
  }
  return applied;
}

/** Runs a plain SQL file (e.g. db/demo.sql) in one transaction. */
export async function runSqlFile(databaseUrl: string, file: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("BEGIN");
    await client.query(await readFile(file, "utf8"));
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    await client.end();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // The same check as the relay's: a value without a scheme would silently mean the local default server.
  const parsed = PostgresUrl.safeParse(process.env.DATABASE_URL);
  if (!parsed.success) {
    const msg = `DATABASE_URL ${process.env.DATABASE_URL ? parsed.error.issues[0]!.message : "is required"}`;
    console.error(JSON.stringify({ level: "error", msg, code: "CONFIG_INVALID", variables: ["DATABASE_URL"] }));
    process.exit(2);
  }
  const url = parsed.data;
  migrate(url, (m) => console.log(JSON.stringify({ level: "info", msg: m })))
    .then((applied) => console.log(JSON.stringify({ level: "info", msg: "migrations up to date", applied: applied.length })))
    .catch((err) => {
      console.error(JSON.stringify({ level: "error", msg: (err as Error).message, code: "MIGRATION_FAILED" }));
      process.exit(1);
    });
}
