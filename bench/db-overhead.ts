/**
 * W5: what watch() costs the app's own database, per capture mode. The same
 * single-row INSERT transactions at 1, 8 and 32 concurrent writers against
 * one table, with the relay running as it does in production (its own
 * process, draining or streaming to a local sink that answers 200), in:
 *
 *   unwatched           the table without a trigger, no slot (baseline 1)
 *   unwatched+slot      the same while a relay decodes a slot (baseline 2: what
 *                       decoding the WAL costs on this machine, whatever is watched)
 *   outbox+notify       trigger + outbox row + NOTIFY per transaction (the default before #22)
 *   outbox+poll100      trigger + outbox row, relay polling every 100 ms (the old poll mode)
 *   outbox              trigger + outbox row, relay polling every 10 ms (today's outbox default)
 *   wal                 trigger + logical message, relay streaming the slot
 *   unwatched+recvlogical, wal+recvlogical
 *                       the same two with pg_recvlogical (C) reading the slot
 *                       instead of the relay: what WAL capture costs the
 *                       database itself, without the relay's CPU competing
 *                       for this machine's two cores (the consumer the
 *                       issue's own measurements used)
 *
 * Modes are interleaved per writer count so this machine's drift over a run
 * falls on all of them. For the cells with a slot it reads the walsender's
 * CPU time from /proc (Postgres on this machine) and reports seconds per
 * 1,000 transactions; the relay's CPU likewise. Bounded: each cell runs a
 * fixed time.
 *
 * `npm run bench:db [-- --quick] [-- --runs N]` runs it alone on an embedded
 * Postgres with default durability (fsync on), or on DATABASE_URL;
 * `npm run bench` runs it too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { migrate } from "../db/migrate";
import { freePort, startEmbeddedPostgres } from "../scripts/embedded-pg";
import { percentile } from "./histogram";

export type Mode = "unwatched" | "unwatched+slot" | "outbox+notify" | "outbox+poll100" | "outbox" | "wal" | "unwatched+recvlogical" | "wal+recvlogical";
export const MODES: Mode[] = ["unwatched", "unwatched+slot", "outbox+notify", "outbox+poll100", "outbox", "wal", "unwatched+recvlogical", "wal+recvlogical"];
/** The modes whose cells run with a slot being decoded (their walsender's CPU is measured). */
const WITH_SLOT = new Set<Mode>(["unwatched+slot", "wal", "unwatched+recvlogical", "wal+recvlogical"]);
/** Debian's pg_recvlogical (any version reads any server's slot); the two recvlogical modes are left out without it. */
const RECVLOGICAL = ["/usr/lib/postgresql"].flatMap((root) => {
  try {
    return readdirSync(root)
      .map((v) => join(root, v, "bin/pg_recvlogical"))
      .filter((f) => existsSync(f));
  } catch {
    return [];
  }
})[0];

export interface W5Cell {
  mode: Mode;
  writers: number;
  txPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Throughput lost against the mode's baseline (baselineOf) at the same concurrency, percent. */
  overheadPct?: number;
  /** The baseline overheadPct is measured against. */
  baseline?: Mode;
  /** CPU seconds of the walsender per 1,000 transactions (cells with a slot). */
  walsenderCpuPer1k?: number;
  /** CPU seconds of the relay process per 1,000 transactions (cells with a relay). */
  relayCpuPer1k?: number;
}

/** The WAL mode is compared with the same table unwatched under the same decoding; every other mode with the plain table. */
export function baselineOf(mode: Mode): Mode | undefined {
  if (mode === "unwatched") return undefined;
  if (mode === "wal") return "unwatched+slot";
  if (mode === "wal+recvlogical") return "unwatched+recvlogical";
  return "unwatched";
}

const SECRET = "w5-bench-secret-0123456789abcdef0123456789";

/** A stand-in for the Worker's ingest route: answers 200 at once (W4 measures the real Worker). */
async function startSink(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end('{"batchId":"x","accepted":0,"duplicates":0,"channels":{}}'));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

interface RelayProc {
  child: ChildProcess;
  port: number;
}

