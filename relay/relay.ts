/**
 * The relay: one dedicated Postgres connection that holds the leader lock,
 * LISTENs for outbox wake-ups, drains notifiws.outbox in signed batches to the
 * Worker and deletes rows only after a 2xx. At-least-once: a row is never
 * skipped; the edge dedupes redeliveries by event id.
 *
 * Rows are read by visibility (whatever is committed now, oldest id first),
 * never with an "id > cursor" bookmark, so a transaction that commits late
 * with a lower id is still picked up by the next drain.
 */
import pg from "pg";
import { errorFields, log } from "../src/log";
import { ChangeEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../src/protocol";
import { sign } from "../src/signing";
import { fullJitter } from "../src/backoff";
import type { RelayConfig } from "./config";
import { RelayMetrics } from "./metrics";

const WAKEUP_CHANNEL = "notifiws_outbox";

interface OutboxRow {
  id: string;
  event_id: string;
  channel: string;
  op: string;
  table_name: string;
  data: Record<string, unknown> | null;
  old_data: Record<string, unknown> | null;
  committed_at: Date;
}

type PostOutcome = "delivered" | "retry" | "too_large" | "stopped";

export class Relay {
  readonly metrics = new RelayMetrics();
  private client: pg.Client | undefined;
  private stopping = false;
  private draining: Promise<void> | undefined;
  private dirty = false;
  private readonly sleepers = new Set<() => void>();
  /** Events per batch; halved when the Worker answers 413, restored as batches succeed. */
  private eventCap: number;
  private supervisor: Promise<void> | undefined;

  constructor(private readonly config: RelayConfig) {
    this.eventCap = config.RELAY_BATCH_MAX_EVENTS;
  }

  /** Starts the connect/lead/drain loop in the background. */
  start(): void {
    this.supervisor ??= this.supervise();
  }

  /**
   * Graceful stop (SIGTERM): finish the batch in flight, release the lock by
   * closing the session, return when everything is down.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const wake of this.sleepers) wake();
    await this.draining?.catch(() => undefined);
    const c = this.client;
    if (c && this.metrics.leader) await c.query("SELECT pg_advisory_unlock($1)", [this.config.RELAY_LOCK_KEY]).catch(() => undefined);
    await c?.end().catch(() => undefined);
    await this.supervisor?.catch(() => undefined);
  }

  /** Rows waiting and the age of the oldest, for /metrics. */
  async backlog(): Promise<{ events: number; oldestSeconds: number } | undefined> {
    if (!this.client || !this.metrics.connected) return undefined;
    const r = await this.client.query<{ n: string; age: number | null }>(
      "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM notifiws.outbox",
    );
    return { events: Number(r.rows[0]!.n), oldestSeconds: Math.max(0, r.rows[0]!.age ?? 0) };
  }

  // -------------------------------------------------------------------------
  // Connection supervision: connect, elect, listen, catch up; on any failure
  // back off with full jitter and do it all again.
  // -------------------------------------------------------------------------

  private async supervise(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      const began = Date.now();
      try {
        await this.session();
      } catch (err) {
        if (!this.stopping) log("warn", "postgres session ended", errorFields(err));
      }
      if (this.stopping) break;
      this.metrics.reconnects++;
      // A session that stayed up a while resets the backoff.
      attempt = Date.now() - began > 30_000 ? 0 : attempt + 1;
      await this.sleep(fullJitter(attempt, this.config.RELAY_BACKOFF_BASE_MS, this.config.RELAY_BACKOFF_MAX_MS));
    }
  }

  private async session(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.config.DATABASE_URL,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: "notifiws-relay",
      connectionTimeoutMillis: 10_000,
    });
    let fail!: (err: Error) => void;
    const ended = new Promise<never>((_, reject) => (fail = reject));
    ended.catch(() => undefined);
    client.on("error", (err) => fail(err));
    client.on("end", () => fail(new Error("connection closed")));
    const timers: NodeJS.Timeout[] = [];
    try {
      await client.connect();
      this.client = client;
      this.metrics.connected = true;
      log("info", "connected to postgres");

      // Exactly one relay drains: the session-level advisory lock dies with the connection.
      while (!this.stopping) {
        const r = await Promise.race([client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [this.config.RELAY_LOCK_KEY]), ended]);
        if (r.rows[0]!.ok) break;
        await Promise.race([this.sleep(this.config.RELAY_STANDBY_POLL_MS), ended]);
      }
      if (this.stopping) return;
      this.metrics.leader = true;
      log("info", "leader lock acquired; draining");

      client.on("notification", () => this.kick());
      await Promise.race([client.query(`LISTEN ${WAKEUP_CHANNEL}`), ended]);
      // Catch up on everything committed while no relay was listening.
      this.kick();
      timers.push(setInterval(() => this.kick(), this.config.RELAY_POLL_MS));
      timers.push(
        setInterval(() => {
          const deadline = setTimeout(() => fail(new Error("liveness query timed out")), this.config.RELAY_LIVENESS_MS);
          client.query("SELECT 1").then(
            () => clearTimeout(deadline),
            (err: Error) => {
              clearTimeout(deadline);
              fail(err);
            },
          );
        }, this.config.RELAY_LIVENESS_MS),
      );
      await ended;
    } finally {
      timers.forEach(clearInterval);
      this.metrics.connected = false;
      this.metrics.leader = false;
      if (this.client === client) this.client = undefined;
      await this.draining?.catch(() => undefined);
      if (!this.stopping) await client.end().catch(() => undefined);
    }
  }

  // -------------------------------------------------------------------------
  // Draining
  // -------------------------------------------------------------------------

  /** Schedules a drain; wake-ups during a drain fold into one more pass. */
  private kick(): void {
    if (this.stopping || !this.metrics.leader) return;
    if (this.draining) {
      this.dirty = true;
      return;
    }
    this.draining = this.drainLoop().finally(() => {
      this.draining = undefined;
    });
  }

  private async drainLoop(): Promise<void> {
    do {
      this.dirty = false;
      if (this.config.RELAY_COALESCE_MS > 0) await this.sleep(this.config.RELAY_COALESCE_MS);
      try {
        while (!this.stopping && this.metrics.leader && (await this.drainOnce())) {
          /* keep going while batches are full */
        }
      } catch (err) {
        log("warn", "drain failed; will retry on next wake-up", errorFields(err));
        return;
      }
    } while (this.dirty && !this.stopping && this.metrics.leader);
  }

  /** Delivers one batch; true when more rows may be waiting. */
  private async drainOnce(): Promise<boolean> {
    const client = this.client;
    if (!client) return false;
    const { rows } = await client.query<OutboxRow>(
      `SELECT id, event_id, channel, op, table_name, data, old_data, committed_at
         FROM notifiws.outbox ORDER BY id LIMIT $1`,
      [this.eventCap],
    );
    if (rows.length === 0) return false;

    // Each event is serialized once: its length bounds the batch and the text becomes the body.
    const events: string[] = [];
    const ids: string[] = [];
    const invalid: { id: string; reason: string }[] = [];
    let bytes = 0;
    const limit = this.config.RELAY_BATCH_MAX_BYTES;
    for (const row of rows) {
      const parsed = ChangeEvent.safeParse(toEvent(row));
      if (!parsed.success) {
        invalid.push({ id: row.id, reason: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") });
        continue;
      }
      const json = JSON.stringify(parsed.data);
      if (events.length > 0 && bytes + json.length + 1 > limit) break;
      bytes += json.length + 1;
      events.push(json);
      ids.push(row.id);
    }
    for (const bad of invalid) await this.deadLetter(client, [bad.id], `rejected by the relay: ${bad.reason}`);
    if (events.length === 0) return invalid.length > 0;

    const batchId = crypto.randomUUID();
    // Same shape as IngestBatch (the Worker validates it with that schema).
    const body = `{"batchId":${JSON.stringify(batchId)},"events":[${events.join(",")}]}`;
    const outcome = await this.post(batchId, body, events.length);
    if (outcome === "delivered") {
      await client.query("DELETE FROM notifiws.outbox WHERE id = ANY($1::bigint[])", [ids]);
      this.metrics.recordDelivered(events.length);
      this.eventCap = Math.min(this.config.RELAY_BATCH_MAX_EVENTS, this.eventCap * 2);
      return true;
    }
    if (outcome === "too_large" && events.length === 1) {
      await this.deadLetter(client, ids, "the Worker refused the event as too large (413)");
      return true;
    }
    if (outcome === "too_large") {
      // Retry the same rows in smaller batches on the next pass.
      this.eventCap = Math.max(1, Math.floor(events.length / 2));
      return true;
    }
    return false;
  }

  private async deadLetter(client: pg.Client, ids: string[], reason: string): Promise<void> {
    await client.query(
      `WITH moved AS (DELETE FROM notifiws.outbox WHERE id = ANY($1::bigint[]) RETURNING *)
       INSERT INTO notifiws.dead_letter SELECT moved.*, $2::text, now() FROM moved`,
      [ids, reason],
    );
    this.metrics.deadLettered += ids.length;
    log("error", "rows moved to notifiws.dead_letter", { count: ids.length, reason });
  }

  /**
   * POSTs until the Worker acknowledges (2xx, or 409 BATCH_REPLAYED: an
   * earlier attempt of this very batch was applied), retrying with backoff.
   * The same batch id is reused across retries.
   */
  private async post(batchId: string, body: string, count: number): Promise<PostOutcome> {
    const url = new URL("/internal/events", this.config.WORKER_URL).toString();
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        this.metrics.retries++;
        await this.sleep(fullJitter(attempt, this.config.RELAY_BACKOFF_BASE_MS, this.config.RELAY_BACKOFF_MAX_MS));
      }
      if (this.stopping && attempt > 0) return "stopped";
      if (!this.metrics.leader) return "stopped";
      const ts = Math.floor(Date.now() / 1000);
      const started = performance.now();
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", [TIMESTAMP_HEADER]: String(ts), [SIGNATURE_HEADER]: await sign(this.config.INGEST_SECRET, ts, body) },
          body,
          signal: AbortSignal.timeout(this.config.RELAY_POST_TIMEOUT_MS),
        });
        const text = await res.text();
        this.metrics.recordPost(performance.now() - started);
        if (res.ok) return "delivered";
        if (res.status === 409 && text.includes("BATCH_REPLAYED")) return "delivered";
        this.metrics.failures++;
        if (res.status === 413) return "too_large";
        log(res.status >= 500 ? "warn" : "error", "worker refused batch; retrying", {
          status: res.status,
          batchId,
          events: count,
          body: text.slice(0, 300),
        });
      } catch (err) {
        this.metrics.failures++;
        log("warn", "POST to worker failed; retrying", { batchId, ...errorFields(err) });
      }
    }
  }

  /** A sleep that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}

function toEvent(row: OutboxRow): unknown {
  return {
    id: row.event_id,
    channel: row.channel,
    op: row.op,
    table: row.table_name,
    data: row.data,
    ...(row.old_data !== null ? { old: row.old_data } : {}),
    committedAt: row.committed_at.getTime(),
  };
}
