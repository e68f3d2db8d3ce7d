/**
 * A channel's storage in its Durable Object's SQLite: the history in pages
 * (pages.ts) with the events' dedupe ids (dedupe.ts), the counters; on a
 * fan-out object, copies of the ordering object's events (fanout-tree.ts).
 * Every statement is checked against the production SQL limits and counted
 * for billing (sql.ts).
 */
import type { Config } from "../shared/worker-config";
import type { EventRange, IngestEvent } from "../src/channel-contract";
import { utf8Length } from "../shared/limits";
import { applySchema } from "./schema";
import { CHANNEL_SCHEMA } from "./channel-schema";
import { CountedSql, type SqlUsage } from "./sql";
import { envelopeJson, gapEnvelope } from "./envelope";
import { KeyedIds, MIN_RETENTION_MS, Redeliveries } from "./dedupe";
import type { Entry } from "./page-format";
import { Pages } from "./pages";
import { readMeta, type Counters, type FanoutIdentity } from "./meta";

/** An event over MAX_EVENT_BYTES reached the object; the whole ingest is rolled back. */
export class EventTooLargeError extends Error {
  readonly code = "EVENT_TOO_LARGE";
  constructor(
    readonly eventId: string,
    bytes: number,
    max: number,
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

/**
 * Counters are written at most this often (a billed row each time). The head
 * seq never depends on it: a restarted object takes the newest page's last
 * seq when it is ahead (an ordering object keeps every page at least
 * MIN_RETENTION_MS; a fan-out object's newest is younger than any age prune).
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
  private readonly pages: Pages;
  private readonly redeliveries: Redeliveries;
  /** Ids a publisher chose, and those kept before schema 4 (dedupe.ts). */
  private readonly keyedIds: KeyedIds;
  /** When the counters were last written (0: they are unwritten since the object started). */
  private countersWrittenAt = 0;
  /** The first seq the history serves (HISTORY_MAX_EVENTS and HISTORY_MAX_AGE_SECONDS, as of the last write). */
  private floor: number;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly config: () => Config,
  ) {
    applySchema(storage.sql, CHANNEL_SCHEMA);
    this.db = new CountedSql(storage.sql);
    const meta = readMeta(this.db);
    [this.channel, this.fanout, this.counters] = [meta.channel, meta.fanout, meta.counters];
    this.pages = new Pages(this.db);
    // Events stored after the counters were last written (COUNTERS_WRITE_MS): the head is the newest seq.
    const newest = this.pages.newest();
    if (newest && newest.last > this.counters.headSeq) {
      this.counters.events += newest.last - this.counters.headSeq;
      this.counters.headSeq = newest.last;
      this.counters.lastEventAt = newest.at;
    }
    this.floor = Math.max(meta.floor, this.counters.headSeq - this.config().HISTORY_MAX_EVENTS + 1);
    this.redeliveries = new Redeliveries(this.pages);
    this.keyedIds = new KeyedIds(this.db, () => this.config().DEDUPE_WINDOW_SECONDS * 1000);
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
   * their ids (and the counters when due): a batch whose storage fails
   * leaves no trace (not even its ids), so the sender's retry is stored,
   * never answered "already applied".
   */
  ingest(events: IngestEvent[], batchId: string | undefined, now: number, gap = false): Stored {
    return this.atomically(() => this.storeBatch(events, batchId, now, gap));
  }

  /**
   * Runs `body` in one transaction; if it fails, what memory holds goes back
   * too: seqs handed out are not consumed, the counters were not written,
   * and the page list is read again from SQLite.
   */
  private atomically<T>(body: () => T): T {
    const [before, writtenAt, floor] = [{ ...this.counters }, this.countersWrittenAt, this.floor];
    try {
      return this.storage.transactionSync(body);
    } catch (err) {
      [this.counters, this.countersWrittenAt, this.floor] = [before, writtenAt, floor];
      this.pages.reset();
      this.redeliveries.reset();
      throw err;
    }
  }

  /** The body of ingest's transaction; throws to roll everything back. */
  private storeBatch(events: IngestEvent[], batchId: string | undefined, now: number, gap: boolean): Stored {
    const cfg = this.config();
    // Replay protection without a batch ledger: each stored id names the batch that
    // stored it, so a batch whose ids were stored by this very batch id is a replay,
    // answered with nothing done. Ids decide what is new: a batch id used again for
    // other events stores them. A gap-only batch is known by a marker id.
    const markerId = gap && batchId !== undefined ? `gap:${batchId}` : undefined;
    const ids = markerId ? [markerId, ...events.map((e) => e.id)] : events.map((e) => e.id);
    // A redelivered event has its commit time again; a replayed marker comes within the signature window.
    const since = Math.min(markerId ? now - MIN_RETENTION_MS : Infinity, ...events.map((e) => e.committedAt));
    const found = this.redeliveries.find(ids, since, now);
    const keyed = this.keyedIds.lookup(ids, batchId);
    const sameBatch = keyed.sameBatch || (batchId !== undefined && [...found.values()].includes(batchId));
    if (sameBatch) return { replayed: true, bodies: [], sizes: [], seqs: [], committedAt: [], duplicates: 0 };
    const known = new Set([...found.keys(), ...keyed.ids]);
    const entries: Entry[] = [];
    const committedAt: number[] = [];
    // The source lost events before this batch: a marker takes the next seq (envelope.ts).
    if (gap) {
      const seq = ++this.counters.headSeq;
      const body = gapEnvelope(seq);
      entries.push({ seq, body, bytes: body.length, committed: now, ...(markerId ? { id: markerId } : {}) });
    }
    let duplicates = 0;
    const keyedStored: string[] = [];
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
      entries.push({ seq, body, bytes, id: ev.id, committed: ev.committedAt });
      committedAt.push(ev.committedAt);
      if (ev.keyed) keyedStored.push(ev.id);
    }
    this.counters.duplicates += duplicates;
    const stored = entries.length - (gap ? 1 : 0);
    if (entries.length > 0) {
      this.pages.append(entries, batchId ?? null, now);
      this.keyedIds.remember(keyedStored, batchId, now);
      this.counters.events += stored;
      if (stored > 0) this.counters.lastEventAt = now;
      this.pruneHistory(now);
      this.keyedIds.prune(now);
    }
    if (gap || now - this.countersWrittenAt >= COUNTERS_WRITE_MS) this.persistCounters(now);
    return {
      replayed: false,
      bodies: entries.map((e) => e.body),
      sizes: entries.map((e) => e.bytes),
      seqs: entries.map((e) => e.seq),
      committedAt,
      duplicates,
    };
  }

