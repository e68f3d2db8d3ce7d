/**
 * What an event costs in SQLite rows (billed: every row written, deletes
 * included, docs/benchmarks.md "Cost"), counted by the runtime's own cursors
 * (EventStore.usage): single-event batches and batches of 10, in steady
 * state (the history full, so each event also prunes one). The test
 * bindings keep 50 events of history. And the prunes that replaced the
 * indexes on time (schema 2) remove what they should.
 */
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { EventStore } from "../../durable-objects/event-store";
import { loadConfig } from "../../shared/worker-config";
import type { IngestEvent } from "../../src/channel-contract";
import { event, freshChannel, ingest } from "../support/worker-client";
import { testStub } from "./worker";

async function rowsPerEvent(batchSize: number): Promise<{ written: number; read: number }> {
  const ch = freshChannel("cost");
  const stub = testStub(env, ch);
  let n = 0;
  const send = async (batches: number) => {
    for (let b = 0; b < batches; b++) {
      const events = Array.from({ length: batchSize }, () => event(ch, ++n));
      expect((await ingest(events)).status).toBe(200);
    }
  };
  await send(Math.ceil(60 / batchSize)); // past the 50 events of history
  const before = await stub.stats();
  await send(Math.ceil(100 / batchSize));
  const after = await stub.stats();
  const events = after.events - before.events;
  return { written: (after.sqlRowsWritten - before.sqlRowsWritten) / events, read: (after.sqlRowsRead - before.sqlRowsRead) / events };
}

describe("SQLite rows per event", () => {
  it("single-event batches and batches of 10, in steady state", async () => {
    const one = await rowsPerEvent(1);
    const ten = await rowsPerEvent(10);
    console.log(JSON.stringify({ rowsPerEvent: { batchesOf1: one, batchesOf10: ten } }));
    // Measured 7 and 4.3 written, 9 and 5.4 read (docs/benchmarks.md, "Cost"); before schema 2: 20 and 7.4 written, 124 read.
    expect(one.written).toBeLessThanOrEqual(7.5);
    expect(ten.written).toBeLessThanOrEqual(4.6);
    expect(one.read).toBeLessThanOrEqual(12);
    expect(ten.read).toBeLessThanOrEqual(7);
  });
});

describe("pruning without indexes on time (schema 2)", () => {
  it("removes exactly what is older than the history age, the dedupe window and the batch ledger's retention, and nothing newer", async () => {
    const ch = freshChannel("prune");
    await runInDurableObject(testStub(env, ch), async (_instance, state) => {
      const config = { ...loadConfig(env), HISTORY_MAX_AGE_SECONDS: 10, HISTORY_MAX_EVENTS: 1000, DEDUPE_WINDOW_SECONDS: 60 };
      const store = new EventStore(state.storage, () => config);
      store.bindChannel(ch);
      const ev = (id: string): IngestEvent => ({ id, channel: ch, committedAt: 0, json: JSON.stringify(event(ch, 0, { id })) });
      const t0 = 1_000_000_000_000;
      store.ingest([ev("a"), ev("b")], "batch-1", t0);
      store.ingest([ev("c")], "batch-2", t0 + 5_000);
      // 11 s later: a and b are past the 10 s history age, c is not.
      store.ingest([ev("d")], "batch-3", t0 + 11_000);
      expect([...store.after(0)].map((b) => (JSON.parse(b) as { id: string }).id)).toEqual(["c", "d"]);
      // Within the dedupe window a is a duplicate, though gone from the history.
      expect(store.ingest([ev("a")], "batch-4", t0 + 30_000).duplicates).toBe(1);
      // The batch ledger keeps ids for its retention (11 min): batch-1 again is a replay, then is not.
      expect(store.ingest([ev("e")], "batch-1", t0 + 60_000).replayed).toBe(true);
      // Past the dedupe window (and the prune interval), a, b, c and d are forgotten; batch-1 too, later.
      store.ingest([ev("g")], "batch-5", t0 + 130_000); // prunes (after its own dedupe check)
      expect(store.ingest([ev("a"), ev("d")], "batch-6", t0 + 131_000).duplicates).toBe(0);
      expect(store.ingest([ev("g")], "batch-7", t0 + 132_000).duplicates).toBe(1); // newer than the window: kept
      store.ingest([ev("f")], "batch-8", t0 + 12 * 60_000); // prunes the ledger (after its own check)
      expect(store.ingest([ev("h")], "batch-1", t0 + 12 * 60_000 + 1000).replayed).toBe(false);
      expect(store.ingest([ev("i")], "batch-8", t0 + 12 * 60_000 + 2000).replayed).toBe(true); // newer: kept
    });
  });
});
