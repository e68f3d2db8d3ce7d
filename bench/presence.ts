/**
 * W9, presence: M members (distinct users, every one subscribed with
 * presence=1) join one channel over T seconds, evenly paced, on the Worker
 * under Miniflare with the production presence defaults (250 ms batches,
 * 5 s grace) and PRESENCE_MAX_MEMBERS = M, so every join is listed.
 * Reported per run, for one channel object and for the fan-out tree (4
 * fan-out objects of M/4 sockets):
 * - join → seen latency: for every member that joins and every subscriber
 *   already present, the time from the joiner's `welcome` to the frame in
 *   which that subscriber first lists it (p50/p99/max, over all pairs);
 * - presence frames and bytes per subscriber;
 * - whether every subscriber ends with the same M members and exact counts.
 * Each figure is the median over --runs runs (min–max).
 *
 * `npm run bench:presence [-- --quick] [-- --members M --seconds T --runs N]`;
 * `npm run bench` does not run it. --quick: 200 members over 5 s, 1 run.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { mintToken } from "../shared/token";
import { Stack } from "../scripts/stack";
import { Histogram } from "./histogram";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const quick = process.argv.includes("--quick");
const MEMBERS = arg("members", quick ? 200 : 1000);
const SECONDS = arg("seconds", quick ? 5 : 10);
const RUNS = arg("runs", quick ? 1 : 3);
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

interface Member {
  sub: string;
  ws: WebSocket;
  /** When each other member was first listed in a frame this one received. */
  seen: Map<string, number>;
  listed: Set<string>;
  frames: number;
  bytes: number;
  users: number;
  connections: number;
}

type Frame =
  | { type: "presence"; members: { sub: string }[]; users: number; connections: number }
  | { type: "presence_diff"; joins: { sub: string }[]; leaves: string[]; users: number; connections: number }
  | { type: string };

function join1(url: string, channel: string, sub: string, token: string, welcomed: Map<string, number>): Promise<Member> {
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws/${channel}?presence=1`, ["notifiws.v1", `bearer.${token}`]);
  const m: Member = { sub, ws, seen: new Map(), listed: new Set(), frames: 0, bytes: 0, users: 0, connections: 0 };
  ws.on("message", (data) => {
    const now = performance.now();
    const text = String(data);
    const f = JSON.parse(text) as Frame;
    if (f.type === "welcome") welcomed.set(sub, now);
    if (f.type !== "presence" && f.type !== "presence_diff") return;
    m.frames++;
    m.bytes += Buffer.byteLength(text);
    const p = f as Extract<Frame, { users: number }>;
    m.users = p.users;
    m.connections = p.connections;
    if ("members" in p) m.listed = new Set(p.members.map((x) => x.sub));
    else {
      for (const s of p.leaves) m.listed.delete(s);
      for (const j of p.joins) m.listed.add(j.sub);
    }
    for (const s of m.listed) if (!m.seen.has(s)) m.seen.set(s, now);
  });
  return new Promise((resolve, reject) => {
    ws.once("message", () => resolve(m));
    ws.once("error", reject);
  });
}

async function run(stack: Stack, channel: string) {
  const tokens = await Promise.all(
    Array.from({ length: MEMBERS }, (_, i) => mintToken({ secret: stack.secrets.JWT_SECRET, sub: `m${i}`, channels: ["*"], ttlSeconds: 3600 })),
  );
  const welcomed = new Map<string, number>();
  const members: Promise<Member>[] = [];
  const started = performance.now();
  for (let i = 0; i < MEMBERS; i++) {
    const due = started + (i * SECONDS * 1000) / MEMBERS;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    members.push(join1(stack.workerUrl, channel, `m${i}`, tokens[i]!, welcomed));
  }
  const all = await Promise.all(members);
  // Settled: every member lists every member (bounded wait).
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline && !all.every((m) => m.listed.size === MEMBERS && m.users === MEMBERS)) await new Promise((r) => setTimeout(r, 50));
  const latency = new Histogram();
  for (const m of all)
    for (const [s, at] of m.seen) {
      const w = welcomed.get(s);
      // Pairs where the subscriber joined after the member: it learned of it from its own state, not a diff.
      if (w !== undefined && (welcomed.get(m.sub) ?? Infinity) < w) latency.add(Math.max(0, at - w));
    }
  const [p50, p99, max] = latency.percentiles([0.5, 0.99, 1]);
  const frames = all.map((m) => m.frames).sort((a, b) => a - b);
  const bytes = all.map((m) => m.bytes).sort((a, b) => a - b);
  const consistent = all.every((m) => m.listed.size === MEMBERS && m.users === MEMBERS && m.connections === MEMBERS);
  for (const m of all) m.ws.terminate();
  return {
    p50: p50!,
    p99: p99!,
    max: max!,
    pairs: latency.count,
    framesMedian: frames[frames.length >> 1]!,
    kbMedian: Math.round(bytes[bytes.length >> 1]! / 1024),
    consistent,
  };
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const span = (xs: number[], digits = 0) => `${med(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-w9-"));
  await chmod(dir, 0o755); // the postgres user traverses it to its data directory
  let stack: Stack | undefined;
  const rows: string[] = [];
  try {
    stack = await new Stack({
      stateDir: dir,
      runtime: "miniflare",
      demo: false,
      workerVars: {
        LOG_LEVEL: "warn",
        PRESENCE_CHANNELS: "w9.*,w9t.*",
        PRESENCE_MAX_MEMBERS: String(Math.min(1000, MEMBERS)),
        // 1,000 listed members must fit one frame (shared/worker-config.ts, presenceFrameBytes); the bench sets no metadata.
        PRESENCE_META_BYTES: "64",
        PRESENCE_CLAIMS: "",
        MAX_FRAME_BYTES: "1000000",
        FANOUT_CHANNELS: "w9t.*",
        FANOUT_OBJECT_CAPACITY: String(Math.ceil(MEMBERS / 4)),
        MAX_SOCKETS_PER_OBJECT: String(Math.max(MEMBERS + 10, 100)),
        CLIENT_RATE_BURST: "100",
      },
      relayEnv: { LOG_LEVEL: "warn" },
    }).start();
    for (const [label, prefix] of [
      ["one channel object", "w9"],
      ["fan-out tree, 4 objects", "w9t"],
    ] as const) {
      const results = [];
      for (let r = 0; r < RUNS; r++) {
        const res = await run(stack, `${prefix}.r${r}x${Date.now().toString(36)}`);
        log("run", { label, ...res });
        results.push(res);
      }
      rows.push(
        `| ${label} | ${span(results.map((r) => r.p50))} | ${span(results.map((r) => r.p99))} | ${span(results.map((r) => r.max))} | ${span(results.map((r) => r.framesMedian))} | ${span(results.map((r) => r.kbMedian))} | ${results.every((r) => r.consistent) ? "yes" : "NO"} |`,
      );
    }
  } finally {
    await stack?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  console.log(
    [
      `W9 presence: ${MEMBERS} members joining over ${SECONDS} s, all subscribed; median of ${RUNS} run(s) (min–max)`,
      "",
      "| where | join → seen p50 ms | p99 ms | max ms | presence frames per subscriber | KiB per subscriber | every subscriber ends with the same members and exact counts |",
      "| --- | --- | --- | --- | --- | --- | --- |",
      ...rows,
    ].join("\n"),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
