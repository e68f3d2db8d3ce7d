/**
 * A channel's storage in its Durable Object's SQLite: events with their seq (a
 * bounded history for resume), dedupe ids (dedupe.ts), the counters; on
 * a fan-out object, copies of the ordering object's events (fanout-tree.ts).
 * Every statement goes through the production SQL limits, which local
 * workerd does not enforce, and is counted for billing (sql.ts).
 */
import type { Config } from "../shared/worker-config";
import type { ChannelStats, EventRange, IngestEvent } from "../src/channel-contract";
import { packJsonArrays, SQL_PARAM_BUDGET_BYTES, utf8Length } from "../shared/limits";
import { applySchema } from "./schema";
import { CHANNEL_SCHEMA } from "./channel-schema";
import { CountedSql, type SqlUsage } from "./sql";
import { envelopeJson, gapEnvelope } from "./envelope";
import { Dedupe } from "./dedupe";

/** An event over MAX_EVENT_BYTES reached the object; the whole ingest is rolled back. */
export class EventTooLargeError extends Error {
  readonly code = "EVENT_TOO_LARGE";
  constructor(
    readonly eventId: string,
    readonly bytes: number,
    readonly max: number,
  ) {
    super(`event ${eventId} is ${bytes} bytes; MAX_EVENT_BYTES is ${max}`);
  }
}

/** What one ingest stored. */
export interface Stored {
  replayed: boolean;
  /** Envelopes as stored (JSON text), in seq order. */
  bodies: string[];
  /** UTF-8 bytes of each body. */
  sizes: number[];
  seqs: number[];
  /** Commit times of the stored events, epoch ms. */
  committedAt: number[];
  duplicates: number;
}

export type Counters = Pick<ChannelStats, "headSeq" | "events" | "duplicates" | "messagesSent" | "sendErrors" | "lastEventAt">;

/** What makes an object a fan-out object of the tree (stored, so it survives eviction). */
export interface FanoutIdentity {
  name: string;
  region: string;
  capacity: number;
}

/**
 * The ordering object writes its counters at most this often (a billed row
 * each time), not with every batch. The head seq never depends on it: a
 * restarted object takes the larger of the written head and the newest
 * stored seq, and an event stored since the last write is younger than this,
 * so no age prune (HISTORY_MAX_AGE_SECONDS is at least 1 s) has removed it.
 */
export const COUNTERS_WRITE_MS = 1000;

/** Events per range read by a fan-out object catching up, and a byte cap so one RPC reply stays small. */
export const RANGE_MAX_EVENTS = 500;
const RANGE_MAX_BYTES = 8 * 1024 * 1024;

