/**
 * W7, slow consumers: S subscribers on one channel (every one connected with
 * ack=1 and acknowledging as the SDK does: 1 s after the first
 * unacknowledged event, or after 500), P of them with their
 * TCP reading paused for the whole run, while Postgres commits R rows/s of
 * B bytes of incompressible data (random hex) through the relay. Reported,
 * for a run with the paused readers and the same run without them:
 * workerd's RSS sampled every 2 s (the curve), the bystanders' commit →
 * client latency p50/p99, and whether the paused clients, once they read
 * again (4009, then a resume from their last seq), got every event exactly
 * once. The Worker runs on Miniflare with the production flow-control
 * defaults (FLOW_SOCKET_BYTES 1 MiB, FLOW_GRACE_MS 5 s, FLOW_OBJECT_BYTES 32 MiB).
 *
 * `npm run bench:slow [-- --quick] [-- --subscribers S --paused P --rate R --bytes B --seconds T]`;
 * `npm run bench` does not run it. --quick: 50 subscribers, 20 rows/s, 30 s (this 2-core
 * machine cannot deliver 1,000 × 100 × 10 KB = 1 GB/s, nor 50 × 100 × 10 KB, even with no
 * paused reader: bystanders fell 14 s behind at the latter).
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import WebSocket from "ws";
import { devToken, Stack } from "../scripts/stack";
import { Histogram } from "./histogram";
import { paced } from "./pace";
import { createAcker } from "../client/ack";
import { groupPids, pidRss } from "./proc";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const quick = process.argv.includes("--quick");
const SUBSCRIBERS = arg("subscribers", quick ? 50 : 1000);
const PAUSED = arg("paused", 10);
const RATE = arg("rate", quick ? 20 : 100);
const BYTES = arg("bytes", 10_000);
const SECONDS = arg("seconds", quick ? 30 : 60);
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

interface Sub {
  ws: WebSocket;
  seqs: number[];
  closeCode?: number;
}

/** A subscriber that acknowledges every events frame; `onEvent` sees each event's commit time. */
function subscribe(url: string, token: string, since: number | undefined, onEvent: (committedAt: number) => void): Promise<Sub> {
  const q = new URLSearchParams({ ack: "1", ...(since !== undefined ? { since: String(since) } : {}) });
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws/w7?${q}`, ["notifiws.v1", `bearer.${token}`]);
  const sub: Sub = { ws, seqs: [] };
  const acker = createAcker((frame) => ws.readyState === WebSocket.OPEN && ws.send(frame), { everyEvents: 500, everyMs: 1000 });
  ws.on("message", (data) => {
    const m = JSON.parse(String(data)) as { type: string; events?: { seq: number; committedAt: number }[] };
    if (m.type !== "events") return;
    for (const e of m.events!) {
      sub.seqs.push(e.seq);
      onEvent(e.committedAt);
    }
    acker.delivered(m.events!.at(-1)!.seq, m.events!.length);
  });
  ws.on("close", (code) => {
    sub.closeCode = code;
    acker.stop();
  });
  return new Promise((resolve, reject) => {
    ws.once("message", () => resolve(sub)); // the welcome
    ws.once("error", reject);
  });
}

const tcp = (ws: WebSocket) => (ws as unknown as { _socket: import("node:net").Socket })._socket;

async function run(stack: Stack, db: pg.Pool, token: string, paused: number) {
  const latency = new Histogram();
  const subs: Sub[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const slow = i < paused;
    subs.push(await subscribe(stack.workerUrl, token, undefined, (at) => !slow && latency.add(Date.now() - at)));
  }
  for (const s of subs.slice(0, paused)) tcp(s.ws).pause();
  const workerd = groupPids(stack.worker!.child.pid, /workerd/);
  const curve: number[] = [];
  const sampler = setInterval(() => curve.push(Math.round(workerd.reduce((n, pid) => n + pidRss(pid), 0))), 2000);
  const head0 = Number((await db.query("SELECT coalesce(max(id), 0) AS n FROM w7")).rows[0].n);
  await paced(RATE, SECONDS, async (n) => {
    const rows = Array.from({ length: n }, () => randomBytes(BYTES / 2).toString("hex"));
    await db.query("INSERT INTO w7 (payload) SELECT unnest($1::text[])", [rows]);
  });
  const total = Number((await db.query("SELECT max(id) AS n FROM w7")).rows[0].n) - head0;
  const bystanders = subs.slice(paused);
  const deadline = Date.now() + 60_000;
  while (bystanders.some((s) => s.seqs.length < total) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  clearInterval(sampler);
  // The paused clients read again, all at once: what they got, then (closed with 4009) a resume from
  // their last seq. A client that sees neither its events nor a close within the SDK's heartbeat
  // timeout (10 s) drops the connection and resumes, as the SDK does; those are counted.
  for (const s of subs.slice(0, paused)) tcp(s.ws).resume();
  let complete = 0;
  let silent = 0;
  const codes: number[] = [];
  await Promise.all(
    subs.slice(0, paused).map(async (s) => {
      let seen = s.seqs.length;
      let lastProgress = Date.now();
      while (s.closeCode === undefined && s.seqs.length < total && Date.now() - lastProgress < 10_000) {
        await new Promise((r) => setTimeout(r, 50));
        if (s.seqs.length > seen) [seen, lastProgress] = [s.seqs.length, Date.now()];
      }
      if (s.seqs.length < total) {
        if (s.closeCode !== undefined) codes.push(s.closeCode);
        else {
          silent++;
          s.ws.terminate();
        }
        const again = await subscribe(stack.workerUrl, token, s.seqs.at(-1) ?? 0, () => {});
        const until = Date.now() + 30_000;
        while (s.seqs.length + again.seqs.length < total && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        s.seqs.push(...again.seqs);
        again.ws.terminate();
      }
      const first = s.seqs[0] ?? 0;
      if (s.seqs.length === total && s.seqs.every((q, i) => q === first + i)) complete++;
    }),
  );
  for (const s of subs) s.ws.terminate();
  const [p50, p99] = latency.percentiles([0.5, 0.99]);
  const missing = bystanders.filter((s) => s.seqs.length < total).length;
  return {
    paused,
    events: total,
    p50: p50!,
    p99: p99!,
    rssMaxMiB: Math.max(...curve),
    curve,
    pausedComplete: complete,
    pausedSilent: silent,
    pausedCloseCodes: codes,
    bystandersMissing: missing,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-w7-"));
  await chmod(dir, 0o755); // the postgres user traverses it to its data directory
  let stack: Stack | undefined;
  let db: pg.Pool | undefined;
  const results = [];
  try {
    // Without paused readers; with them; with them and the budgets at their maximum (as good as no flow control here).
    for (const [paused, off] of [
      [0, false],
      [PAUSED, false],
      [PAUSED, true],
    ] as const) {
      stack = await new Stack({
        stateDir: join(dir, `p${paused}${off ? "off" : ""}`),
        runtime: "miniflare",
        demo: false,
        // The history holds the whole run, so the paused clients can resume from wherever they were closed.
        workerVars: {
          LOG_LEVEL: "warn",
          HISTORY_MAX_EVENTS: String(Math.max(1000, RATE * SECONDS * 2)),
          ...(off ? { FLOW_SOCKET_BYTES: String(64 * 1024 * 1024), FLOW_OBJECT_BYTES: String(96 * 1024 * 1024) } : {}),
        },
        relayEnv: { LOG_LEVEL: "warn" },
      }).start();
      db = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
      await db.query("CREATE TABLE w7 (id bigserial PRIMARY KEY, payload text); SELECT notifiws.watch('w7', 'w7', ARRAY['id', 'payload'])");
      const token = await devToken(stack.secrets);
      const r = { ...(await run(stack, db, token, paused)), flowControl: !off };
      log("run", r);
      results.push(r);
      await db.end();
      db = undefined;
      await stack.stop();
      stack = undefined;
    }
  } finally {
    await db?.end().catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  const [base, slow, off] = results as [(typeof results)[0], (typeof results)[0], (typeof results)[0]];
  console.log(
    [
      `W7 slow consumers: ${SUBSCRIBERS} subscribers, ${RATE} rows/s of ${BYTES} B for ${SECONDS} s`,
      "",
      "| run | events | bystander p50 ms | bystander p99 ms | workerd RSS max MiB | paused clients complete | bystanders missing events |",
      "| --- | --- | --- | --- | --- | --- | --- |",
      ...[base, slow, off].map(
        (r) =>
          `| ${r.paused} paused${r.flowControl ? "" : ", budgets at their maximum"} | ${r.events} | ${r.p50} | ${r.p99} | ${r.rssMaxMiB} | ${r.paused ? `${r.pausedComplete}/${r.paused} (4009 seen: ${r.pausedCloseCodes.filter((c) => c === 4009).length}; no close frame, resumed after the heartbeat timeout: ${r.pausedSilent})` : "–"} | ${r.bystandersMissing} |`,
      ),
      "",
      `p99 with paused readers / without: ${(slow.p99 / base.p99).toFixed(2)}x`,
      `workerd RSS every 2 s, MiB: without ${base.curve.join(" ")}; with ${slow.curve.join(" ")}; with, budgets at their maximum ${off.curve.join(" ")}`,
    ].join("\n"),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
