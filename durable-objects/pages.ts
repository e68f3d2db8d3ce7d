/**
 * A channel's history in pages: one SQLite row holds up to PAGE_MAX_ENTRIES
 * consecutive entries (their envelopes joined by "\n"), the dedupe ids of
 * the ordering object's entries and which batch stored them. Cloudflare
 * bills every row written, deletes included (docs/benchmarks.md, "Cost"), so
 * a batch costs one row (its page's insert or update) instead of a row per
 * event, its dedupe id and their deletes.
 *
 * Life of a page (its shape and caps: page-format.ts): appended to while it
 * has room; once every entry is past the history (HISTORY_MAX_EVENTS,
 * HISTORY_MAX_AGE_SECONDS), deleted, its ids and batches appended to an
 * ids-only page kept for the dedupe window, then deleted in turn. A fan-out
 * object keeps no ids: its pages are deleted when they leave the history.
 *
 * Each page records the largest `committedAt` of its entries, which is what
 * dedupe lookups narrow by (dedupe.ts). The page list (a few numbers per
 * page) is kept in memory, loaded on the first ingest after the object
 * starts.
 */
import { packJsonArrays, SQL_PARAM_BUDGET_BYTES, utf8Length } from "../shared/limits";
import { firstIndex, ID_PAGE_MAX_BYTES, PAGE_MAX_BYTES, PAGE_MAX_ENTRIES, type Entry, type OpenPage, type PageInfo, type Run } from "./page-format";
import type { CountedSql } from "./sql";

export class Pages {
  /** Every page, in seq order (undefined until needed, and after a rolled-back transaction). */
  private index: PageInfo[] | undefined;
  private open: OpenPage | undefined;
  /** The newest ids-only page, while retire() may append to it. */
  private idTail: OpenPage | undefined;

  constructor(private readonly db: CountedSql) {}

  /** Forgets what memory holds (a transaction rolled back): it is read again from SQLite when needed. */
  reset(): void {
    this.index = undefined;
    this.open = undefined;
    this.idTail = undefined;
  }

  /** The newest entry's seq and store time, if any (one row). */
  newest(): { last: number; at: number } | undefined {
    return this.db.exec<{ last: number; at: number }>("SELECT last, at FROM pages ORDER BY first DESC LIMIT 1").toArray()[0];
  }

  private pages(): PageInfo[] {
    if (this.index) return this.index;
    let upTo = 0;
    this.index = this.db
      .exec<{ first: number; last: number; oldest: number; at: number; committed: number; live: number }>(
        "SELECT first, last, json_extract(runs, '$[0][0]') AS oldest, at, committed, body IS NOT NULL AS live FROM pages ORDER BY first",
      )
      .toArray()
      .map((r) => ({ ...r, upTo: (upTo = Math.max(upTo, r.committed)), live: r.live === 1 }));
    return this.index;
  }

