/**
 * `npm run bench:bill`: what notifiws costs a month on Cloudflare for two
 * reference workloads, from the billable operations the code counts in a live
 * run (Postgres, the relay and the Worker on Miniflare directly, real
 * sockets), priced with Cloudflare's published prices, next to the list
 * price Supabase Realtime, Ably and Pusher publish for the same traffic.
 *
 * Measured (scaled down, then multiplied out): per event, SQLite rows written
 * and read, Durable Object requests and setAlarm calls summed over the
 * channel's objects (/stats: durable-objects/sql.ts, durable-objects/meter.ts),
 * and relay POSTs (Worker requests, the relay's /metrics). The fan-out tree's
 * cost per fan-out object is the tree run minus the one-object run at the
 * same rate, divided by its objects. Counted from the code, not measured:
 * each ids-only page's delete after the dedupe window (durable-objects/pages.ts,
 * one per 512 KiB of ids; a short run ends before it), the SDK's acks (client/ack.ts: one per
 * ACK_EVERY_MS per viewer while events arrive), the stats store's reports
 * (at most one per object per STATS_ROLLUP_MS). Assumed, and said so in the
 * output: viewers reconnect once an hour, a Worker request costs 1 ms of CPU.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { devToken, Stack } from "../scripts/stack";
import { DEFAULT_ACK_EVERY_MS } from "../client/ack";
import { ID_PAGE_MAX_BYTES } from "../durable-objects/page-format";
import { killChildren, runBench } from "./ipc";
import { paced } from "./pace";
import { Swarm } from "./swarm-group";

const MONTH_S = 30 * 86_400;
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

/**
 * Workers Paid, as published on 2026-11-30: developers.cloudflare.com/workers/platform/pricing/
 * and developers.cloudflare.com/durable-objects/platform/pricing/ (included per month, then per unit).
 */
const CF = {
  base: 5,
  workerRequests: { included: 10e6, perMillion: 0.3 },
  workerCpuMs: { included: 30e6, perMillion: 0.02 },
  doRequests: { included: 1e6, perMillion: 0.15 },
  /** Duration while an object is awake, at 128 MB: GB-s. */
  doGbSeconds: { included: 400_000, perMillion: 12.5 },
  rowsRead: { included: 25e9, perMillion: 0.001 },
  rowsWritten: { included: 50e6, perMillion: 1 },
  storageGbMonth: { included: 5, perGb: 0.2 },
};
/** Incoming WebSocket messages are billed as requests at 20:1. */
const WS_MESSAGES_PER_REQUEST = 20;
const STATS_ROLLUP_S = 5;
/** An id with its share of the runs (a UUID, and [at, n, batch id] per batch) is under 200 bytes in an ids-only page. */
const EVENTS_PER_ID_PAGE = Math.floor(ID_PAGE_MAX_BYTES / 200);

interface Totals {
  events: number;
  sqlRowsWritten: number;
  sqlRowsRead: number;
  objectRequests: number;
  alarmsSet: number;
}
type PerEvent = Totals & { relayPosts: number };

interface Workload {
  name: string;
  channels: number;
  eventsPerSec: number;
  viewersPerChannel: number;
  /** Viewers per fan-out object (0: one object per channel holds them all). */
  fanoutCapacity: number;
}
const WORKLOADS: Workload[] = [
  { name: "10 channels × 10 events/s × 1,000 viewers each", channels: 10, eventsPerSec: 10, viewersPerChannel: 1000, fanoutCapacity: 0 },
  {
    name: "1 channel × 100 events/s × 10,000 viewers (fan-out tree, 1,000 per object)",
    channels: 1,
    eventsPerSec: 100,
    viewersPerChannel: 10_000,
    fanoutCapacity: 1000,
  },
];

