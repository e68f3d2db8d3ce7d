/**
 * The relay: one dedicated Postgres connection that wins the leader election,
 * LISTENs for outbox wake-ups, drains notifiws.outbox in signed batches to the
 * Worker and deletes rows only after the Worker stored them. At-least-once: a
 * row is never skipped; the edge dedupes redeliveries by event id.
 *
 * Rows are read by visibility (whatever is committed now, oldest id first),
 * never with an "id > cursor" bookmark, so a transaction that commits late
 * with a lower id is still picked up by the next drain.
 *
 * Failure handling, in one place each:
 * - the connection: every statement has a server-side statement_timeout and a
 *   client-side deadline; any failure destroys the socket (never awaiting a
 *   query over a dead connection) and the session starts over with backoff,
 *   re-LISTENs and catches up;
 * - leadership: see leader.ts (heartbeat + takeover of a stuck leader);
 * - one channel failing at the edge: its rows wait, in order, with their own
 *   backoff, while every other channel keeps flowing.
 */
import pg from "pg";
import { errorFields, log } from "../shared/log";
import { ChangeEvent } from "../shared/protocol";
import { fullJitter } from "../shared/backoff";
import type { RelayConfig } from "./config";
import { Leadership } from "./leader";
import { RelayMetrics } from "./metrics";
import { postBatch, type PostOutcome } from "./post";
import { formatIssues } from "../shared/zod";

const WAKEUP_CHANNEL = "notifiws_outbox";
/** A session that stayed up this long resets the reconnect backoff. */
const STABLE_SESSION_MS = 30_000;
/** Client-side deadline beyond the server's statement_timeout before the socket is destroyed. */
const CLIENT_DEADLINE_MARGIN_MS = 1000;
/** How long a graceful stop waits for Postgres to acknowledge the session's end. */
const GRACEFUL_END_MS = 1000;

interface OutboxRow {
  id: string;
  event_id: string;
  channel: string;
  op: string;
  table_name: string;
  /** JSON text exactly as Postgres prints the jsonb: never parsed here, so no value is rounded (docs/protocol.md, "Values"). */
  data: string | null;
  old_data: string | null;
  types: string | null;
  committed_at: Date;
  txid: string;
}

