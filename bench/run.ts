/**
 * `npm run bench [-- --quick]`: notifiws against two baselines on this
 * machine, in one run, with the same clients, Postgres and rows.
 *
 *   W1 connect      N clients on one channel: connect p50/p99, held, RSS
 *   W2 end-to-end   R rows/s with S subscribers: commit->client p50/p95/p99, deliveries/s, loss, duplicates
 *   W3 fan-out      a burst of B rows to S sockets: deliveries/s at saturation
 *   W4 relay        commit -> Worker acknowledgement throughput; latency at 1,000 rows/s with one client
 *   W5 database     the app's write throughput with and without watch() (bench/db-overhead.ts)
 *
 * Baselines: (a) one Node process, `ws` + pg LISTEN with the row in NOTIFY
 * (the seeds' design); (b) Socket.IO + pg LISTEN. Everything runs on
 * 127.0.0.1; every loop is bounded in count and time; every process started
 * here is stopped at the end.
 */
import { fork, execFileSync, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { freePort } from "../scripts/embedded-pg";
import { devToken, Stack } from "../scripts/stack";
import { percentile } from "./histogram";
import { runW5Standalone, w5Table, type W5Cell } from "./db-overhead";
import type { Flavour, SwarmArgs, SwarmCommand, SwarmReport } from "./swarm";

const HERE = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes("--quick");
/** `--only-w6`: notifiws with one object as the reference, then the fan-out tree (no baselines, W4, W5). */
const onlyW6 = process.argv.includes("--only-w6");
const P = quick
  ? { connectCounts: [1000], subscribers: 1000, rates: [100, 1000], seconds: 2, burst: 1000, relayBurst: 20_000, drainMs: 10_000 }
  : { connectCounts: [1000, 5000, 10_000], subscribers: 1000, rates: [100, 1000, 5000], seconds: 10, burst: 5000, relayBurst: 50_000, drainMs: 90_000 };
const DEADLINE = Date.now() + (quick ? 170_000 : 19 * 60_000);

const children = new Set<ChildProcess>();
/**
 * Under wrangler dev, each client WebSocket costs workerd about four file
 * descriptors (the socket plus wrangler's local proxying): it reached this
 * container's 20,000 limit at about 4,900 sockets and died with EMFILE. Sizes
 * over the limit are recorded as not measurable instead of crashing the runtime.
 */
const FD_PER_SOCKET = 4;
const fdLimit = Number(execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim()) || Infinity;
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

function forkTs(file: string, args: string[]): ChildProcess {
  const child = fork(join(HERE, file), args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

function nextMessage<T>(child: ChildProcess, what: string, timeoutMs: number, match: (m: unknown) => boolean = () => true): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.off("message", on);
      reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`));
    }, timeoutMs);
    const onExit = (code: number | null) => {
      clearTimeout(t);
      child.off("message", on);
      reject(new Error(`${what}: process exited with ${code}`));
    };
    const on = (m: unknown) => {
      if (!match(m)) return;
      clearTimeout(t);
      child.off("message", on);
      child.off("exit", onExit);
      resolve(m as T);
    };
    child.on("message", on);
    child.once("exit", onExit);
  });
}

class Swarm {
  private constructor(
    readonly proc: ChildProcess,
    readonly ready: { connected: number; failed: number },
  ) {}
  static async start(args: SwarmArgs): Promise<Swarm> {
    const proc = forkTs("swarm.ts", [JSON.stringify(args)]);
    const ready = await nextMessage<{ connected: number; failed: number }>(
      proc,
      `${args.count} ${args.flavour} connections`,
      180_000,
      (m) => !!(m as { ready?: boolean }).ready,
    );
    return new Swarm(proc, ready);
  }
  async ask<T>(cmd: SwarmCommand): Promise<T> {
    const reply = nextMessage<T>(this.proc, cmd.cmd, 30_000);
    this.proc.send(cmd);
    return reply;
  }
  async stop() {
    this.proc.send({ cmd: "exit" });
    await new Promise((r) => this.proc.once("exit", r));
  }
}

/** RSS in MiB of every process in a process group whose command matches. */
function rssMiB(pgid: number | undefined, match: RegExp): number {
  if (!pgid) return NaN;
  try {
    const out = execFileSync("ps", ["-o", "rss=,comm=", "-g", String(pgid)], { encoding: "utf8" });
    return (
      out
        .split("\n")
        .filter((l) => match.test(l))
        .reduce((s, l) => s + Number(l.trim().split(/\s+/)[0]), 0) / 1024
    );
  } catch {
    return NaN;
  }
}
const pidRss = (pid: number | undefined) => {
  try {
    return Number(execFileSync("ps", ["-o", "rss=", "-p", String(pid)], { encoding: "utf8" }).trim()) / 1024;
  } catch {
    return NaN;
  }
};

interface W6Row {
  objects: number;
  held: number;
  p50: number;
  p99: number;
  burstDeliveriesPerSec: number;
  missing: number;
  duplicates: number;
}

interface E2E {
  rate: number;
  rows: number;
  p50: number;
  p95: number;
  p99: number;
  deliveriesPerSec: number;
  missing: number;
  duplicates: number;
  drained: boolean;
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-bench-"));
  const baseWorkerVars = { HISTORY_MAX_EVENTS: "1000", LOG_LEVEL: "warn" };
  const stack = new Stack({ stateDir: dir, demo: false, workerVars: baseWorkerVars, relayEnv: { LOG_LEVEL: "warn" } });
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    params: P,
    machine: { cpus: (await import("node:os")).cpus().length },
  };
  let db: pg.Pool | undefined;
  try {
    log("starting the stack");
    await stack.start();
    db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
    await db.query("CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, payload text, created_at timestamptz NOT NULL DEFAULT now())");
    await db.query(`CREATE OR REPLACE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      PERFORM pg_notify('bench_rows', json_build_object('id', NEW.id, 'committedAt', (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 'payload', NEW.payload)::text);
      RETURN NULL; END $$`);
    const token = await devToken(stack.secrets, { channels: ["bench"] });
    const mode = async (flavour: Flavour) => {
      await db!.query("DROP TRIGGER IF EXISTS bench_notify ON bench_rows; SELECT notifiws.unwatch('bench_rows', 'bench')");
      if (flavour === "notifiws") await db!.query("SELECT notifiws.watch('bench_rows', 'bench', ARRAY['id', 'payload'])");
      else await db!.query("CREATE TRIGGER bench_notify AFTER INSERT ON bench_rows FOR EACH ROW EXECUTE FUNCTION bench_notify()");
    };
    const nextId = async () => Number((await db!.query<{ v: string }>("SELECT nextval('bench_rows_id_seq') AS v")).rows[0]!.v) + 1;

    async function write(opts: { rate?: number; seconds?: number; burst?: number }) {
      const w = forkTs("writer.ts", [JSON.stringify({ databaseUrl: stack.databaseUrl, ...opts })]);
      return nextMessage<{ count: number; minId: number; maxId: number }>(w, "the writer", 120_000);
    }

    /** Writes rows, waits (bounded) until every client has every row, reports. */
    async function endToEnd(swarm: Swarm, opts: { rate?: number; seconds?: number; burst?: number }): Promise<E2E> {
      const rows = opts.burst ?? Math.round(opts.rate! * opts.seconds!);
      const minId = await nextId();
      await swarm.ask({ cmd: "expect", minId, maxId: minId + rows - 1 });
      const written = await write(opts);
      if (written.minId !== minId) log("warning: id range moved", { expected: minId, got: written.minId });
      const want = rows * swarm.ready.connected;
      const until = Date.now() + Math.min(P.drainMs, Math.max(5_000, DEADLINE - Date.now()));
      let r = await swarm.ask<SwarmReport>({ cmd: "report" });
      while (r.deliveries - r.duplicates < want && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 200));
        r = await swarm.ask<SwarmReport>({ cmd: "report" });
      }
      const span = Math.max(1, r.lastAt - r.firstAt) / 1000;
      return {
        rate: opts.rate ?? 0,
        rows,
        p50: r.latency[0]!,
        p95: r.latency[1]!,
        p99: r.latency[2]!,
        deliveriesPerSec: Math.round(r.deliveries / span),
        missing: r.missing,
        duplicates: r.duplicates,
        drained: r.missing === 0,
      };
    }

    // W4: the relay alone. Throughput: a burst with no subscribers, timed to the relay's acknowledged count.
    async function relayAlone() {
      await mode("notifiws");
      log("W4 relay throughput", { rows: P.relayBurst });
      const delivered = async () =>
        Number(/notifiws_relay_events_delivered_total (\d+)/.exec(await (await fetch(`${stack.relayUrl}/metrics`)).text())?.[1] ?? 0);
      const before = await delivered();
      const started = performance.now();
      const w = write({ burst: P.relayBurst });
      let acked = before;
      while (acked - before < P.relayBurst && performance.now() - started < 120_000) {
        await new Promise((r) => setTimeout(r, 50));
        acked = await delivered();
      }
      await w;
      const seconds = (performance.now() - started) / 1000;
      const relayStats = (await (await fetch(`${stack.relayUrl}/stats`)).json()) as { postLatencyMs: Record<string, number> };
      const q = (k: string) => relayStats.postLatencyMs[k === "0.5" ? "p50" : "p99"]!;
      log("W4 relay latency at 1000 rows/s with one subscriber");
      const one = await Swarm.start({ flavour: "notifiws", url: stack.workerUrl.replace(/^http/, "ws"), count: 1, token, concurrency: 1 });
      const lat = await endToEnd(one, { rate: 1000, seconds: P.seconds });
      await one.stop();
      results.w4 = {
        rows: P.relayBurst,
        acknowledged: acked - before,
        seconds: Math.round(seconds * 100) / 100,
        eventsPerSec: Math.round((acked - before) / seconds),
        postLatencyP50Ms: q("0.5"),
        postLatencyP99Ms: q("0.99"),
        oneClientAt1000: lat,
      };
    }
    // Baselines first: thousands of closing sockets keep workerd busy for a while
    // after the notifiws sizes, which would otherwise slow the baselines.
    const flavours: Flavour[] = onlyW6 ? ["notifiws"] : ["ws", "socketio", "notifiws"];
    const perFlavour: Record<string, { w1: unknown[]; w2: E2E[]; w3?: E2E }> = {};
    for (const flavour of flavours) {
      if (Date.now() > DEADLINE) break;
      await mode(flavour);
      let server: ChildProcess | undefined;
      let url = stack.workerUrl.replace(/^http/, "ws");
      if (flavour !== "notifiws") {
        const port = await freePort();
        server = forkTs("baselines/listen-server.ts", [flavour, String(port), stack.databaseUrl]);
        await nextMessage(server, `${flavour} baseline`, 30_000, (m) => !!(m as { ready?: boolean }).ready);
        url = flavour === "ws" ? `ws://127.0.0.1:${port}` : `http://127.0.0.1:${port}`;
      }
      const serverRss = () => (flavour === "notifiws" ? rssMiB(stack.worker!.child.pid, /workerd/) : pidRss(server!.pid));
      const entry: { w1: unknown[]; w2: E2E[]; w3?: E2E } = { w1: [], w2: [] };
      perFlavour[flavour] = entry;
      for (const n of onlyW6 ? [P.subscribers] : [...new Set([P.subscribers, ...P.connectCounts])]) {
        if (Date.now() > DEADLINE) break;
        // W4 runs before the sizes that may crash the local runtime (see FD_PER_SOCKET).
        if (flavour === "notifiws" && n > P.subscribers && !results.w4 && !onlyW6 && Date.now() < DEADLINE) await relayAlone();
        if (flavour === "notifiws" && n * FD_PER_SOCKET > fdLimit) {
          log("W1 skipped: over the open-file limit", { clients: n, fdLimit });
          entry.w1.push({
            clients: n,
            held: 0,
            error: `not measurable here: wrangler dev's workerd uses ~${FD_PER_SOCKET} fds per socket and this container caps a process at ${fdLimit} (hard limit); workerd dies with EMFILE near ${Math.floor(fdLimit / FD_PER_SOCKET)} sockets`,
          });
          continue;
        }
        log("W1 connect", { flavour, clients: n });
        let swarm: Swarm;
        try {
          swarm = await Swarm.start({ flavour, url, count: n, token, concurrency: 100 });
        } catch (err) {
          // Record and go on: one failed size must not lose the rest of the run.
          entry.w1.push({ clients: n, held: 0, error: (err as Error).message });
          continue;
        }
        const rep = await swarm.ask<SwarmReport>({ cmd: "report" });
        entry.w1.push({
          clients: n,
          held: swarm.ready.connected,
          failed: swarm.ready.failed,
          connectP50: percentile(rep.connectMs, 0.5),
          connectP99: percentile(rep.connectMs, 0.99),
          serverRssMiB: Math.round(serverRss()),
          relayRssMiB: flavour === "notifiws" ? Math.round(pidRss(stack.relay!.child.pid)) : undefined,
        });
        if (n === P.subscribers) {
          for (const rate of onlyW6 ? [100] : P.rates) {
            if (Date.now() > DEADLINE) break;
            log("W2 end-to-end", { flavour, rate, subscribers: n });
            entry.w2.push(await endToEnd(swarm, { rate, seconds: P.seconds }));
          }
          if (Date.now() < DEADLINE) {
            log("W3 fan-out burst", { flavour, rows: P.burst, sockets: n });
            entry.w3 = await endToEnd(swarm, { burst: P.burst });
          }
        }
        await swarm.stop();
      }
      if (flavour === "notifiws" && !results.w4 && !onlyW6 && Date.now() < DEADLINE) await relayAlone();
      if (server) {
        server.send({ cmd: "exit" });
        await new Promise((r) => server!.once("exit", r));
      }
    }
    results.workloads = perFlavour;

    // W6: the fan-out tree for the same subscribers, with 1, 2 and 4 fan-out objects
    // (FANOUT_OBJECT_CAPACITY = subscribers / objects), against the single object measured above.
    if (perFlavour.notifiws && (onlyW6 || Date.now() < DEADLINE)) {
      const w6: W6Row[] = [];
      await mode("notifiws");
      for (const objects of [1, 2, 4]) {
        if (!onlyW6 && Date.now() > DEADLINE) break;
        await stack.worker!.stop();
        stack.opts.workerVars = { ...baseWorkerVars, FANOUT_CHANNELS: "bench", FANOUT_OBJECT_CAPACITY: String(Math.ceil(P.subscribers / objects)) };
        await stack.startWorker();
        log("W6 fan-out tree", { objects, subscribers: P.subscribers });
        const swarm = await Swarm.start({ flavour: "notifiws", url: stack.workerUrl.replace(/^http/, "ws"), count: P.subscribers, token, concurrency: 100 });
        const steady = await endToEnd(swarm, { rate: 100, seconds: P.seconds });
        const burst = await endToEnd(swarm, { burst: P.burst });
        w6.push({
          objects,
          held: swarm.ready.connected,
          p50: steady.p50,
          p99: steady.p99,
          burstDeliveriesPerSec: burst.deliveriesPerSec,
          missing: steady.missing + burst.missing,
          duplicates: steady.duplicates + burst.duplicates,
        });
        await swarm.stop();
      }
      results.w6 = w6;
    }
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await db?.end().catch(() => undefined);
    await stack.stop();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  // W5 last, on its own durable Postgres, so the stack's processes cannot slow it.
  if (!onlyW6) {
    log("W5 database overhead");
    results.w5 = await runW5Standalone({ writers: [1, 8, 32], seconds: quick ? 3 : 10 });
  }
  await report(results);
}

/** Renders a figure, or "–" when it could not be measured. */
function fmt(v: unknown, digits = 1): string {
  if (typeof v !== "number" || !Number.isFinite(v)) return "–";
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

function ratio(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "n/a";
  return `${(a / b).toFixed(2)}x`;
}

async function report(results: Record<string, unknown>) {
  const out = join(HERE, "results");
  await mkdir(out, { recursive: true });
  const stamp = (results.date as string).replace(/[:.]/g, "-");
  await writeFile(join(out, `${stamp}.json`), JSON.stringify(results, null, 2));
  const w = results.workloads as Record<string, { w1: Record<string, number>[]; w2: E2E[]; w3?: E2E }>;
  const n = w.notifiws;
  const lines: string[] = [`# notifiws bench (${results.mode}) ${results.date}`];
  const table = (title: string, header: string[], rows: (string | number)[][]) =>
    lines.push("", `## ${title}`, "", `| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`));
  const systems = Object.entries(w);
  table(
    "W1 connect",
    ["system", "clients", "held", "connect p50 ms", "connect p99 ms", "server RSS MiB", "relay RSS MiB", "note"],
    systems.flatMap(([name, f]) =>
      f.w1.map((r) => [
        name,
        r.clients!,
        r.held!,
        fmt(r.connectP50),
        fmt(r.connectP99),
        fmt(r.serverRssMiB),
        fmt(r.relayRssMiB),
        r.error ? String(r.error) : "",
      ]),
    ),
  );
  table(
    "W2 end-to-end (commit -> client, same clock)",
    ["system", "rows/s", "p50 ms", "p95 ms", "p99 ms", "deliveries/s", "undelivered at deadline", "duplicates"],
    systems.flatMap(([name, f]) => f.w2.map((r) => [name, r.rate, fmt(r.p50), fmt(r.p95), fmt(r.p99), r.deliveriesPerSec, r.missing, r.duplicates])),
  );
  table(
    "W3 fan-out burst",
    ["system", "rows", "deliveries/s", "p99 ms", "undelivered at deadline"],
    systems.flatMap(([name, f]) => (f.w3 ? [[name, f.w3.rows, f.w3.deliveriesPerSec, fmt(f.w3.p99), f.w3.missing]] : [])),
  );
  const w4 = results.w4 as { eventsPerSec: number; postLatencyP50Ms: number; postLatencyP99Ms: number; oneClientAt1000: E2E } | undefined;
  if (w4)
    lines.push(
      "",
      "## W4 relay",
      "",
      `- commit -> Worker ack: **${w4.eventsPerSec} events/s**; POST p50 ${w4.postLatencyP50Ms.toFixed(1)} ms, p99 ${w4.postLatencyP99Ms.toFixed(1)} ms`,
      `- 1,000 rows/s, one subscriber: commit -> client p50 ${fmt(w4.oneClientAt1000.p50)} ms, p99 ${fmt(w4.oneClientAt1000.p99)} ms`,
    );
  if (results.w5) lines.push(...w5Table(results.w5 as W5Cell[]));
  const w6 = results.w6 as W6Row[] | undefined;
  if (w6 && n) {
    const single = { p99: n.w2.find((r) => r.rate === 100)?.p99 ?? NaN, burst: n.w3?.deliveriesPerSec ?? NaN };
    table(
      "W6 fan-out tree (same subscribers; 100 rows/s, then a burst)",
      ["fan-out objects", "held", "p50 ms", "p99 ms", "p99 vs one object", "burst deliveries/s", "burst vs one object", "missing", "duplicates"],
      [
        ["none (one object)", "", "", fmt(single.p99), "1.00x", single.burst, "1.00x", "", ""],
        ...w6.map((r) => [
          r.objects,
          r.held,
          fmt(r.p50),
          fmt(r.p99),
          ratio(r.p99, single.p99),
          r.burstDeliveriesPerSec,
          ratio(r.burstDeliveriesPerSec, single.burst),
          r.missing,
          r.duplicates,
        ]),
      ],
    );
  }
  const ratios: string[] = [];
  if (n) {
    lines.push("", "## Ratios (notifiws / baseline, same run)", "", "| figure | vs ws | vs Socket.IO |", "|---|---|---|");
    const fig = (label: string, pick: (f: { w1: Record<string, number>[]; w2: E2E[]; w3?: E2E }) => number | undefined) => {
      const a = pick(n);
      const rws = w.ws ? ratio(a ?? NaN, pick(w.ws) ?? NaN) : "n/a";
      const rio = w.socketio ? ratio(a ?? NaN, pick(w.socketio) ?? NaN) : "n/a";
      lines.push(`| ${label} | ${rws} | ${rio} |`);
      return [rws, rio];
    };
    const fan = fig("W3 fan-out deliveries/s (higher is better)", (f) => f.w3?.deliveriesPerSec);
    const lat = fig(`W2 p99 at ${P.rates[0]} rows/s (lower is better)`, (f) => f.w2[0]?.p99);
    fig(`W2 p99 at ${P.rates[P.rates.length - 1]} rows/s (lower is better)`, (f) => f.w2[f.w2.length - 1]?.p99);
    fig("W1 connect p99 (lower is better)", (f) => f.w1[0]?.connectP99);
    fig("W1 server RSS (lower is better)", (f) => f.w1[0]?.serverRssMiB);
    ratios.push(`fan-out ${fan[0]} of ws, ${fan[1]} of socket.io`, `p99@${P.rates[0]}/s ${lat[0]} of ws`);
  }
  const md = lines.join("\n") + "\n";
  await writeFile(join(out, `${stamp}.md`), md);
  await writeFile(join(out, `${stamp}.svg`), chart(w));
  process.stdout.write(md + "\n");
  const loss = n ? n.w2.reduce((s, r) => s + r.missing + r.duplicates, 0) + (n.w3 ? n.w3.missing + n.w3.duplicates : 0) : NaN;
  const held = [...(n?.w1 ?? [])].reverse().find((r) => (r.held ?? 0) > 0);
  process.stdout.write(
    `summary: notifiws ${held ? `held ${held.held}/${held.clients} sockets (connect p99 ${Number(held.connectP99).toFixed(0)} ms)` : ""}; ` +
      `p99 ${n?.w2.map((r) => `${fmt(r.p99)}ms@${r.rate}/s`).join(", ")}; loss+dup ${loss}; ${ratios.join("; ")}; relay ${w4?.eventsPerSec ?? "n/a"} ev/s -> bench/results/${stamp}.md\n`,
  );
}

/** Latency percentiles by load (W2), one line per system and percentile; log-scale y. */
function chart(w: Record<string, { w2: E2E[] }>): string {
  const W = 640,
    H = 360,
    L = 60,
    B = 40;
  const rates = [...new Set(Object.values(w).flatMap((f) => f.w2.map((r) => r.rate)))].sort((a, b) => a - b);
  const values = Object.values(w)
    .flatMap((f) => f.w2.flatMap((r) => [r.p50, r.p99]))
    .filter((v) => Number.isFinite(v) && v > 0);
  const max = Math.max(10, ...values),
    min = Math.max(0.1, Math.min(1, ...values));
  const x = (i: number) => L + (rates.length === 1 ? (W - L) / 2 : (i * (W - L - 20)) / (rates.length - 1));
  const y = (v: number) => H - B - ((Math.log10(Math.max(v, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (H - B - 20);
  const colors: Record<string, string> = { notifiws: "#2f9e6e", ws: "#3b6fd8", socketio: "#d8843b" };
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="#fff"/>`;
  svg += `<text x="${L}" y="14" font-size="13">commit -> client latency by load (ms, log scale); solid p99, dashed p50</text>`;
  for (const v of [0.1, 1, 10, 100, 1000, 10000].filter((v) => v >= min && v <= max))
    svg += `<line x1="${L}" x2="${W}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="4" y="${y(v) + 4}">${v}</text>`;
  rates.forEach((r, i) => (svg += `<text x="${x(i) - 10}" y="${H - 20}">${r}/s</text>`));
  let ly = 30;
  for (const [name, f] of Object.entries(w)) {
    for (const [key, dash] of [
      ["p99", ""],
      ["p50", "4 3"],
    ] as const) {
      // Unmeasured points (nothing delivered) are left out rather than drawn at the floor.
      const pts = f.w2
        .filter((r) => Number.isFinite(r[key]))
        .map((r) => `${x(rates.indexOf(r.rate))},${y(r[key])}`)
        .join(" ");
      svg += `<polyline fill="none" stroke="${colors[name] ?? "#000"}" stroke-width="2" stroke-dasharray="${dash}" points="${pts}"/>`;
    }
    svg += `<text x="${W - 120}" y="${ly}" fill="${colors[name] ?? "#000"}">${name}</text>`;
    ly += 14;
  }
  return svg + "</svg>\n";
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    for (const c of children) c.kill("SIGKILL");
    process.stderr.write(JSON.stringify({ level: "error", msg: (err as Error).message }) + "\n");
    process.exit(1);
  },
);
