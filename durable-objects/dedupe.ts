/**
 * Finding redeliveries: which of a batch's event ids a channel has stored,
 * and which batch stored them (a batch whose ids it stored itself is a
 * replay), with no row written per id.
 *
 * The ids live in their events' history pages (pages.ts), kept for the
 * dedupe window after the envelopes leave the history. Each page records
 * the largest `committedAt` of its entries (the source's clock): a stored
 * event's page has `committed >= event.committedAt`, and a redelivery
 * carries the same `committedAt` (the relay resends what it read from the
 * outbox or the WAL; a replayed signed batch is the same text), so a lookup
 * reads only the pages whose `committed` is at or above the smallest of the
 * batch: in steady state the newest page or two. A producer that retries
 * with a new `committedAt` (a publish retried with its id) is found among
 * the recent pages, whatever their commit times (RECENT_MS, RECENT_ENTRIES).
 *
 * KeyedIds holds the ids that must be found whatever the commit time: ids
 * a publisher chose (IngestEvent.keyed), and those an object kept before
 * pages (schema 4). One row each, keyed by (time slice, id) in a WITHOUT
 * ROWID table (a rowid table would also write a key index entry); `bucket`
 * is the slice's end (epoch ms), so expiry is a range delete on the key's
 * prefix, and a lookup probes each live slice's index (a handful).
 */
import { packJsonArrays, SQL_PARAM_BUDGET_BYTES } from "../shared/limits";
import { SIGNATURE_TOLERANCE_SECONDS } from "../shared/protocol";
import type { PageInfo, Run } from "./page-format";
import type { Pages } from "./pages";
import type { CountedSql } from "./sql";

/**
 * The recent pages: the history's newest pages stored within RECENT_MS, up
 * to RECENT_ENTRIES entries, their ids kept in memory (a few hundred KB at
 * most: an isolate's 128 MB is shared by the objects it runs).
 */
export const RECENT_MS = 2 * 60_000;
export const RECENT_ENTRIES = 4096;

/**
 * Ids are kept at least this long whatever DEDUPE_WINDOW_SECONDS says: a
 * signed batch is accepted for ±SIGNATURE_TOLERANCE_SECONDS, so its replay is
 * recognised by its ids for twice that plus a minute.
 */
export const MIN_RETENTION_MS = 2 * SIGNATURE_TOLERANCE_SECONDS * 1000 + 60_000;

/** Expired slices are deleted at most this often. */
const PRUNE_INTERVAL_MS = 60_000;

/** What a lookup found of a batch's ids. */
export interface Known {
  /** Ids already stored (within the window). */
  ids: Set<string>;
  /** Some of them were stored by this very batch id: the batch was applied before. */
  sameBatch: boolean;
}

/** Finds ids in the history pages (see the module comment). */
export class Redeliveries {
  /**
   * The recent pages other than the open one, each as id → batch (with the
   * page's last seq when read, so a page that changed is read again): a
   * lookup costs one probe per id, not a walk over every id kept.
   */
  private readonly parsed = new Map<number, { last: number; byId: Map<string, string | null> }>();

  constructor(private readonly pages: Pages) {}

  /** Forgets the parsed pages (a transaction rolled back). */
  reset(): void {
    this.parsed.clear();
  }

  /** Which of `ids` are stored, and the batch that stored each; `since` is the smallest commit time among them. */
  find(ids: readonly string[], since: number, now: number): Map<string, string | null> {
    const found = new Map<string, string | null>();
    const probe = (byId: Map<string, string | null>) => {
      for (const id of ids) if (byId.has(id)) found.set(id, byId.get(id)!);
    };
    const { pages, open } = this.pages.list();
    const recent = new Set<PageInfo>();
    let start = this.pages.firstCommittedSince(since);
    for (let k = pages.length - 1, entries = 0; k >= 0 && pages[k]!.live && pages[k]!.at >= now - RECENT_MS; k--) {
      entries += pages[k]!.last - pages[k]!.first + 1;
      if (entries > RECENT_ENTRIES) break;
      recent.add(pages[k]!);
      start = Math.min(start, k);
    }
    const recentLast = new Map([...recent].map((p) => [p.first, p.last]));
    for (const first of this.parsed.keys()) if (!recentLast.has(first)) this.parsed.delete(first);
    const toRead: number[] = [];
    for (const p of pages.slice(start)) {
      if (p === open?.info || !(recent.has(p) || p.committed >= since)) continue;
      const cached = this.parsed.get(p.first);
      if (cached?.last === p.last) probe(cached.byId);
      else toRead.push(p.first);
    }
    if (open && (open.info.committed >= since || recent.has(open.info))) probe(byId(open.runs, open.ids));
    for (const page of this.pages.idsOf(toRead)) {
      const last = recentLast.get(page.first);
      const map = byId(page.runs, page.ids);
      if (last !== undefined) this.parsed.set(page.first, { last, byId: map });
      probe(map);
    }
    return found;
  }
}

