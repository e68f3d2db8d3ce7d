/**
 * Draining the outbox: read what is committed (oldest id first, by visibility,
 * never with an "id > cursor" bookmark, so a transaction that commits late
 * with a lower id is still picked up), POST it as one signed batch, delete
 * exactly what the edge stored. At-least-once: a row is never skipped; the
 * edge dedupes redeliveries by event id. One failing channel is held back, in
 * order, with its own backoff, while every other channel keeps flowing; rows
 * the edge can never accept go to notifiws.dead_letter with the reason.
 * Row values are never parsed here (docs/protocol.md, "Values").
 */
import type pg from "pg";
import { errorFields, log } from "../shared/log";
import { fullJitter } from "../shared/backoff";
import { formatIssues } from "../shared/zod";
import { batchBody, EventHeader, eventJson } from "./event";
import { sendBatch, type SendHost } from "./send";

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

export interface DrainHost extends SendHost {
  /** The leader's connection, while there is one. */
  client: () => pg.Client | undefined;
  /** Runs one pass with the WAL stream's delivery excluded (relay/wal.ts: a channel's spilled rows stay in order). */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** After each pass: the outbox changed (the WAL stream re-reads which channels have rows). */
  passed?: (client: pg.Client) => Promise<void>;
}

export class Drain {
  private draining: Promise<void> | undefined;
  private dirty = false;
  /** Events per batch; halved when the Worker answers 413, restored as batches succeed. */
  private eventCap: number;
  private readonly held = new Map<string, Hold>();
  private heldWake: NodeJS.Timeout | undefined;

  constructor(private readonly host: DrainHost) {
    this.eventCap = host.config.RELAY_BATCH_MAX_EVENTS;
  }

  /**
   * Wake-ups are ignored until the session opens the drain: after a switch
   * to outbox, the slot's older events go first (relay.ts, capture order).
   */
  open = false;
  /** While set, only rows up to this id are drained (those written before a switch to outbox). */
  private ceiling: string | undefined;

  /** Schedules a drain; wake-ups during a drain fold into one more pass. */
  kick(): void {
    if (!this.active() || !this.open) return;
    if (this.draining) {
      this.dirty = true;
      return;
    }
    this.draining = this.drainLoop().finally(() => {
      this.draining = undefined;
    });
  }

  /** Delivers every row up to `id` (all but held channels' rows), before anything newer; wake-ups wait meanwhile. */
  async through(id: string): Promise<void> {
    await this.settled();
    this.ceiling = id;
    try {
      while (this.active() && (await this.drainOnce())) {
        /* until no row up to the ceiling is left */
      }
    } finally {
      this.ceiling = undefined;
    }
  }

  /** This relay leads and is not stopping. */
  private active(): boolean {
    return !this.host.stopping() && this.host.metrics.leader;
  }

  /** Resolves when no drain is running (a stop or a lost connection waits for the batch in flight). */
  async settled(): Promise<void> {
    clearTimeout(this.heldWake);
    await this.draining?.catch(() => undefined);
  }

  private async drainLoop(): Promise<void> {
    do {
      this.dirty = false;
      if (this.host.config.RELAY_COALESCE_MS > 0) await this.host.sleep(this.host.config.RELAY_COALESCE_MS);
      try {
        while (this.active() && (await this.drainOnce())) {
          /* keep going while batches are full */
        }
      } catch (err) {
        log("warn", "drain failed; will retry on next wake-up", errorFields(err));
        return;
      }
    } while (this.dirty && this.active());
  }

  /** Delivers one batch; true when more rows may be waiting. */
  private async drainOnce(): Promise<boolean> {
    return this.host.exclusive(async () => {
      const client = this.host.client();
      if (!client) return false;
      const more = await this.pass(client);
      await this.host.passed?.(client);
      return more;
    });
  }

  private async pass(client: pg.Client): Promise<boolean> {
    const now = Date.now();
    const heldNow = [...this.held].filter(([, h]) => h.until > now).map(([channel]) => channel);
    const { rows } = await client.query<OutboxRow>(
      `SELECT id, event_id, channel, op, table_name, data::text AS data, old_data::text AS old_data, types::text AS types, committed_at, txid::text AS txid
         FROM notifiws.outbox WHERE NOT (channel = ANY($2::text[])) AND ($3::bigint IS NULL OR id <= $3::bigint) ORDER BY id LIMIT $1`,
      [this.eventCap, heldNow, this.ceiling ?? null],
    );
    if (rows.length === 0) return false;

    // Each event is serialized once: its UTF-8 size bounds the batch and the text becomes the body.
    const events: string[] = [];
    const batch: OutboxRow[] = [];
    const invalid: { id: string; reason: string }[] = [];
    let bytes = 0;
    const limit = this.host.config.RELAY_BATCH_MAX_BYTES;
    for (const row of rows) {
      const parsed = EventHeader.safeParse(eventHeader(row));
      if (!parsed.success) {
        invalid.push({ id: row.id, reason: formatIssues(parsed.error.issues, { root: "event" }) });
        continue;
      }
      const json = eventJson(parsed.data, { data: row.data, old: row.old_data, types: row.types });
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
    const outcome = await sendBatch(this.host, batchId, batchBody(batchId, events), events.length);
    switch (outcome.kind) {
      case "stopped":
        return false;
      case "delivered":
        await this.acknowledge(client, batch);
        this.eventCap = Math.min(this.host.config.RELAY_BATCH_MAX_EVENTS, this.eventCap * 2);
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
    }
  }

  /** Deletes rows the edge stored, and lifts any hold on their channels. */
  private async acknowledge(client: pg.Client, rows: OutboxRow[]): Promise<void> {
    if (rows.length === 0) return;
    await client.query("DELETE FROM notifiws.outbox WHERE id = ANY($1::bigint[])", [rows.map((r) => r.id)]);
    const now = Date.now();
    for (const r of rows) {
      this.held.delete(r.channel);
      this.host.metrics.commitToAck.observe(Math.max(0, now - r.committed_at.getTime()) / 1000);
    }
    this.host.metrics.heldChannels = this.held.size;
    this.host.metrics.recordDelivered(rows.length);
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
    const delay = fullJitter(attempt, this.host.config.RELAY_BACKOFF_BASE_MS, this.host.config.RELAY_BACKOFF_MAX_MS);
    this.held.set(channel, { until: Date.now() + delay, attempt });
    this.host.metrics.heldChannels = this.held.size;
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
    this.host.metrics.deadLettered += ids.length;
    log("error", "rows moved to notifiws.dead_letter", { count: ids.length, outboxIds: ids.slice(0, 20), reason });
  }
}

/** The outbox's columns by name: dead_letter has the same ones, but columns added later sit after its own. */
const OUTBOX_COLUMNS = "id, event_id, channel, op, table_name, data, old_data, txid, committed_at, created_at, types";

function eventHeader(row: OutboxRow): unknown {
  return { id: row.event_id, channel: row.channel, op: row.op, table: row.table_name, committedAt: row.committed_at.getTime(), txid: row.txid };
}