  // ---- A fan-out object: copies of the ordering object's events ----

  /** Stores copies (seq from the ordering object); returns the ones newer than this object's head, now its head. */
  keepCopies(bodies: string[], seqs: number[], now: number): [seq: number, body: string][] {
    const head = this.counters.headSeq;
    const fresh = seqs.map((seq, i) => [seq, bodies[i]!] as [number, string]).filter(([seq]) => seq > head);
    if (fresh.length > 0) this.atomically(() => this.storeCopies(fresh, now));
    return fresh;
  }

  /** The body of keepCopies' transaction. */
  private storeCopies(fresh: [number, string][], now: number): void {
    this.pages.append(
      fresh.map(([seq, body]) => ({ seq, body, bytes: utf8Length(body), committed: 0 })),
      null,
      now,
    );
    this.counters.headSeq = fresh[fresh.length - 1]![0];
    this.counters.events += fresh.length;
    this.counters.lastEventAt = now;
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
    for (const [, body] of this.pages.after(Math.max(since, this.floor - 1))) yield body;
  }

  /** Events after `after` for a fan-out object catching up (`limit` 0: only the head). */
  range(after: number, limit = RANGE_MAX_EVENTS): EventRange {
    const bodies: string[] = [];
    const seqs: number[] = [];
    let bytes = 0;
    if (limit > 0)
      for (const [seq, body] of this.pages.after(Math.max(after, this.floor - 1))) {
        bytes += body.length * 3; // an upper bound of its UTF-8 size
        if (bodies.length >= limit || (bodies.length > 0 && bytes > RANGE_MAX_BYTES)) break;
        bodies.push(body);
        seqs.push(seq);
      }
    return { bodies, seqs, headSeq: this.counters.headSeq, oldestSeq: this.oldestSeq() };
  }

  /** The first seq a resume can be served from (the head + 1 when the history is empty). */
  oldestSeq(): number {
    const first = this.pages.firstLiveFrom(this.floor);
    return first === undefined ? this.counters.headSeq + 1 : Math.max(first, this.floor);
  }

  /** Writes the counters (one row); the ordering object does so at most every COUNTERS_WRITE_MS while ingesting. */
  persistCounters(now = Date.now()): void {
    this.countersWrittenAt = now;
    this.exec(
      "INSERT INTO meta (k, v) VALUES ('counters', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
      JSON.stringify({ ...this.counters, floor: this.floor }),
    );
  }

  /**
   * Moves the floor by count, then by age, and prunes the pages wholly below
   * it (pages.ts): the ordering object keeps their ids for the dedupe window
   * (at least MIN_RETENTION_MS: dedupe.ts).
   */
  private pruneHistory(now: number): void {
    const cfg = this.config();
    const byCount = Math.max(this.floor, this.counters.headSeq - cfg.HISTORY_MAX_EVENTS + 1);
    this.floor = this.pages.firstStoredSince(now - cfg.HISTORY_MAX_AGE_SECONDS * 1000, byCount, this.counters.headSeq);
    const keepIds = Math.max(cfg.DEDUPE_WINDOW_SECONDS * 1000, MIN_RETENTION_MS);
    this.pages.prune(this.floor, this.fanout ? undefined : now - keepIds);
  }
}
