/**
 * A channel's history in pages: one SQLite row holds up to PAGE_MAX_ENTRIES
 * consecutive entries (their envelopes joined by "\n"), the dedupe ids of
 * the ordering object's entries and which batch stored them. Cloudflare
 * bills every row written, deletes included (docs/benchmarks.md, "Cost"), so
 * a batch costs one row (its page's insert or update) instead of a row per
 * event, its dedupe id and their deletes.
 *
 * Life of a page: appended to while it has room; stripped of its envelopes
 * (one row written) once every entry is past the history (HISTORY_MAX_EVENTS,
 * HISTORY_MAX_AGE_SECONDS), its ids kept for the dedupe window; deleted (one
 * row) after that. A fan-out object keeps no ids: its pages are deleted when
 * they leave the history.
 *
 * Dedupe without an index: each page records the largest `committedAt` of
 * its entries (the source's clock). A stored event's page has
 * `committed >= event.committedAt`, and a redelivery carries the same
 * `committedAt`, so a lookup reads only the pages whose `committed` is at or
 * above the smallest of the batch: in steady state the newest page or two.
 * The page list (a few numbers per page) is kept in memory, loaded on the
 * first ingest after the object starts.
 */
import { packJsonArrays, SQL_PARAM_BUDGET_BYTES } from "../shared/limits";
import type { CountedSql } from "./sql";

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
 * A redelivery is found by its commit time for the whole dedupe window; in
 * the newest pages (stored within RECENT_MS, up to RECENT_ENTRIES entries,
 * their ids kept parsed in memory) it is found whatever its commit time.
 */
export const RECENT_MS = 5 * 60_000;
export const RECENT_ENTRIES = 16_384;

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

interface PageInfo {
  first: number;
  last: number;
  /** When its oldest and newest entries were stored (this object's clock). */
  oldest: number;
  at: number;
  /** The largest commit time among its entries (the sources' clocks). */
  committed: number;
  /** It still holds its envelopes (false: stripped, its ids kept for dedupe). */
  live: boolean;
}

/** The newest page while it takes appends. */
interface OpenPage {
  info: PageInfo;
  runs: Run[];
  /** One per entry, or none at all (copies, and history from before pages). */
  ids: string[];
  bytes: number;
}

export class Pages {
  /** Every page, in seq order (undefined until needed, and after a rolled-back transaction). */
  private index: PageInfo[] | undefined;
  private open: OpenPage | undefined;
  /** The ids of recent pages other than the open one, parsed (find). */
  private readonly parsed = new Map<number, { runs: Run[]; ids: string[] }>();

  constructor(private readonly db: CountedSql) {}

  /** Forgets what memory holds (a transaction rolled back): it is read again from SQLite when needed. */
  reset(): void {
    this.index = undefined;
    this.open = undefined;
    this.parsed.clear();
  }

  /** The newest entry's seq and store time, if any (one row). */
  newest(): { last: number; at: number } | undefined {
    return this.db.exec<{ last: number; at: number }>("SELECT last, at FROM pages ORDER BY first DESC LIMIT 1").toArray()[0];
  }

  private pages(): PageInfo[] {
    this.index ??= this.db
      .exec<{ first: number; last: number; oldest: number; at: number; committed: number; live: number }>(
        "SELECT first, last, json_extract(runs, '$[0][0]') AS oldest, at, committed, body IS NOT NULL AS live FROM pages ORDER BY first",
      )
      .toArray()
      .map((r) => ({ first: r.first, last: r.last, oldest: r.oldest, at: r.at, committed: r.committed, live: r.live === 1 }));
    return this.index;
  }

  /** The newest page if it can take more entries (read from SQLite once). */
  private openPage(): OpenPage | undefined {
    const newest = this.pages().at(-1);
    if (!newest?.live) return undefined;
    if (this.open?.info === newest) return this.open;
    const row = this.db.exec<{ runs: string; ids: string; bytes: number }>("SELECT runs, ids, bytes FROM pages WHERE first = ?", newest.first).one();
    this.open = { info: newest, runs: JSON.parse(row.runs) as Run[], ids: JSON.parse(row.ids) as string[], bytes: row.bytes };
    return this.open;
  }

