/**
 * `npm run bench [-- --quick] [--runs N]`: notifiws against its peers on
 * this machine, with the same clients, Postgres and rows, N times (default
 * 3). Each run measures every system once, in a rotated order so the
 * machine's drift spreads over all of them; each figure is reported as the
 * median of the runs with its min–max, and each notifiws/peer ratio is taken
 * within a run before its median and spread (bench/aggregate.ts). The
 * summary names every figure where notifiws is behind a peer in every run.
 *
 *   W1 connect      N clients on one channel: connect p50/p99, held, RSS
 *   W2 end-to-end   R rows/s with S subscribers: commit->client p50/p95/p99, deliveries/s, loss, duplicates
 *   W3 fan-out      a burst of B rows to S sockets: deliveries/s at saturation
 *   W4 relay        commit -> Worker acknowledgement throughput; latency at 1,000 rows/s with one client
 *   W5 database     the app's write throughput with and without watch() (bench/db-overhead.ts)
 *
 *   W6 fan-out tree the same subscribers over 1, 2 and 4 fan-out objects
 *
 * Systems (`--quick`: ws, PartyServer and notifiws on Miniflare, 1,000 sockets;
 * the full run adds Socket.IO, wrangler dev and the larger sizes):
 *   notifiws      under `wrangler dev` (what `npm run dev` runs: a local proxy in
 *                 front of workerd) and under Miniflare directly (the deploy
 *                 bundle, no proxy: scripts/miniflare-serve.ts), the runtime
 *                 closest to production
 *   partyserver   the same-platform peer (bench/partyserver): one PartyServer
 *                 room per channel, fed by the same relay, on both runtimes
 *   ws, socketio  one Node process with pg LISTEN and the row in NOTIFY (the
 *                 seeds' design), with `ws` or Socket.IO
 *
 * Load generators are split across processes (at most SWARM_PER_PROCESS
 * sockets each) to stay under the per-process open-file limit. Everything runs
 * on 127.0.0.1; every loop is bounded in count and time; every process started
 * here is stopped at the end.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { freePort } from "../scripts/embedded-pg";
import { devToken, Stack, type Proc } from "../scripts/stack";
import { percentile } from "./histogram";
import { groupPids, pidRss } from "./proc";
import { forkTs, killChildren, nextMessage, runBench } from "./ipc";
import { startPartyServerPeer } from "./peer";
import { Swarm } from "./swarm-group";
import { isolateHeapMiB } from "./profile";
import { runW5Standalone, w5Table, type W5Cell } from "./db-overhead";
import type { Flavour } from "./swarm";
import { formatSpread, ratioSpread, rotate, spread, verdict, type Spread } from "./aggregate";

const HERE = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes("--quick");
/** `--only-w6`: notifiws with one object as the reference, then the fan-out tree (no baselines, W4, W5). */
const onlyW6 = process.argv.includes("--only-w6");
const runsArg = process.argv.indexOf("--runs");
/** Runs of every system (at least 3 for a median with a spread; `--runs 1` for a smoke run). */
const RUNS = runsArg > 0 ? Math.max(1, Number(process.argv[runsArg + 1]) || 3) : 3;
const P = quick
  ? { connectCounts: [1000], subscribers: 1000, rates: [100, 1000], seconds: 2, burst: 1000, relayBurst: 10_000, drainMs: 10_000, w6Objects: [0, 2] }
  : {
      connectCounts: [1000, 5000, 10_000],
      subscribers: 1000,
      rates: [100, 1000, 5000],
      seconds: 10,
      burst: 5000,
      relayBurst: 50_000,
      drainMs: 90_000,
      w6Objects: [0, 1, 2, 4],
    };
const DEADLINE = Date.now() + (quick ? 14 * 60_000 : 120 * 60_000);

