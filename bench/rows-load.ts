/**
 * W8, live tables: what loading a table's rows from the edge costs
 * (GET /v1/channels/:channel/rows). A table of 1,000 rows (~100 KB of row
 * JSON) on the Worker under Miniflare, read through the Neon driver and the
 * local bridge, whose connection count is the number of database reads.
 * Three cases per run, interleaved:
 *   - burst: 1,000 loads at once, ROWS_SHARE_SECONDS=30 (the default);
 *   - burst, no sharing: the same with ROWS_SHARE_SECONDS=0 (only loads that
 *     arrive while a read runs join it);
 *   - one at a time: 50 sequential loads with ROWS_SHARE_SECONDS=0, each its
 *     own read (what a load costs without collapsing), a write between loads.
 * Each figure is the median of the runs with its min-max.
 *
 * `npm run bench:rows [-- --quick] [-- --runs N]`; `npm run bench` does not run it.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { devToken, Stack } from "../scripts/stack";
import { percentile } from "./histogram";

const quick = process.argv.includes("--quick");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
const BURST = quick ? 300 : 1000;
const SEQUENTIAL = quick ? 20 : 50;
const ROWS = 1000;
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

interface Figure {
  case: string;
  loads: number;
  reads: number;
  p50: number;
  p99: number;
  bytes: number;
}

async function load(stack: Stack, token: string, channel = "w8"): Promise<{ ms: number; bytes: number; source: string }> {
  const t0 = performance.now();
  const res = await fetch(`${stack.workerUrl}/v1/channels/${channel}/rows`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`load answered ${res.status}: ${body.slice(0, 200)}`);
  return { ms: performance.now() - t0, bytes: Buffer.byteLength(body), source: res.headers.get("notifiws-rows-source") ?? "" };
}

async function burst(stack: Stack, db: pg.Pool, token: string, name: string): Promise<Figure> {
  // A write first, so the object's head moves and no earlier read is reused across cases.
  await db.query("UPDATE w8_rows SET n = n + 1 WHERE id = 1");
  const before = stack.bridge!.connections;
  const results = await Promise.all(Array.from({ length: BURST }, () => load(stack, token)));
  const ms = results.map((r) => r.ms);
  return { case: name, loads: BURST, reads: stack.bridge!.connections - before, p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), bytes: results[0]!.bytes };
}

async function sequential(stack: Stack, db: pg.Pool, token: string): Promise<Figure> {
  const before = stack.bridge!.connections;
  const ms: number[] = [];
  let bytes = 0;
  for (let i = 0; i < SEQUENTIAL; i++) {
    await db.query("UPDATE w8_rows SET n = n + 1 WHERE id = $1", [1 + (i % ROWS)]);
    const r = await load(stack, token);
    ms.push(r.ms);
    bytes = r.bytes;
  }
  return {
    case: "one at a time, a write between, ROWS_SHARE_SECONDS=0",
    loads: SEQUENTIAL,
    reads: stack.bridge!.connections - before,
    p50: percentile(ms, 0.5),
    p99: percentile(ms, 0.99),
    bytes,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-w8-"));
  await chmod(dir, 0o755); // the postgres user traverses it to its data directory
  const figures: Figure[][] = [];
  let stack: Stack | undefined;
  let db: pg.Pool | undefined;
  try {
    for (let run = 0; run < RUNS; run++) {
      const row: Figure[] = [];
      for (const share of ["30", "0"]) {
        stack = await new Stack({
          stateDir: join(dir, `run${run}-${share}`),
          runtime: "miniflare",
          demo: false,
          workerVars: { ROWS_SHARE_SECONDS: share, LOG_LEVEL: "warn" },
          relayEnv: { LOG_LEVEL: "warn" },
        }).start();
        db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
        await db.query(`
          CREATE TABLE IF NOT EXISTS w8_rows (id bigint PRIMARY KEY, name text, n int8, price numeric, updated_at timestamptz DEFAULT now());
          INSERT INTO w8_rows SELECT i, 'item ' || i, i * 1000, i * 1.25 FROM generate_series(1, ${ROWS}) i ON CONFLICT DO NOTHING;
          SELECT notifiws.watch('w8_rows', 'w8', ARRAY['id', 'name', 'n', 'price', 'updated_at']);
          SELECT notifiws.watch('w8_rows', 'w8.warm', ARRAY['id']);
        `);
        const token = await devToken(stack.secrets);
        await load(stack, token, "w8.warm"); // the isolate and the driver warm, not w8's object
        if (share === "30") row.push(await burst(stack, db, token, `${BURST} at once, ROWS_SHARE_SECONDS=30`));
        else {
          row.push(await burst(stack, db, token, `${BURST} at once, ROWS_SHARE_SECONDS=0`));
          row.push(await sequential(stack, db, token));
        }
        await db.end();
        db = undefined;
        await stack.stop();
        stack = undefined;
      }
      log("run", { run, figures: row });
      figures.push(row);
    }
  } finally {
    await db?.end().catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  const med = (xs: number[]) => percentile(xs, 0.5);
  const span = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
  const lines = [
    `W8 rows loads: ${ROWS} rows, ${RUNS} run(s), median (min–max)`,
    "",
    "| case | loads | database reads | load p50 ms | load p99 ms | body bytes |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (let i = 0; i < figures[0]!.length; i++) {
    const col = figures.map((r) => r[i]!);
    const f = col[0]!;
    lines.push(
      `| ${f.case} | ${f.loads} | ${med(col.map((x) => x.reads))} (${span(col.map((x) => x.reads))}) | ${med(col.map((x) => x.p50)).toFixed(0)} (${span(col.map((x) => x.p50))}) | ${med(col.map((x) => x.p99)).toFixed(0)} (${span(col.map((x) => x.p99))}) | ${f.bytes} |`,
    );
  }
  console.log(lines.join("\n"));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
