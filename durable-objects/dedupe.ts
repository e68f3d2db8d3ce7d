/**
 * Dedupe ids an object stored before its history moved into pages (schema
 * 4, durable-objects/pages.ts, where ids now live with their events): read
 * by every lookup until their slices expire, then the table is empty and
 * costs nothing. No id is added here any more.
 *
 * The table is WITHOUT ROWID and keyed (bucket, id); a bucket is a time
 * slice (`bucket` is the slice's end, epoch ms), so expiry is a range delete
 * on the key's prefix, and a lookup probes each live bucket's index for the id.
 */
import { packJsonArrays, SQL_PARAM_BUDGET_BYTES } from "../shared/limits";
import { SIGNATURE_TOLERANCE_SECONDS } from "../shared/protocol";
import type { CountedSql } from "./sql";

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

export class Dedupe {
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

  /** Deletes the slices that ended before the retention (at most every PRUNE_INTERVAL_MS). */
  prune(now: number): void {
    if (this.buckets.size === 0 || now - this.lastPrune < PRUNE_INTERVAL_MS) return;
    this.lastPrune = now;
    const cutoff = now - this.retentionMs();
    this.db.exec("DELETE FROM dedupe WHERE bucket <= ?", cutoff);
    for (const b of this.buckets) if (b <= cutoff) this.buckets.delete(b);
  }
}