type Runtime = "wrangler-dev" | "miniflare";
interface System {
  /** Row label in the report, e.g. `notifiws (miniflare)`. */
  name: string;
  flavour: Flavour;
  runtime?: Runtime;
}
const ALL_SYSTEMS: System[] = [
  { name: "ws", flavour: "ws" },
  { name: "socketio", flavour: "socketio" },
  { name: "partyserver (wrangler dev)", flavour: "partyserver", runtime: "wrangler-dev" },
  { name: "partyserver (miniflare)", flavour: "partyserver", runtime: "miniflare" },
  { name: "notifiws (wrangler dev)", flavour: "notifiws", runtime: "wrangler-dev" },
  { name: "notifiws (miniflare)", flavour: "notifiws", runtime: "miniflare" },
];
/** `--quick` keeps the systems a production comparison needs: the Node baseline and both Workers on Miniflare. */
const SYSTEMS = quick ? ALL_SYSTEMS.filter((s) => s.name === "ws" || s.runtime === "miniflare") : ALL_SYSTEMS;
/** W4 and W6 run on the runtime closest to production. */
const PROD_RUNTIME: Runtime = "miniflare";

/**
 * workerd's open files are measured after each W1 size (fds per held socket);
 * a larger size that would pass this container's per-process hard limit is
 * recorded as not measurable instead of being run into EMFILE. (Under
 * wrangler dev a socket costs about four: the socket plus the dev proxy's.)
 */
const fdLimit = Number(execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim()) || Infinity;
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

/** Open files of the busiest of these processes (the limit is per process), from /proc. */
function openFiles(pids: number[]): number {
  let n = 0;
  for (const pid of pids) {
    try {
      n = Math.max(n, readdirSync(`/proc/${pid}/fd`).length);
    } catch {
      /* gone */
    }
  }
  return n;
}
interface W6Row {
  objects: number;
  held: number;
  p50: number;
  p99: number;
  burstDeliveriesPerSec: number;
  missing: number;
  duplicates: number;
}

interface W4 {
  runtime: string;
  rows: number;
  acknowledged: number;
  seconds: number;
  eventsPerSec: number;
  postLatencyP50Ms: number;
  postLatencyP99Ms: number;
  oneClientAt1000: E2E;
}

/** One run: every system once, in `order`. */
interface Run {
  order: string[];
  systems: Record<string, SystemResult>;
  w4?: W4;
}

interface SystemResult {
  flavour: Flavour;
  runtime?: Runtime;
  w1: Record<string, number | string | undefined>[];
  w2: E2E[];
  w3?: E2E;
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
  const stack = new Stack({
    stateDir: dir,
    demo: false,
    runtime: "wrangler-dev",
    workerVars: baseWorkerVars,
    relayEnv: { LOG_LEVEL: "warn", RELAY_STATS_ENDPOINT: "1" },
  });
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
    // notifiws and PartyServer get the rows through watch() and the relay; the Node baselines through their own NOTIFY trigger.
    const mode = async (flavour: Flavour) => {
      await db!.query("DROP TRIGGER IF EXISTS bench_notify ON bench_rows; SELECT notifiws.unwatch('bench_rows', 'bench')");
      if (flavour === "notifiws" || flavour === "partyserver") await db!.query("SELECT notifiws.watch('bench_rows', 'bench', ARRAY['id', 'payload'])");
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
      let r = await swarm.report();
      while (r.deliveries - r.duplicates < want && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 200));
        r = await swarm.report();
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
    async function relayAlone(): Promise<W4> {
      log("W4 relay throughput", { rows: P.relayBurst, runtime: stack.opts.runtime });
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
      log("W4 relay latency at 1000 rows/s with one subscriber");
      const one = await Swarm.start({ flavour: "notifiws", url: stack.workerUrl.replace(/^http/, "ws"), count: 1, token, concurrency: 1 });
      const lat = await endToEnd(one, { rate: 1000, seconds: P.seconds });
      await one.stop();
      return {
        runtime: stack.opts.runtime!,
        rows: P.relayBurst,
        acknowledged: acked - before,
        seconds: Math.round(seconds * 100) / 100,
        eventsPerSec: Math.round((acked - before) / seconds),
        postLatencyP50Ms: relayStats.postLatencyMs.p50!,
        postLatencyP99Ms: relayStats.postLatencyMs.p99!,
        oneClientAt1000: lat,
      };
    }

    /** Serves notifiws on `runtime` (restarting its Worker process on the same port). */
    /** A fresh process each run (`fresh`), as every peer gets: no run inherits another's warm isolate or storage. */
    async function notifiwsOn(runtime: Runtime, vars: Record<string, string> = baseWorkerVars, fresh = false) {
      if (!fresh && stack.opts.runtime === runtime && stack.opts.workerVars === vars && stack.worker?.running) return;
      await stack.worker!.stop();
      stack.opts.runtime = runtime;
      stack.opts.workerVars = vars;
      await stack.startWorker();
    }