async function startRelay(databaseUrl: string, sinkUrl: string, env: Record<string, string>): Promise<RelayProc> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "../relay/main.ts")], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      DATABASE_URL: databaseUrl,
      WORKER_URL: sinkUrl,
      INGEST_SECRET: SECRET,
      RELAY_HTTP_PORT: String(port),
      LOG_LEVEL: "error",
      ...env,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  for (const started = Date.now(); Date.now() - started < 30_000;) {
    const h = (await fetch(`http://127.0.0.1:${port}/healthz`)
      .then((r) => r.json())
      .catch(() => undefined)) as { leader?: boolean } | undefined;
    if (h?.leader) return { child, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error("W5: the relay did not become leader within 30 s");
}

/** Back to the outbox with no slot: an outbox relay switches the functions, reads the slot up to the switch and drops it. */
async function retire(admin: pg.Client, databaseUrl: string, sinkUrl: string): Promise<void> {
  const relay = await startRelay(databaseUrl, sinkUrl, { RELAY_CAPTURE: "outbox" });
  try {
    for (const started = Date.now(); Date.now() - started < 30_000;) {
      if ((await admin.query("SELECT 1 FROM pg_replication_slots")).rowCount === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("W5: the slot was not retired within 30 s");
  } finally {
    await stopRelay(relay);
  }
}

/** pg_recvlogical on the relay's slot, writing to /dev/null and confirming as it goes (stopped like the relay). */
function recvlogical(databaseUrl: string): RelayProc {
  const child = spawn(
    RECVLOGICAL!,
    [
      "-d",
      databaseUrl,
      "--slot",
      "notifiws",
      "--start",
      "-f",
      "/dev/null",
      "-F",
      "1",
      "-o",
      "proto_version=1",
      "-o",
      "publication_names=notifiws",
      "-o",
      "messages=true",
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  return { child, port: 0 };
}

async function stopRelay(r: RelayProc | undefined): Promise<void> {
  if (!r || r.child.exitCode !== null) return;
  const exited = new Promise((resolve) => r.child.once("exit", resolve));
  r.child.kill("SIGTERM");
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  r.child.kill("SIGKILL");
}

/** The walsender streaming the relay's slot, once the relay has started it (bounded wait). */
async function walsenderPid(admin: pg.Client): Promise<number | undefined> {
  for (const started = Date.now(); Date.now() - started < 10_000;) {
    const pid = (await admin.query<{ pid: number | null }>("SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'notifiws'")).rows[0]?.pid;
    if (pid) return pid;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/** utime + stime of a process, seconds (Linux /proc; undefined elsewhere). */
async function cpuSeconds(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks at USER_HZ = 100
}

export async function runW5(databaseUrl: string, opts: { writers: number[]; seconds: number; modes?: Mode[] }): Promise<W5Cell[]> {
  const modes = opts.modes ?? MODES;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  const sink = await startSink();
  const cells: W5Cell[] = [];
  let relay: RelayProc | undefined;
  try {
    await admin.query(`DROP TABLE IF EXISTS w5_orders; CREATE TABLE w5_orders (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int NOT NULL, total numeric(12,2) NOT NULL, note text, created_at timestamptz NOT NULL DEFAULT now())`);
    for (const writers of opts.writers) {
      for (const mode of modes.filter((m) => RECVLOGICAL || !m.includes("recvlogical"))) {
        await stopRelay(relay);
        relay = undefined;
        await admin.query("SELECT notifiws.unwatch('w5_orders', 'w5')");
        if (mode !== "unwatched" && mode !== "unwatched+slot")
          await admin.query("SELECT notifiws.watch('w5_orders', 'w5', ARRAY['id', 'customer', 'total', 'created_at'])");
        // The relay sets the database's capture mode (and creates or retires the slot) as it starts.
        // The plain baseline: no slot (an outbox relay retires it), and no relay.
        if (mode === "unwatched") await retire(admin, databaseUrl, sink.url);
        else if (mode === "unwatched+slot" || mode === "wal") relay = await startRelay(databaseUrl, sink.url, { RELAY_CAPTURE: "wal" });
        else if (mode === "unwatched+recvlogical" || mode === "wal+recvlogical") {
          // The relay sets up the slot and the wal mode, then pg_recvlogical reads the slot in its place.
          await stopRelay(await startRelay(databaseUrl, sink.url, { RELAY_CAPTURE: "wal" }));
          relay = recvlogical(databaseUrl);
        } else
          relay = await startRelay(databaseUrl, sink.url, {
            RELAY_CAPTURE: "outbox",
            RELAY_POLL_MS: mode === "outbox+notify" ? "5000" : mode === "outbox+poll100" ? "100" : "10",
          });
        await admin.query("TRUNCATE w5_orders; DELETE FROM notifiws.outbox WHERE channel = 'w5'");
        await admin.query("VACUUM ANALYZE w5_orders");
        await admin.query("CHECKPOINT");
        const walsender = WITH_SLOT.has(mode) ? await walsenderPid(admin) : undefined;
        const cpu0 = [await cpuSeconds(walsender), await cpuSeconds(relay?.child.pid)];
        const m = await measure(databaseUrl, mode, writers, opts.seconds);
        const cpu1 = [await cpuSeconds(walsender), await cpuSeconds(relay?.child.pid)];
        const tx = m.txPerSec * opts.seconds;
        const per1k = (i: number) =>
          cpu0[i] !== undefined && cpu1[i] !== undefined && tx > 0 ? Math.round(((cpu1[i]! - cpu0[i]!) / tx) * 1000 * 1000) / 1000 : undefined;
        cells.push({ mode, writers, ...m, walsenderCpuPer1k: per1k(0), relayCpuPer1k: per1k(1) });
      }
    }
    await stopRelay(relay);
    relay = undefined;
    // Leave the database as found: outbox mode, no slot, no bench table.
    await retire(admin, databaseUrl, sink.url);
    await admin.query("SELECT notifiws.unwatch('w5_orders', 'w5'); DROP TABLE w5_orders; DELETE FROM notifiws.outbox WHERE channel = 'w5'");
  } finally {
    await stopRelay(relay);
    sink.server.close();
    await admin.end();
  }
  cells.sort((a, b) => modes.indexOf(a.mode) - modes.indexOf(b.mode) || a.writers - b.writers);
  for (const c of cells) {
    const baseline = baselineOf(c.mode);
    const base = cells.find((b) => b.mode === baseline && b.writers === c.writers);
    if (base) {
      c.baseline = baseline;
      c.overheadPct = Math.round((1 - c.txPerSec / base.txPerSec) * 1000) / 10;
    }
  }
  return cells;
}

async function measure(databaseUrl: string, mode: Mode, writers: number, seconds: number): Promise<Pick<W5Cell, "txPerSec" | "p50Ms" | "p99Ms">> {
  const clients = await Promise.all(
    Array.from({ length: writers }, async () => {
      const c = new pg.Client({ connectionString: databaseUrl, application_name: "w5-writer" });
      await c.connect();
      if (mode === "outbox+notify") await c.query("SET notifiws.wakeup = 'notify'");
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

/** Several runs of the same cells: the median per cell with its min-max (this machine's fsync cost drifts by 20-30%). */
export function medianCells(runs: W5Cell[][]): (W5Cell & { txMin: number; txMax: number; overheadMin?: number; overheadMax?: number })[] {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  return runs[0]!.map((c) => {
    const same = runs.map((r) => r.find((x) => x.mode === c.mode && x.writers === c.writers)!).filter(Boolean);
    const num = (f: (x: W5Cell) => number | undefined) => {
      const xs = same.map(f).filter((v): v is number => v !== undefined);
      return xs.length ? med(xs) : undefined;
    };
    const overheads = same.map((x) => x.overheadPct).filter((v): v is number => v !== undefined);
    return {
      ...c,
      txPerSec: num((x) => x.txPerSec)!,
      p50Ms: num((x) => x.p50Ms)!,
      p99Ms: num((x) => x.p99Ms)!,
      overheadPct: num((x) => x.overheadPct),
      walsenderCpuPer1k: num((x) => x.walsenderCpuPer1k),
      relayCpuPer1k: num((x) => x.relayCpuPer1k),
      txMin: Math.min(...same.map((x) => x.txPerSec)),
      txMax: Math.max(...same.map((x) => x.txPerSec)),
      ...(overheads.length ? { overheadMin: Math.min(...overheads), overheadMax: Math.max(...overheads) } : {}),
    };
  });
}

export function w5Table(cells: ReturnType<typeof medianCells> | W5Cell[], runs = 1): string[] {
  const range = (c: W5Cell & { txMin?: number; txMax?: number }) => (runs > 1 && c.txMin !== undefined ? ` (${c.txMin}–${c.txMax})` : "");
  const overhead = (c: W5Cell & { overheadMin?: number; overheadMax?: number }) =>
    c.overheadPct === undefined
      ? "–"
      : `${c.overheadPct}%${runs > 1 && c.overheadMin !== undefined ? ` (${c.overheadMin}–${c.overheadMax})` : ""} vs ${c.baseline}`;
  const cpu = (v: number | undefined) => (v === undefined ? "–" : String(v));
  return [
    "",
    `## W5 database overhead of watch() (single-row INSERT transactions${runs > 1 ? `, median of ${runs} runs (min–max)` : ""})`,
    "",
    "| mode | writers | tx/s | p50 ms | p99 ms | overhead | walsender CPU s / 1k tx | consumer (relay or pg_recvlogical) CPU s / 1k tx |",
    "|---|---|---|---|---|---|---|---|",
    ...cells.map(
      (c) =>
        `| ${c.mode} | ${c.writers} | ${c.txPerSec}${range(c)} | ${c.p50Ms} | ${c.p99Ms} | ${overhead(c)} | ${cpu(c.walsenderCpuPer1k)} | ${cpu(c.relayCpuPer1k)} |`,
    ),
  ];
}

/** W5 on its own Postgres with default durability (or DATABASE_URL), torn down after. */
export async function runW5Standalone(opts: { writers: number[]; seconds: number; runs?: number; modes?: Mode[] }): Promise<ReturnType<typeof medianCells>> {
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
    const runs: W5Cell[][] = [];
    for (let i = 0; i < (opts.runs ?? 1); i++) runs.push(await runW5(url, opts));
    return medianCells(runs);
  } finally {
    await stop();
  }
}

// Standalone: `npm run bench:db [-- --quick] [-- --runs N] [-- --modes unwatched,wal]`.
if (process.argv[1]?.endsWith("db-overhead.ts")) {
  const quick = process.argv.includes("--quick");
  const runsArg = process.argv.indexOf("--runs");
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : quick ? 1 : 3;
  const modesArg = process.argv.indexOf("--modes");
  const modes = modesArg > 0 ? (process.argv[modesArg + 1]!.split(",") as Mode[]) : undefined;
  const cells = await runW5Standalone({ writers: [1, 8, 32], seconds: quick ? 3 : 10, runs, modes });
  console.log(w5Table(cells, runs).join("\n"));
}