export class EventStore {
  private readonly db: CountedSql;
  counters: Counters;
  channel: string | undefined;
  fanout: FanoutIdentity | undefined;
  private readonly dedupe: Dedupe;
  /** When the counters were last written (0: they are unwritten since the object started). */
  private countersWrittenAt = 0;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly config: () => Config,
  ) {
    applySchema(storage.sql, CHANNEL_SCHEMA);
    this.db = new CountedSql(storage.sql);
    const meta = new Map<string, unknown>();
    for (const row of this.exec<{ k: string; v: SqlStorageValue }>("SELECT k, v FROM meta")) meta.set(row.k, row.v);
    this.channel = (meta.get("channel") as string | undefined) ?? undefined;
    if (typeof meta.get("fanout") === "string") this.fanout = JSON.parse(meta.get("fanout") as string) as FanoutIdentity;
    const num = (k: string) => Number(meta.get(k) ?? 0);
    // One row since schema 2 (a row per counter before: five more rows written per batch).
    const packed = typeof meta.get("counters") === "string" ? (JSON.parse(meta.get("counters") as string) as Counters) : undefined;
    this.counters = packed ?? {
      headSeq: num("headSeq"),
      events: num("events"),
      duplicates: num("duplicates"),
      messagesSent: num("messagesSent"),
      sendErrors: num("sendErrors"),
      lastEventAt: meta.has("lastEventAt") ? num("lastEventAt") : null,
    };
    // Events stored after the counters were last written (COUNTERS_WRITE_MS): the head is the newest seq.
    const newest = this.exec<{ seq: number | null; at: number | null }>("SELECT seq, at FROM events ORDER BY seq DESC LIMIT 1").toArray()[0];
    if (newest?.seq != null && newest.seq > this.counters.headSeq) {
      this.counters.events += newest.seq - this.counters.headSeq;
      this.counters.headSeq = newest.seq;
      this.counters.lastEventAt = newest.at;
    }
    this.dedupe = new Dedupe(this.db, () => this.config().DEDUPE_WINDOW_SECONDS * 1000);
  }

  /** Every statement goes through the production SQL limits and is counted (sql.ts). */
  exec<T extends Record<string, SqlStorageValue>>(query: string, ...params: SqlStorageValue[]): SqlStorageCursor<T> {
    return this.db.exec<T>(query, ...params);
  }

  /** SQLite rows this object read and wrote since it started. */
  usage(): SqlUsage {
    return this.db.usage();
  }

  bindChannel(channel: string): void {
    if (this.channel === channel) return;
    if (this.channel !== undefined) throw new Error(`object bound to ${this.channel}, not ${channel}`);
    this.channel = channel;
    this.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('channel', ?)", channel);
  }

  bindFanout(f: FanoutIdentity): void {
    if (this.fanout) return;
    this.fanout = f;
    this.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('fanout', ?)", JSON.stringify(f));
  }

  // ---- The ordering object: ingest ----

  /**
   * Stores new events (dedupe by id, next seq each) in one transaction with
   * the dedupe rows (and the counters when due): a batch whose storage
   * fails leaves no trace (not even its id), so the sender's retry is stored,
   * never answered "already applied".
   */
  ingest(events: IngestEvent[], batchId: string | undefined, now: number, gap = false): Stored {
    return this.atomically(() => this.storeBatch(events, batchId, now, gap));
  }

  /**
   * Runs `body` in one transaction; if it fails, the in-memory counters go
   * back too: seqs handed out are not consumed, nor were the counters written.
   */
  private atomically<T>(body: () => T): T {
    const [before, writtenAt] = [{ ...this.counters }, this.countersWrittenAt];
    try {
      return this.storage.transactionSync(body);
    } catch (err) {
      [this.counters, this.countersWrittenAt] = [before, writtenAt];
      throw err;
    }
  }

  /** The body of ingest's transaction; throws to roll everything back. */
  private storeBatch(events: IngestEvent[], batchId: string | undefined, now: number, gap: boolean): Stored {
    const cfg = this.config();
    // Replay protection without a batch ledger: the dedupe rows name the batch
    // that stored them, so a batch whose ids were stored by this very batch id
    // is a replay, answered with nothing done. Ids decide what is new: a batch
    // id used again for other events stores them (dedupe.ts).
    const markerId = gap && batchId !== undefined ? `gap:${batchId}` : undefined;
    const lookup = this.dedupe.lookup(markerId ? [markerId, ...events.map((e) => e.id)] : events.map((e) => e.id), batchId);
    if (lookup.sameBatch) return { replayed: true, bodies: [], sizes: [], seqs: [], committedAt: [], duplicates: 0 };
    const known = lookup.ids;
    const [bodies, sizes, ids, seqs, committedAt]: [string[], number[], string[], number[], number[]] = [[], [], [], [], []];
    // The source lost events before this batch: a marker takes the next seq (envelope.ts).
    const marker = gap ? gapEnvelope(++this.counters.headSeq) : undefined;
    if (marker) this.exec("INSERT INTO events (seq, at, body) VALUES (?, ?, ?)", this.counters.headSeq, now, marker);
    if (markerId) this.dedupe.remember([markerId], batchId, now);
    const firstSeq = this.counters.headSeq + 1;
    let duplicates = 0;
    // Events were validated and serialized by the Worker before this RPC; the
    // envelope is their text with the seq in front, never parsed and
    // re-serialized (a round trip through JSON.parse could round a number).
    for (const ev of events) {
      if (known.has(ev.id)) {
        duplicates++;
        continue;
      }
      known.add(ev.id); // a repeat inside the same batch is a duplicate too
      const seq = ++this.counters.headSeq;
      const body = envelopeJson(seq, ev.json);
      const bytes = utf8Length(body);
      // The route refuses these first; this guard keeps any other caller under the row limit.
      if (bytes > cfg.MAX_EVENT_BYTES) throw new EventTooLargeError(ev.id, bytes, cfg.MAX_EVENT_BYTES);
      bodies.push(body);
      sizes.push(bytes);
      ids.push(ev.id);
      seqs.push(seq);
      committedAt.push(ev.committedAt);
    }
    this.counters.duplicates += duplicates;
    if (bodies.length > 0) {
      this.dedupe.remember(ids, batchId, now);
      let seq = firstSeq;
      for (const chunk of packJsonArrays(bodies, SQL_PARAM_BUDGET_BYTES)) {
        if ("json" in chunk) {
          // A JSON array of strings: json_each returns each body text exactly as serialized here.
          this.exec("INSERT INTO events (seq, at, body) SELECT ? + key, ?, value FROM json_each(?)", seq, now, chunk.json);
          seq += chunk.count;
        } else {
          // Too large to nest in an array (its quotes would be escaped again): bound on its own.
          this.exec("INSERT INTO events (seq, at, body) VALUES (?, ?, ?)", seq, now, chunk.single);
          seq += 1;
        }
      }
      this.counters.events += bodies.length;
      this.counters.lastEventAt = now;
      this.pruneHistory(now);
      this.dedupe.prune(now);
    }
    if (marker || now - this.countersWrittenAt >= COUNTERS_WRITE_MS) this.persistCounters(now);
    if (marker)
      return { replayed: false, bodies: [marker, ...bodies], sizes: [marker.length, ...sizes], seqs: [firstSeq - 1, ...seqs], committedAt, duplicates };
    return { replayed: false, bodies, sizes, seqs, committedAt, duplicates };
  }

  // ---- A fan-out object: copies of the ordering object's events ----

  /** Stores copies (seq from the ordering object); returns the ones newer than this object's head, now its head. */
  keepCopies(bodies: string[], seqs: number[], now: number): [seq: number, body: string][] {
    const head = this.counters.headSeq;
    const pairs = seqs.map((seq, i) => [seq, bodies[i]!] as [number, string]);
    const fresh = pairs.filter(([seq]) => seq > head);
    this.atomically(() => this.storeCopies(pairs, fresh, now));
    return fresh;
  }

  /** The body of keepCopies' transaction. */
  private storeCopies(pairs: [number, string][], fresh: [number, string][], now: number): void {
    for (const chunk of packJsonArrays(pairs, SQL_PARAM_BUDGET_BYTES)) {
      if ("json" in chunk)
        this.exec(
          "INSERT OR IGNORE INTO events (seq, at, body) SELECT json_extract(value, '$[0]'), ?, json_extract(value, '$[1]') FROM json_each(?)",
          now,
          chunk.json,
        );
      else this.exec("INSERT OR IGNORE INTO events (seq, at, body) VALUES (?, ?, ?)", chunk.single[0], now, chunk.single[1]);
    }
    if (fresh.length > 0) {
      this.counters.headSeq = fresh[fresh.length - 1]![0];
      this.counters.events += fresh.length;
      this.counters.lastEventAt = now;
    }
    this.pruneHistory(now);
    // As on the ordering object: the head is recovered from the newest copy (COUNTERS_WRITE_MS).
    if (now - this.countersWrittenAt >= COUNTERS_WRITE_MS) this.persistCounters(now);
  }

  /** The head moved on without this object (a live start): keep the counters in step. */
  advanceHead(head: number): void {
    if (head <= this.counters.headSeq) return;
    this.counters.headSeq = head;
    this.persistCounters();
  }

  // ---- Reading ----

  /** Retained events after `since`, in seq order. */
  *after(since: number): Generator<string> {
    for (const row of this.exec<{ body: string }>("SELECT body FROM events WHERE seq > ? ORDER BY seq", since)) yield row.body;
  }

  /** Events after `after` for a fan-out object catching up (`limit` 0: only the head). */
  range(after: number, limit = RANGE_MAX_EVENTS): EventRange {
    const bodies: string[] = [];
    const seqs: number[] = [];
    let bytes = 0;
    if (limit > 0)
      for (const row of this.exec<{ seq: number; body: string }>("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)) {
        bytes += row.body.length * 3; // an upper bound of its UTF-8 size
        if (bodies.length > 0 && bytes > RANGE_MAX_BYTES) break;
        bodies.push(row.body);
        seqs.push(row.seq);
      }
    return { bodies, seqs, headSeq: this.counters.headSeq, oldestSeq: this.oldestSeq() };
  }

  oldestSeq(): number {
    const row = this.exec<{ s: number | null }>("SELECT MIN(seq) AS s FROM events").one();
    return row.s ?? this.counters.headSeq + 1;
  }

  /** Writes the counters (one row); the ordering object does so at most every COUNTERS_WRITE_MS while ingesting. */
  persistCounters(now = Date.now()): void {
    this.countersWrittenAt = now;
    this.exec("INSERT INTO meta (k, v) VALUES ('counters', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", JSON.stringify(this.counters));
  }

  /** By count, then by age; both are range deletes on the primary key. */
  private pruneHistory(now: number): void {
    const cfg = this.config();
    this.exec("DELETE FROM events WHERE seq <= ?", this.counters.headSeq - cfg.HISTORY_MAX_EVENTS);
    this.db.pruneBefore("events", "seq", now - cfg.HISTORY_MAX_AGE_SECONDS * 1000);
  }
}
