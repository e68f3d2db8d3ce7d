/** Relay counters and the /healthz + /metrics HTTP server. */
import { createServer, type Server } from "node:http";
import type pg from "pg";
import { Histogram, renderHistogram } from "../shared/histogram";

/** What /metrics reads from Postgres at scrape time. */
export interface Backlog {
  events: number;
  oldestSeconds: number;
  /** The replication slot, while one exists (wal mode, or being retired). */
  slot?: { retainedBytes: number; behindBytes: number; behindSeconds: number; lost: boolean; pendingBytes: number };
}

/** Reads the outbox's backlog and, while a slot exists, what it retains (a scrape's two queries). */
/** What the backlog reads of the WAL stream (relay/wal.ts): named here so the metrics do not import the stream. */
export interface PendingWal {
  oldestPendingAt: number | undefined;
  pendingBytes: number;
}

export async function readBacklog(client: pg.Client, slotName: string, wal: PendingWal | undefined): Promise<Backlog> {
  const r = await client.query<{ n: string; age: number | null }>(
    "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM notifiws.outbox",
  );
  const backlog: Backlog = { events: Number(r.rows[0]!.n), oldestSeconds: Math.max(0, r.rows[0]!.age ?? 0) };
  const slot = await client.query<{ retained: string | null; behind: string | null; status: string | null }>(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text AS retained,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS behind, wal_status AS status
       FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`,
    [slotName],
  );
  const row = slot.rows[0];
  if (row) {
    const oldest = wal?.oldestPendingAt;
    backlog.slot = {
      retainedBytes: Number(row.retained ?? 0),
      behindBytes: Number(row.behind ?? 0),
      behindSeconds: oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
      lost: row.status === "lost",
      pendingBytes: wal?.pendingBytes ?? 0,
    };
  }
  return backlog;
}

export class RelayMetrics {
  connected = false;
  leader = false;
  /** The mode the leader set (0 outbox, 1 wal in /metrics). */
  captureMode: "outbox" | "wal" | undefined;
  /** Times the leader found its slot invalidated by Postgres and recreated it (channels were reset). */
  slotInvalidations = 0;
  eventsDelivered = 0;
  batches = 0;
  retries = 0;
  failures = 0;
  deadLettered = 0;
  reconnects = 0;
  /** Times this relay, as a standby, terminated a leader that made no progress. */
  takeovers = 0;
  /** Channels whose rows are held back after the edge failed to store them. */
  heldChannels = 0;
  /** Failed POSTs by HTTP status ("none" for network errors and timeouts) and error code. */
  private readonly refusals = new Map<string, { status: string; code: string; n: number }>();
  private latencies: number[] = [];
  /** POST round trip to the Worker, seconds. */
  readonly postLatency = new Histogram();
  /** Commit (the trigger's clock_timestamp) to the Worker's acknowledgement, per event, seconds. */
  readonly commitToAck = new Histogram();
  private deliveries: { at: number; n: number }[] = [];

  recordPost(ms: number): void {
    this.postLatency.observe(ms / 1000);
    this.latencies.push(ms);
    if (this.latencies.length > 2048) this.latencies.splice(0, this.latencies.length - 2048);
  }

  recordRefusal(status: number | undefined, code: string): void {
    const key = `${status ?? "none"}|${code}`;
    const r = this.refusals.get(key) ?? { status: String(status ?? "none"), code, n: 0 };
    r.n++;
    this.refusals.set(key, r);
  }

  /** Failed POSTs with this error code (all statuses). */
  refusalCount(code: string): number {
    let n = 0;
    for (const r of this.refusals.values()) if (r.code === code) n += r.n;
    return n;
  }

  recordDelivered(n: number, now = Date.now()): void {
    this.eventsDelivered += n;
    this.batches++;
    this.deliveries.push({ at: now, n });
    while (this.deliveries.length > 0 && this.deliveries[0]!.at < now - 10_000) this.deliveries.shift();
  }

  /** Events per second over the last 10 s. */
  rate(now = Date.now()): number {
    const recent = this.deliveries.filter((d) => d.at >= now - 10_000);
    return recent.reduce((s, d) => s + d.n, 0) / 10;
  }

  quantile(q: number): number {
    if (this.latencies.length === 0) return 0;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  }

  render(backlog: Backlog | undefined): string {
    const g = (name: string, type: string, help: string, value: number | string) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}`;
    const lines = [
      g("notifiws_relay_connected", "gauge", "1 when the LISTEN connection is up", this.connected ? 1 : 0),
      g("notifiws_relay_leader", "gauge", "1 when this relay holds the leader lock", this.leader ? 1 : 0),
      g("notifiws_relay_events_delivered_total", "counter", "Events acknowledged by the Worker", this.eventsDelivered),
      g("notifiws_relay_batches_total", "counter", "Batches acknowledged by the Worker", this.batches),
      g("notifiws_relay_events_per_second", "gauge", "Delivery rate over the last 10 s", this.rate()),
      g("notifiws_relay_post_retries_total", "counter", "POST attempts that were retried", this.retries),
      g("notifiws_relay_post_failures_total", "counter", "POST attempts that failed (network, timeout, non-2xx)", this.failures),
      g("notifiws_relay_dead_letter_total", "counter", "Rows moved to notifiws.dead_letter", this.deadLettered),
      g("notifiws_relay_reconnects_total", "counter", "Postgres reconnects", this.reconnects),
      g("notifiws_relay_takeovers_total", "counter", "Stuck leaders this relay replaced", this.takeovers),
      g("notifiws_relay_held_channels", "gauge", "Channels held back after the edge failed to store them", this.heldChannels),
      g("notifiws_relay_capture_wal", "gauge", "1 when the leader captures from the WAL, 0 from the outbox", this.captureMode === "wal" ? 1 : 0),
      g(
        "notifiws_relay_slot_invalidations_total",
        "counter",
        "Replication slots found invalidated and recreated (their channels were reset)",
        this.slotInvalidations,
      ),
      `# HELP notifiws_relay_post_refusals_total Failed POSTs by status and error code\n# TYPE notifiws_relay_post_refusals_total counter`,
      ...[...this.refusals.values()].map(
        (r) => `notifiws_relay_post_refusals_total{status="${r.status}",code="${r.code.replace(/[^A-Za-z0-9_]/g, "_")}"} ${r.n}`,
      ),
      renderHistogram("notifiws_relay_post_latency_seconds", "POST round trip to the Worker", [{ labels: {}, data: this.postLatency }]),
      renderHistogram("notifiws_relay_commit_to_ack_seconds", "Commit in Postgres to the Worker's acknowledgement, per event", [
        { labels: {}, data: this.commitToAck },
      ]),
    ];
    if (backlog) {
      lines.push(g("notifiws_relay_backlog_events", "gauge", "Rows waiting in notifiws.outbox", backlog.events));
      lines.push(g("notifiws_relay_oldest_undelivered_seconds", "gauge", "Age of the oldest waiting row", backlog.oldestSeconds));
      const slot = backlog.slot;
      if (slot) {
        lines.push(
          g(
            "notifiws_relay_slot_retained_wal_bytes",
            "gauge",
            "WAL the replication slot keeps on the server (current position - restart_lsn)",
            slot.retainedBytes,
          ),
        );
        lines.push(
          g("notifiws_relay_slot_behind_bytes", "gauge", "WAL not yet confirmed by the relay (current position - confirmed_flush_lsn)", slot.behindBytes),
        );
        lines.push(g("notifiws_relay_slot_behind_seconds", "gauge", "Age of the oldest decoded event the Worker has not yet stored", slot.behindSeconds));
        lines.push(g("notifiws_relay_slot_lost", "gauge", "1 when Postgres invalidated the slot (max_slot_wal_keep_size)", slot.lost ? 1 : 0));
        lines.push(g("notifiws_relay_wal_buffered_bytes", "gauge", "Decoded bytes waiting in the relay for the Worker", slot.pendingBytes));
      }
    }
    return lines.join("\n") + "\n";
  }
}

export function startHttp(
  metrics: RelayMetrics,
  backlog: () => Promise<Backlog | undefined>,
  host: string,
  port: number,
  opts: { stats?: boolean } = {},
): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.url === "/healthz") {
          const body = JSON.stringify({ ok: metrics.connected, connected: metrics.connected, leader: metrics.leader, pid: process.pid });
          res.writeHead(metrics.connected ? 200 : 503, { "content-type": "application/json" }).end(body);
        } else if (req.url === "/stats" && opts.stats) {
          // Exact recent figures for load tests (RELAY_STATS_ENDPOINT=1); /metrics has the histograms.
          const body = JSON.stringify({ eventsDelivered: metrics.eventsDelivered, postLatencyMs: { p50: metrics.quantile(0.5), p99: metrics.quantile(0.99) } });
          res.writeHead(200, { "content-type": "application/json" }).end(body);
        } else if (req.url === "/metrics") {
          const b = await backlog().catch(() => undefined);
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(metrics.render(b));
        } else {
          res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "NOT_FOUND", message: "try /healthz or /metrics" } }));
        }
      } catch {
        res.writeHead(500).end();
      }
    })();
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