  /** Whether `e` may join `page`: the next seq, room left, and ids for every entry or for none. */
  private static fits(page: OpenPage, e: Entry): boolean {
    const n = page.info.last - page.info.first + 1;
    const withIds = page.ids.length === n && n > 0;
    return (
      e.seq === page.info.last + 1 &&
      n < PAGE_MAX_ENTRIES &&
      page.bytes + 1 + e.bytes <= PAGE_MAX_BYTES &&
      (e.id !== undefined ? withIds || n === 0 : page.ids.length === 0)
    );
  }

  /** Stores entries (seq order), one row written per page they touch; `batch` names the batch for replay checks. */
  append(entries: readonly Entry[], batch: string | null, now: number): void {
    const index = this.pages();
    let i = 0;
    while (i < entries.length) {
      let page = this.openPage();
      const fresh = !page || !Pages.fits(page, entries[i]!);
      if (fresh) {
        page = { info: { first: entries[i]!.seq, last: entries[i]!.seq - 1, oldest: now, at: now, committed: 0, live: true }, runs: [], ids: [], bytes: -1 };
      }
      const p = page!;
      const texts: string[] = [];
      let taken = 0;
      do {
        const e = entries[i++]!;
        // A JSON text holds a raw newline only as whitespace (strings escape it): a space is the same JSON.
        texts.push(e.body.includes("\n") ? e.body.replace(/\n/g, " ") : e.body);
        p.info.last = e.seq;
        p.info.committed = Math.max(p.info.committed, e.committed);
        p.bytes += 1 + e.bytes;
        if (e.id !== undefined) p.ids.push(e.id);
        taken++;
      } while (i < entries.length && Pages.fits(p, entries[i]!));
      p.info.at = now;
      const run = p.runs.at(-1);
      if (run && run[0] === now && run[2] === batch) run[1] += taken;
      else p.runs.push([now, taken, batch]);
      const [runs, ids, text] = [JSON.stringify(p.runs), JSON.stringify(p.ids), texts.join("\n")];
      if (fresh) {
        this.db.exec(
          "INSERT INTO pages (first, last, at, committed, runs, ids, body, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          p.info.first,
          p.info.last,
          now,
          p.info.committed,
          runs,
          ids,
          text,
          p.bytes,
        );
        index.push(p.info);
      } else
        this.db.exec(
          "UPDATE pages SET last = ?, at = ?, committed = ?, runs = ?, ids = ?, body = body || ?, bytes = ? WHERE first = ?",
          p.info.last,
          now,
          p.info.committed,
          runs,
          ids,
          `\n${text}`,
          p.bytes,
          p.info.first,
        );
      this.open = p;
    }
  }

  /**
   * Which of `ids` are stored, and the batch that stored each: among the
   * pages holding an entry committed at or after `since` (see the module
   * comment: every page that can hold a redelivery of them), and the recent
   * pages whatever their commit times (a producer that retries with a new
   * `committedAt`, like a publish retried with its id: RECENT_MS).
   */
  find(ids: readonly string[], since: number, now: number): Map<string, string | null> {
    const found = new Map<string, string | null>();
    const wanted = new Set(ids);
    const scan = (runs: Run[], pageIds: readonly string[]) => {
      let k = 0;
      for (const [, n, batch] of runs) {
        for (let j = k; j < k + n && j < pageIds.length; j++) if (wanted.has(pageIds[j]!)) found.set(pageIds[j]!, batch);
        k += n;
      }
    };
    const index = this.pages();
    const open = this.openPage();
    // The recent pages, newest first, up to RECENT_ENTRIES entries: their ids are kept parsed.
    const recent = new Set<PageInfo>();
    for (let k = index.length - 1, entries = 0; k >= 0 && entries < RECENT_ENTRIES && index[k]!.at >= now - RECENT_MS; k--) {
      recent.add(index[k]!);
      entries += index[k]!.last - index[k]!.first + 1;
    }
    const recentFirsts = new Set([...recent].map((p) => p.first));
    for (const first of this.parsed.keys()) if (!recentFirsts.has(first)) this.parsed.delete(first);
    const firsts: number[] = [];
    for (const p of index) {
      if (p === open?.info) continue;
      if (recent.has(p)) {
        const cached = this.parsed.get(p.first);
        if (cached) scan(cached.runs, cached.ids);
        else firsts.push(p.first);
      } else if (p.committed >= since) firsts.push(p.first);
    }
    if (open && (open.info.committed >= since || recent.has(open.info))) scan(open.runs, open.ids);
    for (const chunk of packJsonArrays(firsts, SQL_PARAM_BUDGET_BYTES)) {
      const json = "json" in chunk ? chunk.json : JSON.stringify([chunk.single]);
      // One key seek per page, in the list's order (CROSS JOIN keeps json_each outside).
      for (const row of this.db.exec<{ first: number; runs: string; ids: string }>(
        "SELECT p.first AS first, p.runs AS runs, p.ids AS ids FROM json_each(?) AS j CROSS JOIN pages AS p ON p.first = j.value",
        json,
      )) {
        const page = { runs: JSON.parse(row.runs) as Run[], ids: JSON.parse(row.ids) as string[] };
        if (recentFirsts.has(row.first)) this.parsed.set(row.first, page);
        scan(page.runs, page.ids);
      }
    }
    return found;
  }