/** Rows of one channel that the edge failed to store: held back, in order, until `until`. */
interface Hold {
  until: number;
  attempt: number;
}

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
  private readonly held = new Map<string, Hold>();
  private heldWake: NodeJS.Timeout | undefined;

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
    clearTimeout(this.heldWake);
    await this.draining?.catch(() => undefined);
    const c = this.client;
    if (c) {
      if (this.metrics.leader) await c.query("SELECT pg_advisory_unlock($1)", [this.config.RELAY_LOCK_KEY]).catch(() => undefined);
      // end() waits for the server; over a dead connection it would wait forever.
      await Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, GRACEFUL_END_MS))]);
      destroy(c);
    }
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
  // destroy the connection, back off with full jitter and do it all again.
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
      attempt = Date.now() - began > STABLE_SESSION_MS ? 0 : attempt + 1;
      await this.sleep(fullJitter(attempt, this.config.RELAY_BACKOFF_BASE_MS, this.config.RELAY_BACKOFF_MAX_MS));
    }
  }

  private async session(): Promise<void> {
    const cfg = this.config;
    const client = new pg.Client({
      connectionString: cfg.DATABASE_URL,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: "notifiws-relay",
      connectionTimeoutMillis: 10_000,
      // Server side: no drain statement runs longer than this.
      statement_timeout: cfg.RELAY_STATEMENT_TIMEOUT_MS,
      // Client side: a statement lost on a half-open connection fails too (then the socket is destroyed).
      query_timeout: cfg.RELAY_STATEMENT_TIMEOUT_MS + CLIENT_DEADLINE_MARGIN_MS,
    });
    let fail!: (err: Error) => void;
    const ended = new Promise<never>((_, reject) => (fail = reject));
    ended.catch(() => undefined);
    const race = <T>(p: Promise<T>) => Promise.race([p, ended]);
    client.on("error", (err) => fail(err));
    client.on("end", () => fail(new Error("connection closed")));
    const timers: NodeJS.Timeout[] = [];
    try {
      await race(client.connect());
      this.client = client;
      this.metrics.connected = true;
      log("info", "connected to postgres");

      // Standby until the lock is ours; meanwhile replace a leader that stopped making progress.
      const leadership = new Leadership(client, cfg.RELAY_LOCK_KEY, cfg.RELAY_TAKEOVER_MS);
      while (!this.stopping) {
        if (await race(leadership.tryAcquire())) break;
        if (await race(leadership.watch())) this.metrics.takeovers++;
        await race(this.sleep(cfg.RELAY_STANDBY_POLL_MS));
      }
      if (this.stopping) return;
      this.metrics.leader = true;
      log("info", "leader lock acquired; draining", { holder: leadership.holder });

      client.on("notification", () => this.kick());
      await race(client.query(`LISTEN ${WAKEUP_CHANNEL}`));
      // Catch up on everything committed while no relay was listening.
      this.kick();
      timers.push(setInterval(() => this.kick(), cfg.RELAY_POLL_MS));
      // The heartbeat is also the liveness check: it fails (query_timeout) on a
      // dead connection, and LeadershipLost if a standby replaced us.
      let beating = false;
      timers.push(
        setInterval(() => {
          if (beating) return;
          beating = true;
          leadership
            .heartbeat()
            .catch((err: Error) => fail(err))
            .finally(() => (beating = false));
        }, cfg.RELAY_HEARTBEAT_MS),
      );
      await ended;
    } finally {
      timers.forEach(clearInterval);
      this.metrics.connected = false;
      this.metrics.leader = false;
      if (this.client === client) this.client = undefined;
      // Destroy first: every query still pending on this socket fails at once,
      // so the drain below cannot wait on a connection that will never answer.
      if (!this.stopping) destroy(client);
      await this.draining?.catch(() => undefined);
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
    const now = Date.now();
    const heldNow = [...this.held].filter(([, h]) => h.until > now).map(([channel]) => channel);
    const { rows } = await client.query<OutboxRow>(
      `SELECT id, event_id, channel, op, table_name, data::text AS data, old_data::text AS old_data, types::text AS types, committed_at, txid::text AS txid
         FROM notifiws.outbox WHERE NOT (channel = ANY($2::text[])) ORDER BY id LIMIT $1`,
      [this.eventCap, heldNow],
    );
    if (rows.length === 0) return false;

    // Each event is serialized once: its UTF-8 size bounds the batch and the text becomes the body.
    const events: string[] = [];
    const batch: OutboxRow[] = [];
    const invalid: { id: string; reason: string }[] = [];
    let bytes = 0;
    const limit = this.config.RELAY_BATCH_MAX_BYTES;
    for (const row of rows) {
      const parsed = EventHeader.safeParse(eventHeader(row));
      if (!parsed.success) {
        invalid.push({ id: row.id, reason: formatIssues(parsed.error.issues, { root: "event" }) });
        continue;
      }
      const json = eventJson(parsed.data, row);
      const size = Buffer.byteLength(json, "utf8") + 1;
      if (events.length > 0 && bytes + size > limit) break;
      bytes += size;
      events.push(json);
      batch.push(row);
    }
    for (const bad of invalid) await this.deadLetter(client, [bad.id], `rejected by the relay: ${bad.reason}`);
    if (events.length === 0) return invalid.length > 0;

    const batchId = crypto.randomUUID();
    // Same shape as IngestBatch (the Worker validates it with that schema).
    const body = `{"batchId":${JSON.stringify(batchId)},"events":[${events.join(",")}]}`;
    const outcome = await this.send(batchId, body, events.length);
    switch (outcome.kind) {
      case "stopped":
        return false;
      case "delivered":
        await this.acknowledge(client, batch);
        this.eventCap = Math.min(this.config.RELAY_BATCH_MAX_EVENTS, this.eventCap * 2);
        return true;
      case "partial": {
        // Every other channel was stored: delete those rows; hold the failing ones back, in order.
        const failed = new Set(outcome.failedChannels);
        await this.acknowledge(
          client,
          batch.filter((r) => !failed.has(r.channel)),
        );
        for (const channel of new Set(batch.map((r) => r.channel)))
          if (failed.has(channel)) this.hold(channel, "the edge could not store this channel's events");
        return true;
      }
      case "event_too_large": {
        const tooLarge = new Set(outcome.eventIds);
        const ids = batch.filter((r) => tooLarge.has(r.event_id)).map((r) => r.id);
        if (ids.length === 0) return this.shrink(client, batch); // ids the batch does not have: treat as a size refusal
        await this.deadLetter(client, ids, "EVENT_TOO_LARGE: the Worker refuses events over MAX_EVENT_BYTES");
        return true;
      }
      case "batch_too_large":
        return this.shrink(client, batch);
      case "retry":
        return false; // send() retries these itself; unreachable
    }
  }

  /** Deletes rows the edge stored, and lifts any hold on their channels. */
  private async acknowledge(client: pg.Client, rows: OutboxRow[]): Promise<void> {
    if (rows.length === 0) return;
    await client.query("DELETE FROM notifiws.outbox WHERE id = ANY($1::bigint[])", [rows.map((r) => r.id)]);
    const now = Date.now();
    for (const r of rows) {
      this.held.delete(r.channel);
      this.metrics.commitToAck.observe(Math.max(0, now - r.committed_at.getTime()) / 1000);
    }
    this.metrics.heldChannels = this.held.size;
    this.metrics.recordDelivered(rows.length);
  }

  /** A 413 for the batch as a whole: retry in halves; a single event refused is dead-lettered. */
  private async shrink(client: pg.Client, batch: OutboxRow[]): Promise<boolean> {
    if (batch.length === 1) {
      await this.deadLetter(client, [batch[0]!.id], "the Worker refused the event as too large (413)");
      return true;
    }
    this.eventCap = Math.max(1, Math.floor(batch.length / 2));
    return true;
  }

  /** Holds a channel's rows back with its own backoff; other channels keep flowing. */
  private hold(channel: string, reason: string): void {
    const attempt = (this.held.get(channel)?.attempt ?? 0) + 1;
    const delay = fullJitter(attempt, this.config.RELAY_BACKOFF_BASE_MS, this.config.RELAY_BACKOFF_MAX_MS);
    this.held.set(channel, { until: Date.now() + delay, attempt });
    this.metrics.heldChannels = this.held.size;
    log("warn", "holding a channel back; other channels continue", { channel, attempt, retryInMs: Math.round(delay), reason });
    // Wake up when the earliest hold ends rather than waiting for the safety poll.
    const earliest = Math.min(...[...this.held.values()].map((h) => h.until));
    clearTimeout(this.heldWake);
    this.heldWake = setTimeout(() => this.kick(), Math.max(0, earliest - Date.now()) + 1);
  }

  private async deadLetter(client: pg.Client, ids: string[], reason: string): Promise<void> {
    await client.query(
      `WITH moved AS (DELETE FROM notifiws.outbox WHERE id = ANY($1::bigint[]) RETURNING *)
       INSERT INTO notifiws.dead_letter (${OUTBOX_COLUMNS}, reason, failed_at) SELECT ${OUTBOX_COLUMNS}, $2::text, now() FROM moved`,
      [ids, reason],
    );
    this.metrics.deadLettered += ids.length;
    log("error", "rows moved to notifiws.dead_letter", { count: ids.length, outboxIds: ids.slice(0, 20), reason });
  }

  /**
   * POSTs until the Worker gives an answer about the rows (stored, partly
   * stored, or refused for size), retrying everything else with backoff. The
   * same batch id is reused across retries, so a retry of a batch the Worker
   * stored but whose answer was lost comes back 409 BATCH_REPLAYED.
   */
  private async send(batchId: string, body: string, count: number): Promise<PostOutcome | { kind: "stopped" }> {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        this.metrics.retries++;
        await this.sleep(fullJitter(attempt, this.config.RELAY_BACKOFF_BASE_MS, this.config.RELAY_BACKOFF_MAX_MS));
      }
      if (this.stopping && attempt > 0) return { kind: "stopped" };
      if (!this.metrics.leader) return { kind: "stopped" };
      const started = performance.now();
      const outcome = await postBatch({
        workerUrl: this.config.WORKER_URL,
        secret: this.config.INGEST_SECRET,
        body,
        timeoutMs: this.config.RELAY_POST_TIMEOUT_MS,
      });
      this.metrics.recordPost(performance.now() - started);
      if (outcome.kind === "delivered") return outcome;
      this.metrics.failures++;
      if (outcome.kind !== "retry") return outcome;
      this.metrics.recordRefusal(outcome.status, outcome.code);
      const fields = {
        batchId,
        events: count,
        attempt,
        status: outcome.status,
        code: outcome.code,
        reason: outcome.message,
        ...(outcome.skewSeconds !== undefined ? { clockSkewSeconds: outcome.skewSeconds } : {}),
      };
      if (outcome.permanent) log("error", "worker refused the batch; retrying will not help until the cause is fixed", fields);
      else log("warn", "POST to worker failed; retrying", fields);
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

/** Closes the socket under a pg client without waiting for the server. */
function destroy(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/** The outbox's columns by name: dead_letter has the same ones, but columns added later sit after its own. */
const OUTBOX_COLUMNS = "id, event_id, channel, op, table_name, data, old_data, txid, committed_at, created_at, types";

/** Every field of an event but the row values, which are checked by Postgres (jsonb) and travel as its text. */
const EventHeader = ChangeEvent.omit({ data: true, old: true, types: true });

function eventHeader(row: OutboxRow): unknown {
  return { id: row.event_id, channel: row.channel, op: row.op, table: row.table_name, committedAt: row.committed_at.getTime(), txid: row.txid };
}

/** The event as ChangeEvent JSON: the validated header, then the row values spliced in as Postgres printed them. */
function eventJson(header: object, row: OutboxRow): string {
  const head = JSON.stringify(header);
  return (
    `${head.slice(0, -1)},"data":${row.data ?? "null"}` +
    (row.old_data !== null ? `,"old":${row.old_data}` : "") +
    (row.types !== null ? `,"types":${row.types}` : "") +
    "}"
  );
}
