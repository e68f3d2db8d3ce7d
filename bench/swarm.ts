/**
 * A load-generating client swarm, run as its own process (fork). It opens N
 * connections of one flavour (notifiws, PartyServer, plain ws, Socket.IO), records connect
 * times, then per delivery: latency (receive time − committedAt, same machine
 * clock) into a histogram, and per client a bitmap of row ids for the
 * loss/duplicate check. Controlled over IPC by bench/run.ts.
 */
import WebSocket from "ws";
import { io, type Socket } from "socket.io-client";
import { Histogram } from "./histogram";

export type Flavour = "notifiws" | "partyserver" | "ws" | "socketio";

export interface SwarmArgs {
  flavour: Flavour;
  url: string;
  count: number;
  /** notifiws only */
  token?: string;
  /** notifiws only: the channel (default `bench`). */
  channel?: string;
  /** Connections opening at once. */
  concurrency: number;
}

export type SwarmCommand = { cmd: "expect"; minId: number; maxId: number } | { cmd: "report" } | { cmd: "exit" };

export interface SwarmReport {
  connected: number;
  failed: number;
  connectMs: number[];
  /** Time to the socket's `open` (the handshake only): for notifiws the `welcome` follows; for the others it is connectMs. */
  openMs: number[];
  /**
   * connectMs of the connects started once the first `concurrency` had been
   * started: the first wave also waits for a cold isolate and a new object,
   * and on 1,000 clients it alone makes the p99 (docs/benchmarks.md, "Connect").
   */
  warmConnectMs: number[];
  deliveries: number;
  duplicates: number;
  missing: number;
  firstAt: number;
  lastAt: number;
  latency: number[];
  /** The latency histogram's buckets, so reports of several swarm processes merge exactly. */
  histogram: [number, number][];
}

interface Client {
  seen: Uint8Array;
  received: number;
  close(): void;
}

const args = JSON.parse(process.argv[2]!) as SwarmArgs;
const clients: Client[] = [];
const connectMs: number[] = [];
const openMs: number[] = [];
const warmConnectMs: number[] = [];
let failed = 0;
let hist = new Histogram();
let minId = 0;
let maxId = -1;
let deliveries = 0;
let duplicates = 0;
let firstAt = 0;
let lastAt = 0;

const now = () => performance.timeOrigin + performance.now();
/** Per-connection handshake timeout. */
const CONNECT_TIMEOUT_MS = 30_000;

function record(c: Client, id: number, committedAt: number, at: number) {
  deliveries++;
  if (!firstAt) firstAt = at;
  lastAt = at;
  hist.add(at - committedAt);
  if (id < minId || id > maxId) return;
  const i = id - minId;
  if (c.seen[i]) duplicates++;
  else {
    c.seen[i] = 1;
    c.received++;
  }
}

function open(index: number): Promise<void> {
  const started = now();
  const c: Client = { seen: new Uint8Array(0), received: 0, close: () => {} };
  return new Promise<void>((resolve) => {
    let settled = false;
    // A handshake that neither opens nor fails must not stall the swarm.
    const timer = setTimeout(() => {
      c.close();
      done(false);
    }, CONNECT_TIMEOUT_MS);
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) {
        connectMs.push(now() - started);
        if (index >= args.concurrency) warmConnectMs.push(now() - started);
        clients.push(c);
      } else failed++;
      resolve();
    };
    if (args.flavour === "socketio") {
      const s: Socket = io(args.url, { transports: ["websocket"], reconnection: false, timeout: 20_000 });
      s.on("connect", () => done(true));
      s.on("connect_error", () => done(false));
      s.on("event", (payload: string) => {
        const at = now();
        const e = JSON.parse(payload) as { id: number; committedAt: number };
        record(c, e.id, e.committedAt, at);
      });
      c.close = () => s.close();
      return;
    }
    const ws =
      args.flavour === "notifiws"
        ? new WebSocket(`${args.url}/ws/${args.channel ?? "bench"}`, ["notifiws.v1", `bearer.${args.token}`], { perMessageDeflate: false })
        : args.flavour === "partyserver"
          ? // bench/partyserver: routePartykitRequest maps the `Rooms` binding to /parties/rooms/<room>.
            new WebSocket(`${args.url}/parties/rooms/bench`, { perMessageDeflate: false })
          : new WebSocket(args.url, { perMessageDeflate: false });
    let welcomed = args.flavour !== "notifiws";
    ws.on("open", () => {
      openMs.push(now() - started);
      if (welcomed) done(true);
    });
    ws.on("error", () => !welcomed && done(false));
    ws.on("unexpected-response", () => done(false));
    ws.on("message", (data) => {
      const at = now();
      const msg = JSON.parse(data.toString()) as
        { type: "welcome" } | { type: "events"; events: { data: { id: number }; committedAt: number }[] } | { id: number; committedAt: number };
      if ("type" in msg) {
        if (msg.type === "welcome" && !welcomed) {
          welcomed = true;
          done(true);
        } else if (msg.type === "events") for (const e of msg.events) record(c, Number(e.data.id), e.committedAt, at);
      } else record(c, msg.id, msg.committedAt, at);
    });
    c.close = () => ws.terminate();
  });
}

async function connectAll() {
  let next = 0;
  const lanes = Array.from({ length: Math.min(args.concurrency, args.count) }, async () => {
    while (next < args.count) {
      await open(next++);
      const settled = clients.length + failed;
      if (settled % 1000 === 0)
        process.stderr.write(JSON.stringify({ level: "debug", msg: "swarm progress", flavour: args.flavour, connected: clients.length, failed }) + "\n");
    }
  });
  await Promise.all(lanes);
}

process.on("message", (m: SwarmCommand) => {
  if (m.cmd === "expect") {
    minId = m.minId;
    maxId = m.maxId;
    for (const c of clients) {
      c.seen = new Uint8Array(maxId - minId + 1);
      c.received = 0;
    }
    hist = new Histogram();
    deliveries = duplicates = firstAt = lastAt = 0;
    process.send!({ ok: true });
  } else if (m.cmd === "report") {
    const span = maxId - minId + 1;
    const missing = clients.reduce((s, c) => s + (span > 0 ? span - c.received : 0), 0);
    const report: SwarmReport = {
      connected: clients.length,
      failed,
      connectMs,
      openMs,
      warmConnectMs,
      deliveries,
      duplicates,
      missing,
      firstAt,
      lastAt,
      latency: hist.percentiles([0.5, 0.95, 0.99]),
      histogram: hist.toSparse(),
    };
    process.send!(report);
  } else if (m.cmd === "exit") {
    for (const c of clients) c.close();
    process.exit(0);
  }
});

await connectAll();
process.send!({ ready: true, connected: clients.length, failed });