    const systems = onlyW6 ? [] : SYSTEMS;
    const runs: Run[] = [];
    for (let runIndex = 0; runIndex < RUNS && !onlyW6; runIndex++) {
      if (Date.now() > DEADLINE) break;
      const order = rotate(systems, runIndex);
      const perSystem: Record<string, SystemResult> = {};
      const thisRun: Run = { order: order.map((s) => s.name), systems: perSystem };
      runs.push(thisRun);
      log("run", { run: runIndex + 1, of: RUNS, order: thisRun.order });
      for (const system of order) {
        if (Date.now() > DEADLINE) break;
        const { flavour } = system;
        await mode(flavour);
        let server: ChildProcess | undefined;
        let peer: Proc | undefined;
        let peerInspector = 0;
        let url: string;
        if (flavour === "notifiws") {
          await notifiwsOn(system.runtime!, baseWorkerVars, true);
          await stack.retargetRelay(stack.workerUrl);
          url = stack.workerUrl.replace(/^http/, "ws");
        } else if (flavour === "partyserver") {
          const started = await startPartyServerPeer(stack, system.runtime!, dir);
          peer = started.proc;
          peerInspector = started.inspectorPort;
          const peerUrl = started.url;
          await stack.retargetRelay(peerUrl);
          url = peerUrl.replace(/^http/, "ws");
        } else {
          const port = await freePort();
          server = forkTs("baselines/listen-server.ts", [flavour, String(port), stack.databaseUrl]);
          await nextMessage(server, `${flavour} baseline`, 30_000, (m) => !!(m as { ready?: boolean }).ready);
          url = flavour === "ws" ? `ws://127.0.0.1:${port}` : `http://127.0.0.1:${port}`;
        }
        // The server side: workerd's processes for the Workers, the Node process for the baselines.
        const serverPids = () => (server ? [server.pid!] : groupPids((peer ?? stack.worker!).child.pid, /workerd/));
        const serverRss = () => serverPids().reduce((s, pid) => s + pidRss(pid), 0);
        const entry: SystemResult = { flavour, runtime: system.runtime, w1: [], w2: [] };
        perSystem[system.name] = entry;
        let fdsPerSocket = NaN;
        let measured = 0;
        const baseFds = openFiles(serverPids());
        for (const size of [...new Set([P.subscribers, ...P.connectCounts])]) {
          if (Date.now() > DEADLINE) break;
          let n = size;
          // W4 runs on the production-like runtime before the larger sizes.
          if (flavour === "notifiws" && system.runtime === PROD_RUNTIME && n > P.subscribers && !thisRun.w4) thisRun.w4 = await relayAlone();
          const projected = Math.round(baseFds + n * fdsPerSocket);
          if (projected > fdLimit * 0.95) {
            log("W1 skipped: over the open-file limit", { system: system.name, clients: n, fdsPerSocket, fdLimit });
            entry.w1.push({
              clients: n,
              held: 0,
              error: `not measurable here: ${fdsPerSocket.toFixed(1)} fds per socket in the busiest server process (measured) × ${n} > this container's ${fdLimit} per-process hard limit`,
            });
            // Then the largest size (in steps of 500) that fits, so the table says how far this runtime goes here.
            const fit = Math.floor((fdLimit * 0.95 - baseFds) / fdsPerSocket / 500) * 500;
            if (fit <= measured) continue;
            n = fit;
          }
          log("W1 connect", { system: system.name, clients: n });
          const fdsBefore = openFiles(serverPids());
          let swarm: Swarm;
          try {
            swarm = await Swarm.start({ flavour, url, count: n, token, concurrency: 100 });
          } catch (err) {
            // Record and go on: one failed size must not lose the rest of the run.
            entry.w1.push({ clients: n, held: 0, error: (err as Error).message });
            continue;
          }
          measured = n;
          const rep = await swarm.report();
          const fdsHeld = openFiles(serverPids());
          if (swarm.ready.connected > 0) fdsPerSocket = Math.max(fdsPerSocket || 0, (fdsHeld - fdsBefore) / swarm.ready.connected);
          entry.w1.push({
            clients: n,
            held: swarm.ready.connected,
            failed: swarm.ready.failed,
            connectP50: percentile(rep.connectMs, 0.5),
            connectP99: percentile(rep.connectMs, 0.99),
            // The handshake alone (to `open`); notifiws's connect also waits for its `welcome`.
            openP99: percentile(rep.openMs, 0.99),
            // After the first wave (a cold isolate and a new object): what a connect costs a running channel.
            warmP99: percentile(rep.warmConnectMs, 0.99),
            serverRssMiB: Math.round(serverRss()),
            // The Workers' isolate heap, which production's 128 MB limit applies to.
            isolateHeapMiB:
              flavour === "notifiws" || flavour === "partyserver"
                ? await isolateHeapMiB(flavour === "notifiws" ? stack.inspectorPort : peerInspector).catch(() => NaN)
                : undefined,
            // Again once that full collection ran: what of the RSS was garbage V8 had not collected yet.
            serverRssAfterGcMiB: flavour === "notifiws" || flavour === "partyserver" ? Math.round(serverRss()) : undefined,
            serverFdsPerSocket: Math.round(((fdsHeld - fdsBefore) / Math.max(1, swarm.ready.connected)) * 100) / 100,
            relayRssMiB: flavour === "notifiws" || flavour === "partyserver" ? Math.round(pidRss(stack.relay!.child.pid)) : undefined,
          });
          if (n === P.subscribers) {
            for (const rate of P.rates) {
              if (Date.now() > DEADLINE) break;
              log("W2 end-to-end", { system: system.name, rate, subscribers: n });
              entry.w2.push(await endToEnd(swarm, { rate, seconds: P.seconds }));
              // Once every socket has been sent something (notifiws sends its welcome on connect, the
              // others nothing until the first event), measured at the lowest rate, all of it delivered.
              if (rate === P.rates[0]) entry.w1[entry.w1.length - 1]!.serverRssAfterEventsMiB = Math.round(serverRss());
            }
            if (Date.now() < DEADLINE) {
              log("W3 fan-out burst", { system: system.name, rows: P.burst, sockets: n });
              entry.w3 = await endToEnd(swarm, { burst: P.burst });
            }
          }
          await swarm.stop();
        }
        if (flavour === "notifiws" && system.runtime === PROD_RUNTIME && !thisRun.w4 && Date.now() < DEADLINE) thisRun.w4 = await relayAlone();
        if (server) {
          server.send({ cmd: "exit" });
          await new Promise((r) => server!.once("exit", r));
        }
        await peer?.stop();
      }
    }
    results.runs = runs;

