/**
 * W4 per capture mode: commit -> client latency through the whole stack
 * (embedded Postgres, the relay, the Worker on Miniflare, one WebSocket
 * client), for the outbox (its default 10 ms poll) and the WAL, at 10 rows/s
 * (every row follows an idle gap: the first-event-after-idle case) and at
 * 1,000 rows/s (10 rows per transaction every 10 ms). Latency is measured in
 * one process: from the moment COMMIT returned to the writer to the moment
 * the client received the row. Modes are interleaved within each run; each
 * figure is the median of the runs with its min-max.
 *
 * `npm run bench:capture [-- --quick] [-- --runs N]`; `npm run bench` does not run it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import WebSocket from "ws";
import { devToken, Stack } from "../scripts/stack";
import { percentile } from "./histogram";
import { paced } from "./pace";

type Mode = "outbox" | "wal";
interface Cell {
  mode: Mode;
  rate: number;
  rows: number;
  p50: number;
  p99: number;
  missing: number;
}

const quick = process.argv.includes("--quick");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
const SECONDS = quick ? 5 : 15;
const RATES = [10, 1000];
const MODES: Mode[] = ["outbox", "wal"];
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

async function measure(stack: Stack, db: pg.Pool, token: string, mode: Mode, rate: number): Promise<Cell> {
  const received = new Map<number, number>();
  const ws = new WebSocket(`${stack.workerUrl.replace(/^http/, "ws")}/ws/w4`, ["notifiws.v1", `bearer.${token}`]);
  ws.on("message", (data) => {
    const now = performance.now();
    const msg = JSON.parse(String(data)) as { type: string; events?: { data: { id: number } }[] };
    if (msg.type === "events") for (const e of msg.events!) received.set(e.data.id, now);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("message", () => resolve());
    ws.once("error", reject);
  });
  const committed = new Map<number, number>();
  await paced(rate, SECONDS, async (n) => {
    const r = await db.query<{ id: number }>("INSERT INTO w4_rows (payload) SELECT 'x' FROM generate_series(1, $1) RETURNING id", [n]);
    const at = performance.now();
    for (const row of r.rows) committed.set(row.id, at);
  });
  const deadline = performance.now() + 10_000;
  while ([...committed.keys()].some((id) => !received.has(id)) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  ws.close();
  const latencies = [...committed].filter(([id]) => received.has(id)).map(([id, at]) => Math.max(0, received.get(id)! - at));
  latencies.sort((a, b) => a - b);
  return {
    mode,
    rate,
    rows: committed.size,
    p50: Math.round(percentile(latencies, 0.5) * 10) / 10,
    p99: Math.round(percentile(latencies, 0.99) * 10) / 10,
    missing: committed.size - latencies.length,
  };
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-w4-"));
  const stack = new Stack({ stateDir: dir, demo: false, runtime: "miniflare", relayEnv: { RELAY_CAPTURE: "outbox" } });
  const cells: Cell[][] = [];
  try {
    await stack.start();
    const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
    await db.query("CREATE TABLE IF NOT EXISTS w4_rows (id serial PRIMARY KEY, payload text); SELECT notifiws.watch('w4_rows', 'w4', ARRAY['id', 'payload'])");
    const token = await devToken(stack.secrets);
    for (let run = 0; run < RUNS; run++) {
      const cellsOfRun: Cell[] = [];
      for (const mode of run % 2 === 0 ? MODES : [...MODES].reverse()) {
        // The relay switches the database's capture mode as it starts.
        await stack.relay?.stop();
        stack.opts.relayEnv = { ...stack.opts.relayEnv, RELAY_CAPTURE: mode };
        await stack.startRelay();
        for (const started = Date.now(); Date.now() - started < 30_000;) {
          if ((await db.query<{ m: string }>("SELECT notifiws.capture_mode() AS m")).rows[0]!.m === mode) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        for (const rate of RATES) {
          log("W4", { run: run + 1, mode, rate });
          cellsOfRun.push(await measure(stack, db, token, mode, rate));
        }
      }
      cells.push(cellsOfRun);
    }
    await stack.relay?.stop();
    await db.end();
  } finally {
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const lines = [
    `## W4 commit -> client per capture mode (Miniflare, one client; median of ${RUNS} run(s), min–max)`,
    "",
    "| mode | rows/s | p50 ms | p99 ms | rows | undelivered |",
    "|---|---|---|---|---|---|",
  ];
  for (const mode of MODES)
    for (const rate of RATES) {
      const same = cells.map((r) => r.find((c) => c.mode === mode && c.rate === rate)!);
      const span = (f: (c: Cell) => number) => `${med(same.map(f))} (${Math.min(...same.map(f))}–${Math.max(...same.map(f))})`;
      lines.push(`| ${mode} | ${rate} | ${span((c) => c.p50)} | ${span((c) => c.p99)} | ${same[0]!.rows} | ${same.reduce((n, c) => n + c.missing, 0)} |`);
    }
  console.log(lines.join("\n"));
}

await main();