  /** The newest page if it can take more entries (read from SQLite once). */
  private openPage(): OpenPage | undefined {
    const newest = this.pages().at(-1);
    if (!newest?.live) return undefined;
    if (this.open?.info !== newest) this.open = this.load(newest);
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
        page = {
          info: { first: entries[i]!.seq, last: entries[i]!.seq - 1, oldest: now, at: now, committed: 0, upTo: index.at(-1)?.upTo ?? 0, live: true },
          runs: [],
          ids: [],
          bytes: -1,
        };
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
        p.info.upTo = Math.max(p.info.upTo, e.committed);
        p.bytes += 1 + e.bytes;
        if (e.id !== undefined) p.ids.push(e.id);
        taken++;
      } while (i < entries.length && Pages.fits(p, entries[i]!));
      p.info.at = now;
      const run = p.runs.at(-1);
      if (run && run[0] === now && run[2] === batch) run[1] += taken;
      else p.runs.push([now, taken, batch]);
      const text = texts.join("\n");
      const values = [p.info.last, now, p.info.committed, JSON.stringify(p.runs), JSON.stringify(p.ids), p.bytes, p.info.first];
      if (fresh) this.db.exec("INSERT INTO pages (last, at, committed, runs, ids, bytes, first, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ...values, text);
      else
        this.db.exec(
          "UPDATE pages SET last = ?, at = ?, committed = ?, runs = ?, ids = ?, bytes = ?, body = body || ? WHERE first = ?",
          ...values.slice(0, 6),
          `\n${text}`,
          p.info.first,
        );
      if (fresh) index.push(p.info);
      this.open = p;
    }
  }

  /** Every page in seq order, and the open one (its ids in memory), for dedupe lookups (dedupe.ts). */
  list(): { pages: readonly PageInfo[]; open: OpenPage | undefined } {
    return { pages: this.pages(), open: this.openPage() };
  }

  /**
   * The index of the first page that can hold an entry committed at or
   * after `since`: `upTo` never decreases along the list (deleting a prefix
   * leaves the rest an upper bound), so every page before it has less.
   */
  firstCommittedSince(since: number): number {
    return firstIndex(this.pages(), (p) => p.upTo >= since);
  }

  /** The runs and ids of the pages starting at `firsts` (one key seek each). */
  *idsOf(firsts: readonly number[]): Generator<{ first: number; runs: Run[]; ids: string[] }> {
    for (const chunk of packJsonArrays(firsts, SQL_PARAM_BUDGET_BYTES)) {
      const json = "json" in chunk ? chunk.json : JSON.stringify([chunk.single]);
      // CROSS JOIN keeps json_each outside: a seek per listed page, not a scan of the table.
      for (const row of this.db.exec<{ first: number; runs: string; ids: string }>(
        "SELECT p.first AS first, p.runs AS runs, p.ids AS ids FROM json_each(?) AS j CROSS JOIN pages AS p ON p.first = j.value",
        json,
      ))
        yield { first: row.first, runs: JSON.parse(row.runs) as Run[], ids: JSON.parse(row.ids) as string[] };
    }
  }

  /** The first seq stored at or after `cutoff` among entries from `from` on (`head + 1` when none). */
  firstStoredSince(cutoff: number, from: number, head: number): number {
    const index = this.pages();
    for (let k = firstIndex(index, (p) => p.last >= from); k < index.length; k++) {
      const p = index[k]!;
      if (!p.live || p.at < cutoff) continue;
      if (p.oldest >= cutoff) return Math.max(p.first, from);
      const runs =
        p === this.open?.info
          ? this.open.runs
          : (JSON.parse(this.db.exec<{ runs: string }>("SELECT runs FROM pages WHERE first = ?", p.first).one().runs) as Run[]);
      let seq = p.first;
      for (const [at, n] of runs) {
        if (at >= cutoff) return Math.max(seq, from);
        seq += n;
      }
    }
    return head + 1;
  }

  /**
   * Pages wholly before `floor` leave the history: their ids move into
   * ids-only pages while they must be kept (until `keepIdsAfter`: retire),
   * they are deleted otherwise (`keepIdsAfter` undefined: a fan-out object
   * keeps no ids). Expired pages go in one range delete on the key.
   */
  prune(floor: number, keepIdsAfter: number | undefined): void {
    const index = this.pages();
    const below = firstIndex(index, (p) => p.last >= floor);
    const drop = (count: number) => {
      if (count === 0) return;
      this.db.exec("DELETE FROM pages WHERE first <= ?", index[count - 1]!.first);
      index.splice(0, count);
      if (this.open && !index.includes(this.open.info)) this.open = undefined;
      if (this.idTail && !index.includes(this.idTail.info)) this.idTail = undefined;
    };
    if (keepIdsAfter === undefined) return drop(below);
    const leaving = index.slice(0, below).filter((p) => p.live);
    if (leaving.length > 0) this.retire(leaving);
    drop(firstIndex(index, (p) => p.live || p.at >= keepIdsAfter));
  }

  /**
   * Moves the ids of `leaving` (the oldest live pages, consecutive) into
   * ids-only pages of up to ID_PAGE_MAX_BYTES, appending to the newest one
   * while it has room, and deletes them: one row written per page leaving
   * and one per ids-only page touched.
   */
  private retire(leaving: PageInfo[]): void {
    const index = this.pages();
    const start = index.indexOf(leaving[0]!);
    const contents = new Map<number, { runs: Run[]; ids: string[] }>();
    if (this.open && leaving.includes(this.open.info)) contents.set(this.open.info.first, this.open);
    for (const page of this.idsOf(leaving.filter((p) => !contents.has(p.first)).map((p) => p.first))) contents.set(page.first, page);
    const before = index[start - 1];
    let tail = before && !before.live ? (this.idTail?.info === before ? this.idTail : this.load(before)) : undefined;
    const touched: OpenPage[] = [];
    for (const p of leaving) {
      const c = contents.get(p.first)!;
      // Pages from before schema 4 (and copies) have no ids to keep.
      const kept = c.ids.length === p.last - p.first + 1 ? c : { runs: [], ids: [] };
      const bytes = kept.ids.length > 0 ? utf8Length(JSON.stringify(kept.ids)) + utf8Length(JSON.stringify(kept.runs)) : 0;
      if (!tail || tail.bytes + bytes > ID_PAGE_MAX_BYTES) tail = { info: { ...p, live: false }, runs: [], ids: [], bytes: 0 };
      tail.runs.push(...kept.runs);
      tail.ids.push(...kept.ids);
      tail.bytes += bytes;
      Object.assign(tail.info, { last: p.last, at: Math.max(tail.info.at, p.at), committed: Math.max(tail.info.committed, p.committed) });
      tail.info.upTo = Math.max(tail.info.upTo, p.upTo);
      if (!touched.includes(tail)) touched.push(tail);
    }
    this.db.exec("DELETE FROM pages WHERE first >= ? AND first <= ?", leaving[0]!.first, leaving.at(-1)!.first);
    for (const t of touched) {
      const values = [t.info.last, t.info.at, t.info.committed, JSON.stringify(t.runs), JSON.stringify(t.ids), t.bytes, t.info.first];
      if (t.info === before) this.db.exec("UPDATE pages SET last = ?, at = ?, committed = ?, runs = ?, ids = ?, bytes = ? WHERE first = ?", ...values);
      else this.db.exec("INSERT INTO pages (last, at, committed, runs, ids, bytes, first, body) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)", ...values);
    }
    index.splice(start, leaving.length, ...touched.filter((t) => t.info !== before).map((t) => t.info));
    if (this.open && !index.includes(this.open.info)) this.open = undefined;
    this.idTail = tail;
  }

  /** A page's runs, ids and size, read once. */
  private load(info: PageInfo): OpenPage {
    const row = this.db.exec<{ runs: string; ids: string; bytes: number }>("SELECT runs, ids, bytes FROM pages WHERE first = ?", info.first).one();
    return { info, runs: JSON.parse(row.runs) as Run[], ids: JSON.parse(row.ids) as string[], bytes: row.bytes };
  }

  /** The first live page's first seq from `floor` on (key seeks only), or undefined. */
  firstLiveFrom(floor: number): number | undefined {
    return this.db
      .exec<{ first: number }>(
        "SELECT first FROM pages WHERE first >= coalesce((SELECT first FROM pages WHERE first <= ? ORDER BY first DESC LIMIT 1), 0) AND body IS NOT NULL ORDER BY first LIMIT 1",
        floor,
      )
      .toArray()[0]?.first;
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