    // W6: the same subscribers on one object (0) and over 1, 2 and 4 fan-out objects
    // (FANOUT_OBJECT_CAPACITY = subscribers / objects), interleaved over the runs like the systems.
    if (onlyW6 || Date.now() < DEADLINE) {
      const w6Runs: W6Row[][] = [];
      await mode("notifiws");
      await stack.retargetRelay(stack.workerUrl);
      for (let runIndex = 0; runIndex < RUNS; runIndex++) {
        const rows: W6Row[] = [];
        w6Runs.push(rows);
        for (const objects of rotate(P.w6Objects, runIndex)) {
          if (!onlyW6 && Date.now() > DEADLINE) break;
          const vars =
            objects === 0
              ? baseWorkerVars
              : { ...baseWorkerVars, FANOUT_CHANNELS: "bench", FANOUT_OBJECT_CAPACITY: String(Math.ceil(P.subscribers / objects)) };
          await notifiwsOn(PROD_RUNTIME, vars, true);
          log("W6 fan-out tree", { run: runIndex + 1, objects, subscribers: P.subscribers, runtime: PROD_RUNTIME });
          const swarm = await Swarm.start({ flavour: "notifiws", url: stack.workerUrl.replace(/^http/, "ws"), count: P.subscribers, token, concurrency: 100 });
          const steady = await endToEnd(swarm, { rate: 100, seconds: P.seconds });
          const burst = await endToEnd(swarm, { burst: P.burst });
          rows.push({
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
      }
      results.w6 = w6Runs;
    }
  } finally {
    killChildren();
    await db?.end().catch(() => undefined);
    await stack.stop();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  // W5 last, on its own durable Postgres, so the stack's processes cannot slow it.
  if (!onlyW6) {
    log("W5 database overhead");
    results.w5 = await runW5Standalone({ writers: [1, 8, 32], seconds: quick ? 3 : 10, runs: RUNS });
  }
  await report(results);
}

interface Figure {
  label: string;
  pick: (f: SystemResult) => number | undefined;
  higherIsBetter?: boolean;
}

/** The figures every notifiws runtime is compared on, against every other system of the same run. */
function figures(): Figure[] {
  const w1At = (n: number) => (f: SystemResult) => {
    const r = f.w1.find((x) => x.clients === n && Number(x.held) === n);
    return r ? Number(r.connectP99) : undefined;
  };
  return [
    ...[...new Set([P.subscribers, ...P.connectCounts])].map((n) => ({ label: `W1 connect p99, ${n} sockets`, pick: w1At(n) })),
    {
      label: `W1 connect p99 after the first wave (warm), ${P.subscribers} sockets`,
      pick: (f) => num(f.w1.find((x) => x.clients === P.subscribers && Number(x.held) === P.subscribers)?.warmP99),
    },
    {
      label: `W1 handshake (open) p99, ${P.subscribers} sockets`,
      pick: (f) => num(f.w1.find((x) => x.clients === P.subscribers && Number(x.held) === P.subscribers)?.openP99),
    },
    { label: `W1 server RSS, ${P.subscribers} sockets`, pick: (f) => Number(f.w1.find((x) => x.clients === P.subscribers)?.serverRssMiB) },
    {
      label: `W1 server RSS after a full GC, ${P.subscribers} sockets`,
      pick: (f) => num(f.w1.find((x) => x.clients === P.subscribers)?.serverRssAfterGcMiB),
    },
    {
      label: `W2 server RSS, ${P.subscribers} sockets sent events`,
      pick: (f) => num(f.w1.find((x) => x.clients === P.subscribers)?.serverRssAfterEventsMiB),
    },
    ...P.rates.map((rate) => ({ label: `W2 p99 at ${rate} rows/s`, pick: (f: SystemResult) => f.w2.find((r) => r.rate === rate && r.drained)?.p99 })),
    { label: "W3 fan-out deliveries/s", pick: (f) => f.w3?.deliveriesPerSec, higherIsBetter: true },
  ];
}

const num = (v: unknown) => (typeof v === "number" ? v : typeof v === "string" && v !== "" ? Number(v) : undefined);

async function report(results: Record<string, unknown>) {
  const out = join(HERE, "results");
  await mkdir(out, { recursive: true });
  const stamp = (results.date as string).replace(/[:.]/g, "-");
  const runs = (results.runs as Run[] | undefined) ?? [];
  const names = ALL_SYSTEMS.map((s) => s.name).filter((n) => runs.some((r) => r.systems[n]));
  /** A system's result in each run (undefined where it did not run). */
  const of = (name: string) => runs.map((r) => r.systems[name]);
  const across = (name: string, pick: (f: SystemResult) => number | undefined): Spread => spread(of(name).map((f) => (f ? pick(f) : undefined)));
  const fs = (sp: Spread, digits?: number) => formatSpread(sp, { digits });
  const lines: string[] = [
    `# notifiws bench (${results.mode}) ${results.date}`,
    "",
    `${runs.length} run(s); each figure is the median of the runs with the min–max in brackets; each ratio is taken within a run, then its median and min–max. Orders: ${runs.map((r, i) => `run ${i + 1}: ${r.order.join(" → ")}`).join("; ")}.`,
  ];
  const table = (title: string, header: string[], rows: (string | number)[][]) =>
    lines.push("", `## ${title}`, "", `| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`));
  table(
    "W1 connect",
    [
      "system",
      "clients",
      "held",
      "connect p50 ms",
      "connect p99 ms",
      "open p99 ms",
      "p99 after the first wave ms",
      "server RSS MiB",
      "RSS after GC MiB",
      "RSS after events MiB",
      "isolate heap MiB",
      "server fds/socket",
      "relay RSS MiB",
      "note",
    ],
    names.flatMap((name) =>
      // Sizes as measured: one over the open-file limit is recorded, then the largest that fits.
      [...new Set(of(name).flatMap((f) => f?.w1.map((x) => Number(x.clients)) ?? []))].flatMap((size) => {
        const rows = of(name).map((f) => f?.w1.find((x) => x.clients === size));
        const here = rows.filter((r): r is Record<string, number | string | undefined> => !!r);
        if (here.length === 0) return [];
        const col = (k: string) => spread(here.map((r) => num(r[k])));
        const notes = [...new Set(here.map((r) => r.error).filter(Boolean))].join("; ");
        return [
          [
            name,
            size,
            fs(col("held")),
            fs(col("connectP50")),
            fs(col("connectP99")),
            fs(col("openP99")),
            fs(col("warmP99")),
            fs(col("serverRssMiB")),
            fs(col("serverRssAfterGcMiB")),
            fs(col("serverRssAfterEventsMiB")),
            fs(col("isolateHeapMiB")),
            fs(col("serverFdsPerSocket"), 2),
            fs(col("relayRssMiB")),
            notes,
          ],
        ];
      }),
    ),
  );
  table(
    "W2 end-to-end (commit -> client, same clock)",
    ["system", "rows/s", "p50 ms", "p95 ms", "p99 ms", "deliveries/s", "undelivered at deadline (all runs)", "duplicates (all runs)"],
    names.flatMap((name) =>
      P.rates.map((rate) => {
        const rs = of(name).map((f) => f?.w2.find((r) => r.rate === rate));
        const col = (k: keyof E2E) => spread(rs.map((r) => (r ? num(r[k]) : undefined)));
        const sum = (k: "missing" | "duplicates") => rs.reduce((n, r) => n + (r?.[k] ?? 0), 0);
        return [name, rate, fs(col("p50")), fs(col("p95")), fs(col("p99")), fs(col("deliveriesPerSec")), sum("missing"), sum("duplicates")];
      }),
    ),
  );
  table(
    "W3 fan-out burst",
    ["system", "rows", "deliveries/s", "p99 ms", "undelivered at deadline (all runs)"],
    names.map((name) => {
      const rs = of(name).map((f) => f?.w3);
      return [name, P.burst, fs(spread(rs.map((r) => r?.deliveriesPerSec))), fs(spread(rs.map((r) => r?.p99))), rs.reduce((n, r) => n + (r?.missing ?? 0), 0)];
    }),
  );
  const w4s = runs.map((r) => r.w4).filter((w): w is W4 => !!w);
  if (w4s.length > 0)
    lines.push(
      "",
      `## W4 relay (notifiws on ${w4s[0]!.runtime})`,
      "",
      `- commit -> Worker ack: **${fs(spread(w4s.map((w) => w.eventsPerSec)))} events/s**; POST p50 ${fs(spread(w4s.map((w) => w.postLatencyP50Ms)))} ms, p99 ${fs(spread(w4s.map((w) => w.postLatencyP99Ms)))} ms`,
      `- 1,000 rows/s, one subscriber: commit -> client p50 ${fs(spread(w4s.map((w) => w.oneClientAt1000.p50)))} ms, p99 ${fs(spread(w4s.map((w) => w.oneClientAt1000.p99)))} ms`,
    );
  if (results.w5) lines.push(...w5Table(results.w5 as W5Cell[], RUNS));
  const w6 = results.w6 as W6Row[][] | undefined;
  if (w6 && w6.length > 0) {
    const at = (objects: number) => w6.map((run) => run.find((r) => r.objects === objects));
    const ref = at(0);
    table(
      `W6 fan-out tree on ${PROD_RUNTIME} (same subscribers; 100 rows/s, then a burst; ratios against one object in the same run)`,
      ["fan-out objects", "held", "p50 ms", "p99 ms", "p99 vs one object", "burst deliveries/s", "burst vs one object", "missing", "duplicates"],
      P.w6Objects.map((objects) => {
        const rs = at(objects);
        const vsOne = (pick: (r: W6Row | undefined) => number | undefined) =>
          formatSpread(ratioSpread(rs.map(pick), ref.map(pick)), { digits: 2, suffix: "x" });
        return [
          objects === 0 ? "none (one object)" : objects,
          fs(spread(rs.map((r) => r?.held))),
          fs(spread(rs.map((r) => r?.p50))),
          fs(spread(rs.map((r) => r?.p99))),
          vsOne((r) => r?.p99),
          fs(spread(rs.map((r) => r?.burstDeliveriesPerSec))),
          vsOne((r) => r?.burstDeliveriesPerSec),
          rs.reduce((n, r) => n + (r?.missing ?? 0), 0),
          rs.reduce((n, r) => n + (r?.duplicates ?? 0), 0),
        ];
      }),
    );
  }
  // Every figure of every notifiws runtime against every other system, as per-run ratios.
  const behind: string[] = [];
  const summaryRatios: Record<string, Record<string, { ratio: Spread; verdict: string }>> = {};
  for (const name of names.filter((n) => ALL_SYSTEMS.find((s) => s.name === n)!.flavour === "notifiws")) {
    const mine = ALL_SYSTEMS.find((s) => s.name === name)!;
    // Peers: the Node baselines, PartyServer on the same runtime, and notifiws on the other runtime (the dev proxy's cost).
    const peers = names.filter((other) => {
      const o = ALL_SYSTEMS.find((s) => s.name === other)!;
      return other !== name && (o.flavour !== "partyserver" || o.runtime === mine.runtime);
    });
    if (peers.length === 0) continue;
    lines.push(
      "",
      `## Ratios: ${name} / peer (per run, then median and min–max)`,
      "",
      `| figure | ${peers.join(" | ")} |`,
      `|---|${peers.map(() => "---").join("|")}|`,
    );
    for (const fig of figures()) {
      const cells = peers.map((peer) => {
        const r = ratioSpread(
          of(name).map((f) => (f ? fig.pick(f) : undefined)),
          of(peer).map((f) => (f ? fig.pick(f) : undefined)),
        );
        const v = verdict(r, fig.higherIsBetter);
        (summaryRatios[`${name} / ${peer}`] ??= {})[fig.label] = { ratio: r, verdict: v };
        if (v === "behind" && ALL_SYSTEMS.find((s) => s.name === peer)!.flavour !== "notifiws")
          behind.push(`${name} behind ${peer} on ${fig.label}: ${formatSpread(r, { digits: 2, suffix: "x" })}`);
        return `${formatSpread(r, { digits: 2, suffix: "x" })}${v === "behind" ? " **behind**" : v === "ahead" ? " ahead" : ""}`;
      });
      lines.push(`| ${fig.label}${fig.higherIsBetter ? " (higher is better)" : " (lower is better)"} | ${cells.join(" | ")} |`);
    }
  }
  results.ratios = summaryRatios;
  lines.push(
    "",
    "## Where notifiws is behind a peer in every run",
    "",
    ...(behind.length > 0 ? behind.map((b) => `- ${b}`) : ["- nowhere: every other ratio's range includes 1 or favours notifiws"]),
    "",
    "(A ratio is behind only when all its runs are; docs/benchmarks.md says where the time goes.)",
  );
  await writeFile(join(out, `${stamp}.json`), JSON.stringify(results, null, 2));
  const md = lines.join("\n") + "\n";
  await writeFile(join(out, `${stamp}.md`), md);
  // The chart draws the medians.
  const medians: Record<string, SystemResult> = {};
  for (const name of names) {
    const first = of(name).find((f) => f)!;
    medians[name] = {
      ...first,
      w2: P.rates.map((rate) => {
        const rs = of(name).map((f) => f?.w2.find((r) => r.rate === rate));
        return { ...(rs.find((r) => r) ?? ({} as E2E)), rate, p50: spread(rs.map((r) => r?.p50)).median, p99: spread(rs.map((r) => r?.p99)).median };
      }),
    };
  }
  await writeFile(join(out, `${stamp}.svg`), chart(medians));
  process.stdout.write(md + "\n");
  process.stdout.write(
    `summary: ${runs.length} run(s); ${behind.length} figure(s) behind a peer in every run${behind.length ? `: ${behind.join("; ")}` : ""} -> bench/results/${stamp}.md\n`,
  );
}

/** Latency percentiles by load (W2), one line per system and percentile; log-scale y. */
function chart(w: Record<string, SystemResult>): string {
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
  const colors: Record<string, string> = {
    "notifiws (miniflare)": "#2f9e6e",
    "notifiws (wrangler dev)": "#8fd1b0",
    "partyserver (miniflare)": "#9b4dca",
    "partyserver (wrangler dev)": "#cfa6e6",
    ws: "#3b6fd8",
    socketio: "#d8843b",
  };
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
    svg += `<text x="${W - 170}" y="${ly}" fill="${colors[name] ?? "#000"}">${name}</text>`;
    ly += 14;
  }
  return svg + "</svg>\n";
}

runBench(main);
