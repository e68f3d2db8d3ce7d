/**
 * The history in pages (durable-objects/pages.ts): what a resume or a
 * fan-out catch-up reads across page boundaries, and how a redelivery is
 * found without a dedupe row per id.
 */
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { EventStore } from "../../durable-objects/event-store";
import { ID_PAGE_MAX_BYTES, PAGE_MAX_BYTES, PAGE_MAX_ENTRIES } from "../../durable-objects/page-format";
import { RECENT_MS } from "../../durable-objects/dedupe";
import { loadConfig } from "../../shared/worker-config";
import type { IngestEvent } from "../../src/channel-contract";
import { event, freshChannel } from "../support/worker-client";
import { testStub } from "./worker";

const t0 = 1_700_000_000_000;

type Ev = (id: string, committedAt: number, size?: number) => IngestEvent;

/** A store on a fresh channel's object with `historyMaxEvents` of history, and an event maker for it. */
async function withStore(name: string, historyMaxEvents: number, body: (store: EventStore, ev: Ev, state: DurableObjectState) => void): Promise<void> {
  const ch = freshChannel(name);
  await runInDurableObject(testStub(env, ch), async (_instance, state) => {
    const config = { ...loadConfig(env), HISTORY_MAX_EVENTS: historyMaxEvents };
    const store = new EventStore(state.storage, () => config);
    store.bindChannel(ch);
    const ev: Ev = (id, committedAt, size = 0) => ({
      id,
      channel: ch,
      committedAt,
      json: JSON.stringify(event(ch, 0, { id, committedAt, data: { pad: "é".repeat(size) } })),
    });
    body(store, ev, state);
  });
}

describe("resume and catch-up across pages", () => {
  it("serves exactly the events after any seq, with pages split by count, by size and by a large event", async () => {
    await withStore("pages", 10_000, (store, ev, state) => {
      const ids: string[] = [];
      let n = 0;
      const batch = (count: number, size = 0) => {
        const events = Array.from({ length: count }, () => ev(`e${++n}`, t0 + n, size));
        ids.push(...events.map((e) => e.id));
        store.ingest(events, `b${n}`, t0 + n);
      };
      batch(PAGE_MAX_ENTRIES + 5); // a full page and the start of the next
      batch(1, PAGE_MAX_BYTES); // larger than a page: a page of its own
      for (let i = 0; i < 20; i++) batch(3, 2000); // pages closed by size
      batch(1);
      const pages = state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM pages").one().n;
      expect(pages).toBeGreaterThanOrEqual(4);
      for (const since of [0, 1, PAGE_MAX_ENTRIES - 1, PAGE_MAX_ENTRIES, PAGE_MAX_ENTRIES + 5, PAGE_MAX_ENTRIES + 6, ids.length - 1, ids.length]) {
        const got = [...store.after(since)].map((b) => JSON.parse(b) as { seq: number; id: string });
        expect(got.map((e) => e.seq)).toEqual(Array.from({ length: ids.length - since }, (_, i) => since + 1 + i));
        expect(got.map((e) => e.id)).toEqual(ids.slice(since));
      }
      // A fan-out object's catch-up reads in slices; they join up without a gap or a repeat.
      const caught: number[] = [];
      for (let after = 0; after < ids.length;) {
        const r = store.range(after, 50);
        expect(r.seqs.length).toBeGreaterThan(0);
        caught.push(...r.seqs);
        after = r.seqs.at(-1)!;
      }
      expect(caught).toEqual(ids.map((_, i) => i + 1));
    });
  });
});