/** Slices per dedupe window: more means finer expiry but more index probes per lookup. */
const BUCKETS_PER_WINDOW = 8;

/** A page's ids with the batch that stored each (runs and ids are aligned: page-format.ts). */
function byId(runs: readonly Run[], ids: readonly string[]): Map<string, string | null> {
  const map = new Map<string, string | null>();
  let k = 0;
  for (const [, n, batch] of runs) {
    for (let j = k; j < k + n && j < ids.length; j++) map.set(ids[j]!, batch);
    k += n;
  }
  return map;
}

/** Ids found whatever the commit time (see the module comment). */
export class KeyedIds {
  /** The slices present in the table (their end times), so a lookup probes only those. */
  private readonly buckets = new Set<number>();
  private lastPrune = 0;

  constructor(
    private readonly db: CountedSql,
    private readonly windowMs: () => number,
  ) {
    // One index seek per slice (a handful), not a scan of the table.
    let row: { b: number } | undefined;
    let after = 0; // slice ends are epoch ms
    while ((row = this.db.exec<{ b: number }>("SELECT bucket AS b FROM dedupe WHERE bucket > ? ORDER BY bucket LIMIT 1", after).toArray()[0])) {
      this.buckets.add(row.b);
      after = row.b;
    }
  }

  private retentionMs(): number {
    return Math.max(this.windowMs(), MIN_RETENTION_MS);
  }

  /** The ids of `ids` stored before, and whether `batchId` stored any of them. */
  lookup(ids: readonly string[], batchId: string | undefined): Known {
    const known: Known = { ids: new Set(), sameBatch: false };
    if (this.buckets.size === 0 || ids.length === 0) return known;
    // Integers this object computed, inlined: a bound list would cost a parameter each (100 at most).
    const slices = [...this.buckets].join(",");
    for (const chunk of packJsonArrays(ids, SQL_PARAM_BUDGET_BYTES)) {
      const json = "json" in chunk ? chunk.json : JSON.stringify([chunk.single]);
      for (const row of this.db.exec<{ id: string; batch: string | null }>(
        `SELECT d.id AS id, d.batch AS batch FROM json_each(?) AS j CROSS JOIN dedupe AS d ON d.bucket IN (${slices}) AND d.id = j.value`,
        json,
      )) {
        known.ids.add(row.id);
        if (batchId !== undefined && row.batch === batchId) known.sameBatch = true;
      }
    }
    return known;
  }

  /** Remembers `ids` as stored now by `batchId`. */
  remember(ids: readonly string[], batchId: string | undefined, now: number): void {
    if (ids.length === 0) return;
    const size = Math.ceil(this.retentionMs() / BUCKETS_PER_WINDOW);
    const bucket = (Math.floor(now / size) + 1) * size;
    for (const chunk of packJsonArrays(ids, SQL_PARAM_BUDGET_BYTES)) {
      const json = "json" in chunk ? chunk.json : JSON.stringify([chunk.single]);
      this.db.exec("INSERT OR IGNORE INTO dedupe (bucket, id, batch) SELECT ?, value, ? FROM json_each(?)", bucket, batchId ?? null, json);
    }
    this.buckets.add(bucket);
  }

  /** Deletes the slices that ended before the retention (at most every PRUNE_INTERVAL_MS). */
  prune(now: number): void {
    if (this.buckets.size === 0 || now - this.lastPrune < PRUNE_INTERVAL_MS) return;
    this.lastPrune = now;
    const cutoff = now - this.retentionMs();
    this.db.exec("DELETE FROM dedupe WHERE bucket <= ?", cutoff);
    for (const b of this.buckets) if (b <= cutoff) this.buckets.delete(b);
  }
}
