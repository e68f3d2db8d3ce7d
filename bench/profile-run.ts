/**
 * `npm run bench:profile [-- --clients N] [--burst N] [--runtime wrangler-dev]`:
 * where the time of a connect storm goes, notifiws against its same-platform
 * peer (PartyServer), both on Miniflare directly (or both under wrangler dev).
 * For each: a V8 CPU profile of the isolate (Worker and Durable Objects) while
 * N clients connect 100 at a time, then while a burst of
 * rows fans out to them; printed as time per code group and the top functions,
 * and written to bench/results/profile-<date>.md.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { devToken, Stack, type Proc } from "../scripts/stack";
import { percentile } from "./histogram";
import { groupPids, pidRss } from "./proc";
import { killChildren, runBench } from "./ipc";
import { startPartyServerPeer } from "./peer";
import { isolateHeap, startProfiler, type ProfileSummary } from "./profile";
import type { Flavour } from "./swarm";
import { Swarm } from "./swarm-group";

const HERE = dirname(fileURLToPath(import.meta.url));
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const CLIENTS = arg("clients", 1000);
const RUNTIME = process.argv.includes("wrangler-dev") ? "wrangler-dev" : "miniflare";
const BURST = arg("burst", 500);
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

interface Phase {
  phase: string;
  summary: ProfileSummary;
  connectP99?: number;
  /** The same after the first wave of 100 (cold isolate, new object). */
  warmP99?: number;
  deliveriesPerSec?: number;
  /** workerd's RSS (all its processes) once the phase is done, and before it (the connect phase: with no socket open). */
  rssMiB: number;
  rssBeforeMiB?: number;
  /** The isolate's heap after a full GC (connect phase). */
  heap?: { usedMiB: number; totalMiB: number };
  /** workerd's RSS again after that GC: what a collection gives back. */
  rssAfterGcMiB?: number;
}

async function profileSystem(db: pg.Pool, flavour: Flavour, url: string, inspectorPort: number, token: string, serverPid: number): Promise<Phase[]> {
  const rss = () => Math.round(groupPids(serverPid, /workerd/).reduce((s, pid) => s + pidRss(pid), 0));
  const phases: Phase[] = [];
  const before = rss();
  let profiler = await startProfiler(inspectorPort);
  const swarm = await Swarm.start({ flavour, url, count: CLIENTS, token, concurrency: 100 });
  const connect = await profiler.stop();
  const connected = await swarm.report();
  phases.push({
    phase: `connect ${CLIENTS}`,
    summary: connect,
    connectP99: percentile(connected.connectMs, 0.99),
    warmP99: percentile(connected.warmConnectMs, 0.99),
    rssMiB: rss(),
    rssBeforeMiB: before,
    heap: await isolateHeap(inspectorPort),
    rssAfterGcMiB: rss(),
  });

  const minId = Number((await db.query<{ v: string }>("SELECT nextval('bench_rows_id_seq') AS v")).rows[0]!.v) + 1;
  await swarm.ask({ cmd: "expect", minId, maxId: minId + BURST - 1 });
  profiler = await startProfiler(inspectorPort);
  await db.query("INSERT INTO bench_rows (payload) SELECT 'x' FROM generate_series(1, $1)", [BURST]);
  const deadline = Date.now() + 60_000;
  let rep = await swarm.report();
  while (rep.missing > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    rep = await swarm.report();
  }
  phases.push({
    phase: `fan out ${BURST} rows to ${CLIENTS}`,
    summary: await profiler.stop(),
    deliveriesPerSec: Math.round(rep.deliveries / (Math.max(1, rep.lastAt - rep.firstAt) / 1000)),
    rssMiB: rss(),
  });
  await swarm.stop();
  return phases;
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-profile-"));
  const stack = new Stack({
    stateDir: dir,
    demo: false,
    runtime: RUNTIME,
    workerVars: { LOG_LEVEL: "warn" },
    relayEnv: { LOG_LEVEL: "warn", RELAY_STATS_ENDPOINT: "1" },
  });
  const out: Record<string, Phase[]> = {};
  let db: pg.Pool | undefined;
  let peer: Proc | undefined;
  try {
    await stack.start();
    db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
    await db.query("CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, payload text, created_at timestamptz NOT NULL DEFAULT now())");
    await db.query("SELECT notifiws.watch('bench_rows', 'bench', ARRAY['id', 'payload'])");
    const token = await devToken(stack.secrets, { channels: ["bench"] });
    log("profiling notifiws", { clients: CLIENTS });
    out[`notifiws (${RUNTIME})`] = await profileSystem(
      db,
      "notifiws",
      stack.workerUrl.replace(/^http/, "ws"),
      stack.inspectorPort,
      token,
      stack.worker!.child.pid!,
    );

    // The peer, fed by the same relay.
    await stack.worker!.stop();
    const started = await startPartyServerPeer(stack, RUNTIME, dir);
    peer = started.proc;
    await stack.retargetRelay(started.url);
    log("profiling partyserver", { clients: CLIENTS });
    out[`partyserver (${RUNTIME})`] = await profileSystem(db, "partyserver", started.url.replace(/^http/, "ws"), started.inspectorPort, token, peer.child.pid!);
  } finally {
    killChildren();
    await peer?.stop();
    await db?.end().catch(() => undefined);
    await stack.stop();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }

  const lines = [`# CPU profile of the isolate (Worker + Durable Objects) on ${RUNTIME}, ${new Date().toISOString()}`];
  for (const [system, phases] of Object.entries(out)) {
    for (const p of phases) {
      const figure =
        p.connectP99 !== undefined
          ? `connect p99 ${p.connectP99.toFixed(1)} ms, ${p.warmP99?.toFixed(1) ?? "–"} ms after the first wave`
          : `${p.deliveriesPerSec} deliveries/s`;
      lines.push(
        "",
        `## ${system}: ${p.phase} (${figure}; JS busy ${p.summary.busyMs} ms, outside V8 ${p.summary.gapMs} ms, of ${p.summary.wallMs} ms; workerd RSS ${p.rssBeforeMiB !== undefined ? `${p.rssBeforeMiB} → ` : ""}${p.rssMiB} MiB${p.heap ? `; heap used ${p.heap.usedMiB} of ${p.heap.totalMiB} MiB after GC, RSS then ${p.rssAfterGcMiB} MiB` : ""})`,
        "",
      );
      lines.push("| code | self ms | share of busy |", "|---|---|---|", ...p.summary.groups.map((g) => `| ${g.group} | ${g.ms} | ${g.share}% |`));
      lines.push(
        "",
        "| function | where | self ms | share |",
        "|---|---|---|---|",
        ...p.summary.top.map((f) => `| ${f.fn} | ${f.where} | ${f.ms} | ${f.share}% |`),
      );
    }
  }
  const md = lines.join("\n") + "\n";
  await mkdir(join(HERE, "results"), { recursive: true });
  const file = join(HERE, "results", `profile-${new Date().toISOString().replace(/[:.]/g, "-")}.md`);
  await writeFile(file, md);
  process.stdout.write(md + `\n-> ${file}\n`);
}

runBench(main);
