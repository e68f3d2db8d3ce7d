/**
 * What a history page is (pages.ts): its entries, the runs that say which
 * batch stored which entries and when, the in-memory description of a page,
 * and the caps that keep a page's row under the platform's 2 MB.
 */

/**
 * Body bytes per page. A batch appends with one UPDATE that rewrites the row,
 * so a smaller page is cheaper to append to; a larger one is pruned less
 * often. A single larger event (up to MAX_EVENT_BYTES, at most 1.9 MB) gets a
 * page of its own, which with its one id stays under the platform's 2 MB per
 * row (shared/limits.ts).
 */
export const PAGE_MAX_BYTES = 32 * 1024;
/** Entries per page (bounds the ids kept with it: 128 × 128 characters at most). */
export const PAGE_MAX_ENTRIES = 128;
/**
 * Ids outlive their envelopes (the dedupe window is longer than the
 * history): pages leaving the history are merged into ids-only pages of up
 * to this many bytes of ids and runs (a row stays far under the platform's
 * 2 MB), so the page list in memory and a lookup's reads grow with the ids
 * kept, not with the pages they came in (a day of single-event batches at
 * 100/s is 67,500 pages, and about 3,400 ids-only pages).
 */
export const ID_PAGE_MAX_BYTES = 256 * 1024;

/** One history entry to store. */
export interface Entry {
  seq: number;
  body: string;
  /** UTF-8 bytes of `body`. */
  bytes: number;
  /** The dedupe id (events and gap markers on the ordering object); absent on copies. */
  id?: string;
  /** The event's commit time at its source (a marker's: when stored): what lookups narrow by. */
  committed: number;
}

/** The entries one batch stored at one time: [stored at (epoch ms), how many, batch id]. */
export type Run = [at: number, n: number, batch: string | null];

export interface PageInfo {
  first: number;
  last: number;
  /** When its oldest and newest entries were stored (this object's clock). */
  oldest: number;
  at: number;
  /** The largest commit time among its entries (the sources' clocks). */
  committed: number;
  /** The largest `committed` of this page and every page before it (a lookup's start: dedupe.ts). */
  upTo: number;
  /** It holds envelopes (false: an ids-only page, kept for dedupe: pages.ts). */
  live: boolean;
}

/** The newest page while it takes appends. */
export interface OpenPage {
  info: PageInfo;
  runs: Run[];
  /** One per entry, or none at all (copies, and history from before pages). */
  ids: string[];
  bytes: number;
}

/** The first index of `list` where `pred` holds, for a `pred` false up to some index and true from there on. */
export function firstIndex<T>(list: readonly T[], pred: (item: T) => boolean): number {
  let [lo, hi] = [0, list.length];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (pred(list[mid]!)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