describe("dedupe without a row per id", () => {
  it("finds a redelivery by its commit time long after, and a retry with a new commit time among the recent pages", async () => {
    await withStore("redeliver", 50, (store, ev, state) => {
      store.ingest([ev("first", t0)], "b0", t0);
      // Hours of later events in many pages; the history keeps only 50 of them.
      let at = t0;
      for (let i = 0; i < 3 * PAGE_MAX_ENTRIES; i++) {
        at += 60_000;
        store.ingest([ev(`later-${i}`, at)], `bl-${i}`, at);
      }
      expect(store.oldestSeq()).toBeGreaterThan(2);
      // The pages that left the history were merged into one ids-only page (ID_PAGE_MAX_BYTES).
      const rows = state.storage.sql
        .exec<{ live: number; idsOnly: number }>("SELECT sum(body IS NOT NULL) AS live, sum(body IS NULL) AS idsOnly FROM pages")
        .one();
      expect(rows.idsOnly).toBe(1);
      expect(rows.live).toBeLessThanOrEqual(2);
      // The relay's redelivery carries the event's commit time: found in its (stripped) page.
      expect(store.ingest([ev("first", t0)], "b-again", at + 1)).toMatchObject({ duplicates: 1, seqs: [] });
      // A replay of the very batch: nothing done.
      expect(store.ingest([ev(`later-${3 * PAGE_MAX_ENTRIES - 1}`, at)], `bl-${3 * PAGE_MAX_ENTRIES - 1}`, at + 2)).toMatchObject({ replayed: true });
      // A producer that resends with a new commit time: found while the page is recent.
      store.ingest([ev("published", at + 10)], "p1", at + 10);
      expect(store.ingest([ev("published", at + RECENT_MS / 2)], "p2", at + RECENT_MS / 2)).toMatchObject({ duplicates: 1 });
      // A new object on the same storage (after an eviction) knows them all the same.
      const woken = new EventStore(state.storage, () => ({ ...loadConfig(env), HISTORY_MAX_EVENTS: 50 }));
      expect(woken.ingest([ev("first", t0), ev("published", at + RECENT_MS / 2 + 1), ev("new", at + 20)], "b-woken", at + RECENT_MS / 2 + 1)).toMatchObject({
        duplicates: 2,
        seqs: [store.counters.headSeq + 1],
      });
    });
  });

  it("keeps an id a publisher chose for the whole window, whatever commit time its retry carries", async () => {
    await withStore("keyed", 50, (store, ev, state) => {
      const keyed = (id: string, at: number): IngestEvent => ({ ...ev(id, at), keyed: true });
      store.ingest([keyed("order-1-shipped", t0)], undefined, t0);
      let at = t0;
      for (let i = 0; i < 3 * PAGE_MAX_ENTRIES; i++) {
        at += 60_000;
        store.ingest([ev(`later-${i}`, at)], `bl-${i}`, at);
      }
      // Hours later, past the recent pages, the same id published again: a duplicate.
      expect(store.ingest([keyed("order-1-shipped", at + 1)], undefined, at + 1)).toMatchObject({ duplicates: 1, seqs: [] });
      // Only keyed ids take a row of the id table; the other events cost none.
      const rows = state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM dedupe").one().n;
      expect(rows).toBe(1);
    });
  });

  it("fills ids-only pages up to ID_PAGE_MAX_BYTES and starts the next, every id still found", async () => {
    await withStore("idpages", 50, (store, ev, state) => {
      const id = (i: number) => `${String(i).padStart(6, "0")}-${"x".repeat(120)}`; // 127 characters
      // Each id with its run is about 190 bytes: enough events to fill more than one ids-only page.
      const count = Math.ceil((1.5 * ID_PAGE_MAX_BYTES) / 190);
      for (let i = 0; i < count; i++) store.ingest([ev(id(i), t0 + i)], `b${i}`, t0 + i);
      const idsOnly = state.storage.sql
        .exec<{ n: number; biggest: number }>("SELECT count(*) AS n, max(length(ids) + length(runs)) AS biggest FROM pages WHERE body IS NULL")
        .one();
      expect(idsOnly.n).toBeGreaterThanOrEqual(2);
      expect(idsOnly.biggest).toBeLessThanOrEqual(ID_PAGE_MAX_BYTES);
      // Redeliveries of the first, a middle and the last events: all duplicates, nothing stored.
      const again = [0, Math.floor(count / 2), count - 1].map((i) => ev(id(i), t0 + i));
      expect(store.ingest(again, "again", t0 + count)).toMatchObject({ duplicates: 3, seqs: [] });
    });
  });
});
