/**
 * W5: what watch() costs the app's own database. The same single-row INSERT
 * transactions at 1, 8 and 32 concurrent writers against one table in three
 * modes: not watched; watched (trigger + outbox row + NOTIFY, the default);
 * watched with `notifiws.wakeup = 'poll'` (no NOTIFY, so no global commit
 * lock; the relay polls instead). Reports transactions/s and p50/p99 commit
 * latency per mode, and the overhead against the unwatched table.
 *
 * Measured on a Postgres with its default durability (fsync on; the test and
 * dev instances run with fsync off), without a relay draining the outbox (its
 * DELETEs are extra load on a real system). Bounded: each cell runs for a
 * fixed time.
 *
 * `npm run bench:db [-- --quick]` runs it alone on an embedded Postgres (or
 * DATABASE_URL); `npm run bench` runs it too.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { migrate } from "../db/migrate";
import { startEmbeddedPostgres } from "../scripts/embedded-pg";
import { percentile } from "./histogram";

export type Mode = "unwatched" | "watch+notify" | "watch+poll";
export interface W5Cell {
  mode: Mode;
  writers: number;
  txPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Throughput lost against the unwatched table at the same concurrency, percent. */
  overheadPct?: number;
}

const MODES: Mode[] = ["unwatched", "watch+notify", "watch+poll"];

export async function runW5(databaseUrl: string, opts: { writers: number[]; seconds: number }): Promise<W5Cell[]> {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  const cells: W5Cell[] = [];
  try {
    await admin.query(`DROP TABLE IF EXISTS w5_orders; CREATE TABLE w5_orders (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int NOT NULL, total numeric(12,2) NOT NULL, note text, created_at timestamptz NOT NULL DEFAULT now())`);
    // Modes interleaved per writer count, so a drift in this machine's disk over the run
    // (fsync cost varies by 20-30% from minute to minute here) does not fall on one mode.
    for (const writers of opts.writers) {
      for (const mode of MODES) {
        await admin.query("SELECT notifiws.unwatch('w5_orders', 'w5')");
        if (mode !== "unwatched") await admin.query("SELECT notifiws.watch('w5_orders', 'w5', ARRAY['id', 'customer', 'total', 'created_at'])");
        await admin.query("TRUNCATE w5_orders; DELETE FROM notifiws.outbox WHERE channel = 'w5'");
        await admin.query("VACUUM ANALYZE w5_orders");
        cells.push({ mode, writers, ...(await measure(databaseUrl, mode, writers, opts.seconds)) });
      }
    }
    cells.sort((a, b) => MODES.indexOf(a.mode) - MODES.indexOf(b.mode) || a.writers - b.writers);
    await admin.query("SELECT notifiws.unwatch('w5_orders', 'w5'); DROP TABLE w5_orders; DELETE FROM notifiws.outbox WHERE channel = 'w5'");
  } finally {
    await admin.end();
  }
  for (const c of cells) {
    const base = cells.find((b) => b.mode === "unwatched" && b.writers === c.writers);
    if (base && c.mode !== "unwatched") c.overheadPct = Math.round((1 - c.txPerSec / base.txPerSec) * 1000) / 10;
  }
  return cells;
}

async function measure(databaseUrl: string, mode: Mode, writers: number, seconds: number): Promise<Omit<W5Cell, "mode" | "writers">> {
  const clients = await Promise.all(
    Array.from({ length: writers }, async () => {
      const c = new pg.Client({ connectionString: databaseUrl, application_name: "w5-writer" });
      await c.connect();
      if (mode === "watch+poll") await c.query("SET notifiws.wakeup = 'poll'");
      return c;
    }),
  );
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  try {
    await Promise.all(
      clients.map(async (c, w) => {
        for (let i = 0; performance.now() < deadline; i++) {
          const t = performance.now();
          await c.query("INSERT INTO w5_orders (customer, total, note) VALUES ($1, $2, 'bench')", [w * 1_000_000 + i, 19.9]);
          latencies.push(performance.now() - t);
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    txPerSec: Math.round(latencies.length / elapsed),
    p50Ms: Math.round(percentile(latencies, 0.5) * 100) / 100,
    p99Ms: Math.round(percentile(latencies, 0.99) * 100) / 100,
  };
}

export function w5Table(cells: W5Cell[]): string[] {
  return [
    "",
    "## W5 database overhead of watch() (single-row INSERT transactions)",
    "",
    "| mode | writers | tx/s | p50 ms | p99 ms | overhead vs unwatched |",
    "|---|---|---|---|---|---|",
    ...cells.map((c) => `| ${c.mode} | ${c.writers} | ${c.txPerSec} | ${c.p50Ms} | ${c.p99Ms} | ${c.overheadPct === undefined ? "–" : `${c.overheadPct}%`} |`),
  ];
}

/** W5 on its own Postgres with default durability (or DATABASE_URL), torn down after. */
export async function runW5Standalone(opts: { writers: number[]; seconds: number }): Promise<W5Cell[]> {
  let url = process.env.DATABASE_URL;
  let stop = async () => {};
  if (!url) {
    const dir = await mkdtemp(join(tmpdir(), "notifiws-w5-"));
    // Postgres's own durability settings (fsync on): commit cost is what NOTIFY's lock serializes.
    const pgServer = await startEmbeddedPostgres({ dir, durable: true });
    url = pgServer.url;
    stop = async () => {
      await pgServer.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }
  try {
    await migrate(url);
    return await runW5(url, opts);
  } finally {
    await stop();
  }
}

// Standalone: `npm run bench:db [-- --quick]`.
if (process.argv[1]?.endsWith("db-overhead.ts")) {
  const quick = process.argv.includes("--quick");
  console.log(w5Table(await runW5Standalone({ writers: [1, 8, 32], seconds: quick ? 3 : 10 })).join("\n"));
}
