/**
 * Row writer, run as its own process: inserts into bench_rows at a target
 * rate for a bounded time (or one burst), then reports the id range.
 * argv: JSON { databaseUrl, rate, seconds } or { databaseUrl, burst }.
 */
import pg from "pg";
import { paced } from "./pace";

const opts = JSON.parse(process.argv[2]!) as { databaseUrl: string; rate?: number; seconds?: number; burst?: number };
const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 4 });
const ids: number[] = [];
const insert = async (n: number) => {
  const r = await pool.query<{ id: string }>("INSERT INTO bench_rows (payload) SELECT 'x' FROM generate_series(1, $1) RETURNING id", [n]);
  for (const row of r.rows) ids.push(Number(row.id));
};

if (opts.burst) {
  // One transaction per 500 rows, as fast as Postgres takes them.
  for (let left = opts.burst; left > 0; left -= 500) await insert(Math.min(500, left));
} else {
  await paced(opts.rate!, opts.seconds!, insert);
}
await pool.end();
ids.sort((a, b) => a - b);
process.send!({ count: ids.length, minId: ids[0] ?? 0, maxId: ids[ids.length - 1] ?? -1 });