  /** The first seq stored at or after `cutoff` among entries from `from` on (`head + 1` when none). */
  firstStoredSince(cutoff: number, from: number, head: number): number {
    const index = this.pages();
    for (let k = firstPageEndingAtOrAfter(index, from); k < index.length; k++) {
      const p = index[k]!;
      if (!p.live || p.at < cutoff) continue;
      if (p.oldest >= cutoff) return Math.max(p.first, from);
      const runs = p === this.open?.info ? this.open.runs : (JSON.parse(this.db.exec<{ runs: string }>("SELECT runs FROM pages WHERE first = ?", p.first).one().runs) as Run[]);
      let seq = p.first;
      for (const [at, n] of runs) {
        if (at >= cutoff) return Math.max(seq, from);
        seq += n;
      }
    }
    return head + 1;
  }

  /**
   * Pages wholly before `floor` leave the history: stripped of their
   * envelopes while their ids must be kept (until `keepIdsAfter`), deleted
   * otherwise (`keepIdsAfter` undefined: a fan-out object keeps no ids). Each
   * is a statement over a range of the key.
   */
  prune(floor: number, keepIdsAfter: number | undefined): void {
    const index = this.pages();
    const below = firstPageEndingAtOrAfter(index, floor);
    const drop = (count: number) => {
      if (count === 0) return;
      this.db.exec("DELETE FROM pages WHERE first <= ?", index[count - 1]!.first);
      if (this.open && index.indexOf(this.open.info) < count) this.open = undefined;
      index.splice(0, count);
    };
    if (keepIdsAfter === undefined) return drop(below);
    const strip = index.slice(0, below).filter((p) => p.live);
    if (strip.length > 0) {
      this.db.exec("UPDATE pages SET body = NULL, bytes = 0 WHERE first >= ? AND first <= ? AND body IS NOT NULL", strip[0]!.first, strip.at(-1)!.first);
      for (const p of strip) p.live = false;
      if (this.open && !this.open.info.live) this.open = undefined;
    }
    let expired = 0;
    while (expired < index.length && !index[expired]!.live && index[expired]!.at < keepIdsAfter) expired++;
    drop(expired);
  }

  /** The first live page's first seq from `floor` on (key seeks only), or undefined. */
  firstLiveFrom(floor: number): number | undefined {
    return (
      this.db
        .exec<{ first: number }>(
          "SELECT first FROM pages WHERE first >= coalesce((SELECT first FROM pages WHERE first <= ? ORDER BY first DESC LIMIT 1), 0) AND body IS NOT NULL ORDER BY first LIMIT 1",
          floor,
        )
        .toArray()[0]?.first
    );
  }

  /** Entries after `since`, in seq order, from the live pages (reads from the page holding `since + 1`). */
  *after(since: number): Generator<[seq: number, body: string]> {
    for (const row of this.db.exec<{ first: number; body: string }>(
      "SELECT first, body FROM pages WHERE first >= coalesce((SELECT first FROM pages WHERE first <= ? ORDER BY first DESC LIMIT 1), 0) AND body IS NOT NULL ORDER BY first",
      since + 1,
    )) {
      const bodies = row.body.split("\n");
      for (let i = 0; i < bodies.length; i++) if (row.first + i > since) yield [row.first + i, bodies[i]!];
    }
  }
}

/** The index of the first page whose last seq is at or after `seq` (pages are in seq order). */
function firstPageEndingAtOrAfter(index: readonly PageInfo[], seq: number): number {
  let [lo, hi] = [0, index.length];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (index[mid]!.last < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