runBench(async () => {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-bill-"));
  // A short history, so the run reaches the steady state where each event also prunes one (the rows per event do not depend on its size).
  const baseVars = { HISTORY_MAX_EVENTS: "50", LOG_LEVEL: "warn" };
  const stack = new Stack({ stateDir: dir, demo: false, runtime: "miniflare", workerVars: baseVars, relayEnv: { LOG_LEVEL: "warn" } });
  let db: pg.Pool | undefined;
  try {
    await stack.start();
    db = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
    const token = await devToken(stack.secrets, { channels: ["bill.*"] });
    let runNo = 0;

    async function measure(opts: { channels: number; rate: number; viewers: number; fanoutCapacity?: number; seconds: number }): Promise<PerEvent> {
      const run = ++runNo;
      const names = Array.from({ length: opts.channels }, (_, i) => `bill.${run}.${i}`);
      await stack.worker!.stop();
      stack.opts.workerVars = opts.fanoutCapacity ? { ...baseVars, FANOUT_CHANNELS: "bill.*", FANOUT_OBJECT_CAPACITY: String(opts.fanoutCapacity) } : baseVars;
      await stack.startWorker();
      for (const ch of names) {
        const table = ch.replace(/\./g, "_");
        await db!.query(`CREATE TABLE ${table} (id bigserial PRIMARY KEY, payload text)`);
        await db!.query("SELECT notifiws.watch($1::regclass, $2, ARRAY['id', 'payload'])", [table, ch]);
      }
      const swarms = await Promise.all(
        names.map((channel) =>
          Swarm.start({ flavour: "notifiws", url: stack.workerUrl.replace(/^http/, "ws"), count: opts.viewers, token, concurrency: 50, channel }),
        ),
      );
      const held = swarms.reduce((n, s) => n + s.ready.connected, 0);
      if (held !== opts.channels * opts.viewers) throw new Error(`${held} of ${opts.channels * opts.viewers} viewers connected`);
      const write = (seconds: number) =>
        Promise.all(
          names.map((ch) =>
            paced(
              opts.rate,
              seconds,
              async (n) => void (await db!.query(`INSERT INTO ${ch.replace(/\./g, "_")} (payload) SELECT 'x' FROM generate_series(1, $1)`, [n])),
            ),
          ),
        );
      await write(5); // warm-up: past the history, the first alarms and reports
      const a = await settled(names, opts.channels * opts.rate * 5);
      const postsA = await relayPosts();
      await write(opts.seconds);
      const b = await settled(names, opts.channels * opts.rate * (5 + opts.seconds));
      const postsB = await relayPosts();
      for (const s of swarms) await s.stop();
      const events = b.events - a.events;
      const per = (k: keyof Totals) => (b[k] - a[k]) / events;
      const result = {
        events,
        sqlRowsWritten: per("sqlRowsWritten"),
        sqlRowsRead: per("sqlRowsRead"),
        objectRequests: per("objectRequests"),
        alarmsSet: per("alarmsSet"),
        relayPosts: (postsB - postsA) / events,
      };
      log("measured", { ...opts, ...result });
      return result;
    }

    /** The channels' totals once every event is counted and two reports in a row agree (bounded). */
    async function settled(names: string[], events: number): Promise<Totals> {
      const until = Date.now() + 90_000;
      let last = "";
      let stableSince = 0;
      for (;;) {
        const t = await totals(names);
        const key = JSON.stringify(t);
        if (key !== last) [last, stableSince] = [key, Date.now()];
        if (t.events >= events && Date.now() - stableSince > (STATS_ROLLUP_S + 1) * 1000) return t;
        if (Date.now() > until) throw new Error(`stats did not settle: ${key}, expected ${events} events`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }

    async function totals(names: string[]): Promise<Totals> {
      const res = await fetch(`${stack.workerUrl}/stats`, { headers: { authorization: `Bearer ${stack.secrets.ADMIN_TOKEN}` } });
      const body = (await res.json()) as { channels: (Totals & { channel: string })[] };
      const sum: Totals = { events: 0, sqlRowsWritten: 0, sqlRowsRead: 0, objectRequests: 0, alarmsSet: 0 };
      for (const c of body.channels.filter((c) => names.includes(c.channel))) for (const k of Object.keys(sum) as (keyof Totals)[]) sum[k] += Number(c[k] ?? 0);
      return sum;
    }

    async function relayPosts(): Promise<number> {
      const text = await (await fetch(`${stack.relayUrl}/metrics`)).text();
      return Number(/^notifiws_relay_batches_total (\d+)/m.exec(text)?.[1] ?? NaN);
    }

    log("measuring: 2 channels × 10 events/s × 50 viewers");
    const small = await measure({ channels: 2, rate: 10, viewers: 50, seconds: 20 });
    log("measuring: 1 channel × 100 events/s × 200 viewers, one object");
    const one = await measure({ channels: 1, rate: 100, viewers: 200, seconds: 20 });
    log("measuring: the same over 4 fan-out objects");
    const tree = await measure({ channels: 1, rate: 100, viewers: 200, fanoutCapacity: 50, seconds: 20 });
    const perFanout = {
      sqlRowsWritten: (tree.sqlRowsWritten - one.sqlRowsWritten) / 4,
      sqlRowsRead: (tree.sqlRowsRead - one.sqlRowsRead) / 4,
      objectRequests: (tree.objectRequests - one.objectRequests) / 4,
      alarmsSet: (tree.alarmsSet - one.alarmsSet) / 4,
    };
    process.stdout.write(render([small, one, tree], perFanout));
  } finally {
    killChildren();
    await db?.end().catch(() => undefined);
    await stack.stop();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
});

const over = (used: number, p: { included: number; perMillion: number }) => (Math.max(0, used - p.included) / 1e6) * p.perMillion;
const usd = (v: number) => (v >= 100 ? `$${Math.round(v).toLocaleString("en-US")}` : `$${v.toFixed(2)}`);
const fmt = (v: number) => (v >= 1e9 ? `${(v / 1e9).toFixed(2)}B` : v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : Math.round(v).toLocaleString("en-US"));

function render(measured: PerEvent[], perFanout: Omit<Totals, "events">): string {
  const [small, one] = measured as [PerEvent, PerEvent, PerEvent];
  const lines = [
    "# notifiws: the monthly bill of reference workloads",
    "",
    "Measured per event (summed over the channel's objects; `npm run bench:bill`):",
    "",
    "| run | events | rows written | rows read | object requests | setAlarm | relay POSTs |",
    "|---|---|---|---|---|---|---|",
    ...["2 channels × 10/s, one object each", "1 channel × 100/s, one object", "1 channel × 100/s, 4 fan-out objects"].map(
      (name, i) =>
        `| ${name} | ${measured[i]!.events} | ${measured[i]!.sqlRowsWritten.toFixed(2)} | ${measured[i]!.sqlRowsRead.toFixed(2)} | ${measured[i]!.objectRequests.toFixed(3)} | ${measured[i]!.alarmsSet.toFixed(3)} | ${measured[i]!.relayPosts.toFixed(3)} |`,
    ),
    `| each fan-out object (tree − one object) / 4 | | ${perFanout.sqlRowsWritten.toFixed(2)} | ${perFanout.sqlRowsRead.toFixed(2)} | ${perFanout.objectRequests.toFixed(3)} | ${perFanout.alarmsSet.toFixed(3)} | |`,
    "",
  ];
  for (const w of WORKLOADS) {
    const base = w.eventsPerSec >= 100 ? one : small;
    const fanouts = w.fanoutCapacity ? Math.ceil(w.viewersPerChannel / w.fanoutCapacity) : 0;
    const events = w.channels * w.eventsPerSec * MONTH_S;
    const viewers = w.channels * w.viewersPerChannel;
    const objects = w.channels * (1 + fanouts);
    // Each ids-only page is deleted once its ids leave the dedupe window (a day), after a short run ends.
    // + the stats store's report: its row and its index entry moved (a delete and an insert), durable-objects/stats-store.ts.
    const rowsWritten =
      events * (base.sqlRowsWritten + 1 / EVENTS_PER_ID_PAGE + fanouts * perFanout.sqlRowsWritten) + ((objects * MONTH_S) / STATS_ROLLUP_S) * 3;
    const rowsRead = events * (base.sqlRowsRead + fanouts * perFanout.sqlRowsRead);
    const connects = viewers * 24 * 30; // assumed: each viewer reconnects once an hour
    const acks = viewers * Math.min(w.eventsPerSec, 1000 / DEFAULT_ACK_EVERY_MS) * MONTH_S;
    const reports = (objects * MONTH_S) / STATS_ROLLUP_S;
    const doRequests = events * (base.objectRequests + fanouts * perFanout.objectRequests) + connects + acks / WS_MESSAGES_PER_REQUEST + reports;
    const workerRequests = events * base.relayPosts + connects;
    // Every object is awake all month: an event at least every 10 s keeps it from hibernating.
    const gbSeconds = (objects + 1) * MONTH_S * 0.125;
    const deliveries = events * w.viewersPerChannel;
    const bill = {
      base: CF.base,
      rowsWritten: over(rowsWritten, CF.rowsWritten),
      rowsRead: over(rowsRead, CF.rowsRead),
      doRequests: over(doRequests, CF.doRequests),
      duration: over(gbSeconds, CF.doGbSeconds),
      workerRequests: over(workerRequests, CF.workerRequests),
      workerCpu: over(workerRequests * 1, CF.workerCpuMs),
    };
    const total = Object.values(bill).reduce((a, b) => a + b, 0);
    const supabase = 25 + Math.ceil(Math.max(0, deliveries - 5e6) / 1e6) * 2.5 + Math.ceil(Math.max(0, viewers - 500) / 1000) * 10;
    const ably = 29 + ((events + deliveries) / 1e6) * 2.5 + Math.ceil(viewers / 1000) * 20 + Math.ceil(w.channels / 1000) * 20;
    lines.push(
      `## ${w.name}`,
      "",
      `${fmt(events)} events and ${fmt(deliveries)} deliveries a month; ${objects} channel objects${fanouts ? ` (${fanouts} fan-out objects per channel)` : ""}.`,
      "",
      "| notifiws on Cloudflare | used a month | cost |",
      "|---|---|---|",
      `| Workers Paid base | | ${usd(bill.base)} |`,
      `| SQLite rows written (measured per event + each ids-only page's delete after the dedupe window + the stats store's report rows) | ${fmt(rowsWritten)} | ${usd(bill.rowsWritten)} |`,
      `| SQLite rows read | ${fmt(rowsRead)} | ${usd(bill.rowsRead)} |`,
      `| Durable Object requests (ingest and hand-off RPCs, alarms, connects, acks at 20:1, stats reports) | ${fmt(doRequests)} | ${usd(bill.doRequests)} |`,
      `| Durable Object duration (every object awake all month, 128 MB) | ${fmt(gbSeconds)} GB-s | ${usd(bill.duration)} |`,
      `| Worker requests (relay POSTs, connects) | ${fmt(workerRequests)} | ${usd(bill.workerRequests)} |`,
      `| Worker CPU (assumed 1 ms per request) | ${fmt(workerRequests)} ms | ${usd(bill.workerCpu)} |`,
      `| **total** | | **${usd(total)}** |`,
      "",
      "| published list price for the same traffic | a month |",
      "|---|---|",
      `| Supabase Realtime (Pro $25; $2.50 per million messages over 5M, one per client per change; $10 per 1,000 peak connections over 500) | ${usd(supabase)}; above the Pro plan's published quotas (2,500 messages/s, 10,000 clients), so an Enterprise contract |`,
      `| Ably (Standard $29; overage $2.50 per million messages, publish + each delivery; $20 per 1,000 peak connections and channels) | ${usd(ably)}; above the Standard package's 2,500 messages/s, so an Enterprise contract |`,
      `| Pusher Channels (packages by messages a day and connections; a message per publish and per delivery) | no published package carries ${fmt(deliveries / 30)} messages a day: an unpublished Enterprise price |`,
      "",
    );
  }
  lines.push(
    "Assumed, not measured: viewers reconnect once an hour; a Worker request costs 1 ms of CPU; stored data stays inside the 5 GB included (the history, and the dedupe ids of a day, about 50 bytes each, kept in their pages). Prices as published on 2026-11-30.",
    "",
  );
  return lines.join("\n");
}
