/**
 * The fan-out tree (FANOUT_CHANNELS = tree.*, 2 sockets per fan-out object in
 * the test bindings): sockets on several objects in several regions, one
 * order for all, gaps filled, resume anywhere.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { testStub } from "./worker";
import { fanoutName } from "../../src/fanout";
import { connect, event, fetchWorker, freshChannel, ingest, range, seqs, type Client } from "../support/worker-client";
import { waitUntil } from "../support/wait";
import { TEST_BINDINGS } from "../support/bindings";
import type { StatsReport } from "../../src/metrics";

const stub = (name: string) => testStub(env, name);
const socketsOn = (name: string) => runInDurableObject(stub(name), (_o, state) => state.getWebSockets().length);
const connectIn = (ch: string, continent: string | undefined, n: number, opts: { since?: number } = {}) =>
  Promise.all(Array.from({ length: n }, () => connect(ch, { continent, ...opts })));
/** A tree channel with a client in two regions, whose EU fan-out object holds every hand-off until released. */
async function oneHeldRegion() {
  const ch = freshChannel("tree");
  const [slow] = await connectIn(ch, "EU", 1);
  const [quick] = await connectIn(ch, "NA", 1);
  const held = stub(fanoutName(ch, "eu", 0));
  await held.holdHandOffs();
  return { ch, slow: slow!, quick: quick!, held };
}

describe("fan-out tree", () => {
  it("spreads sockets over objects by region and capacity, and every subscriber sees one order", async () => {
    const ch = freshChannel("tree");
    const clients: Client[] = [...(await connectIn(ch, "EU", 3)), ...(await connectIn(ch, "NA", 1)), ...(await connectIn(ch, undefined, 1))];
    expect(await socketsOn(fanoutName(ch, "eu", 0))).toBe(2);
    expect(await socketsOn(fanoutName(ch, "eu", 1))).toBe(1); // overflow into a second object
    expect(await socketsOn(fanoutName(ch, "na", 0))).toBe(1);
    expect(await socketsOn(fanoutName(ch, "local", 0))).toBe(1);
    expect(await socketsOn(ch)).toBe(0); // the ordering object holds no sockets
    for (let b = 0; b < 4; b++) expect((await ingest(range(b * 5 + 1, b * 5 + 5).map((n) => event(ch, n)))).status).toBe(200);
    for (const c of clients) {
      const evs = await c.waitForEvents(20);
      expect(seqs(evs)).toEqual(range(1, 20));
      expect(evs.map((e) => e.id)).toEqual(range(1, 20).map((n) => `${ch}-${n}`));
    }
  });

  it("fills a missed hand-off from the ordering object before sending anything newer", async () => {
    const ch = freshChannel("tree");
    const [c] = await connectIn(ch, "EU", 1);
    const name = fanoutName(ch, "eu", 0);
    await ingest(range(1, 3).map((n) => event(ch, n)));
    await c!.waitForEvents(3);
    // Hand-offs of 4 and 5 are lost: the ordering object does not know the fan-out object for a while.
    await stub(ch).detach(name);
    await ingest([event(ch, 4)]);
    await ingest([event(ch, 5)]);
    await stub(ch).attach(name, "eu");
    await ingest([event(ch, 6)]);
    expect(seqs(await c!.waitForEvents(6))).toEqual(range(1, 6));
  });

  it("keeps delivering, in order, to a fan-out object evicted mid-stream", async () => {
    const ch = freshChannel("tree");
    const clients = await connectIn(ch, "AS", 2);
    await ingest(range(1, 3).map((n) => event(ch, n)));
    for (const c of clients) await c.waitForEvents(3);
    await evictDurableObject(stub(fanoutName(ch, "as", 0)));
    await ingest(range(4, 6).map((n) => event(ch, n)));
    for (const c of clients) {
      expect(seqs(await c.waitForEvents(6))).toEqual(range(1, 6));
      expect(c.closed).toBeUndefined();
    }
  });

  it("numbers on from the true head after an eviction between counter writes (no duplicate, no gap)", async () => {
    const ch = freshChannel("tree");
    const clients = await connectIn(ch, "OC", 2);
    // Separate batches within a second: the fan-out object's counters may lag its copies (COUNTERS_WRITE_MS, and a stats report
    // writes them); its head after the eviction must be the newest copy either way.
    for (const n of range(1, 3)) expect((await ingest([event(ch, n)])).status).toBe(200);
    for (const c of clients) await c.waitForEvents(3);
    await evictDurableObject(stub(fanoutName(ch, "oc", 0)));
    for (const n of range(4, 6)) expect((await ingest([event(ch, n)])).status).toBe(200);
    for (const c of clients) expect(seqs(await c.waitForEvents(6))).toEqual(range(1, 6));
    expect((await stub(fanoutName(ch, "oc", 0)).stats()).headSeq).toBe(6);
  });

  it("resumes on an object the client never used, in another region", async () => {
    const ch = freshChannel("tree");
    const [a] = await connectIn(ch, "EU", 1);
    await ingest(range(1, 5).map((n) => event(ch, n)));
    await a!.waitForEvents(5);
    a!.close();
    const [b] = await connectIn(ch, "OC", 1, { since: 2 });
    expect(seqs(await b!.waitForEvents(3))).toEqual([3, 4, 5]);
    await ingest([event(ch, 6)]);
    expect(seqs(await b!.waitForEvents(4))).toEqual([3, 4, 5, 6]);
  });

  it("sends reset when the history cannot serve the resume point (HISTORY_MAX_EVENTS=50)", async () => {
    const ch = freshChannel("tree");
    await ingest(range(1, 60).map((n) => event(ch, n)));
    const [c] = await connectIn(ch, "SA", 1, { since: 3 });
    expect(await c!.waitForType("reset")).toMatchObject({ reason: "history_expired", headSeq: 60, oldestSeq: 11 });
    await ingest([event(ch, 61)]);
    expect(seqs(await c!.waitForEvents(1))).toEqual([61]);
  });

  it("stops handing off to an object whose sockets are all gone", async () => {
    const ch = freshChannel("tree");
    const [c] = await connectIn(ch, "AF", 1);
    const name = fanoutName(ch, "af", 0);
    await ingest([event(ch, 1)]);
    await c!.waitForEvents(1);
    c!.close();
    await c!.waitForClose().catch(() => undefined);
    const attached = () => runInDurableObject(stub(ch), (_o, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM fanouts").one().n);
    await waitUntil("the detach", async () => (await attached()) === 0);
    const before = (await stub(name).stats()).headSeq;
    await ingest([event(ch, 2)]);
    expect((await stub(ch).stats()).headSeq).toBe(2); // stored by the ordering object…
    expect((await stub(name).stats()).headSeq).toBe(before); // …and not handed to the empty fan-out object
  });

  it("retries a failed hand-off from the ordering object's alarm (TEST_FAIL_CHANNELS fails every hand-off to one object)", async () => {
    const ch = "tree.handoff-fails";
    const [c] = await connectIn(ch, undefined, 1);
    const failing = () =>
      runInDurableObject(stub(ch), (_o, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM fanouts WHERE failing = 1").one().n);
    // Stored: the ingest does not wait for the hand-off, and its failure is not the ingest's.
    expect((await ingest(range(1, 3).map((n) => event(ch, n)))).status).toBe(200);
    expect((await stub(ch).stats()).headSeq).toBe(3);
    await waitUntil("the failed hand-off to be marked", async () => (await failing()) === 1);
    // The alarm's retry asks the object to catch up, which it does by pulling the range.
    expect(seqs(await c!.waitForEvents(3, 5000))).toEqual([1, 2, 3]);
    await waitUntil("the retry to succeed", async () => (await failing()) === 0);
  });

  it("answers an ingest without waiting for a fan-out object that is slow to take its hand-off", async () => {
    const { ch, slow, quick, held } = await oneHeldRegion();
    try {
      // Were the ingest to wait for every copy, none of these would answer before the release.
      for (let n = 1; n <= 3; n++) {
        let status: number | undefined;
        void ingest([event(ch, n)]).then((r) => (status = r.status));
        expect(await waitUntil(`ingest ${n} to answer while its hand-off is held`, () => status)).toBe(200);
      }
      // The other object got the first batch; hand-offs run in order, so the rest wait behind the held one.
      expect(seqs(await quick.waitForEvents(1))).toEqual([1]);
    } finally {
      await held.releaseHandOffs();
    }
    for (const c of [slow, quick]) expect(seqs(await c.waitForEvents(3))).toEqual([1, 2, 3]);
  });

  it("catches up the hand-offs an ordering object's restart lost, with no further event", async () => {
    const { ch, slow, quick, held } = await oneHeldRegion();
    for (let n = 1; n <= 3; n++) expect((await ingest([event(ch, n)])).status).toBe(200);
    // Batch 1 is out (one object holds it); 2 and 3 wait in the ordering object's memory…
    expect(seqs(await quick.waitForEvents(1))).toEqual([1]);
    // …and are gone with its restart. No event follows that would show the gap.
    // (ctx.abort() resets the object as a crash would; evictDurableObject waits for the held call.)
    await expect(runInDurableObject(stub(ch), (_o, state) => state.abort("a restart, on purpose"))).rejects.toThrow("a restart, on purpose");
    await held.releaseHandOffs();
    for (const c of [slow, quick]) expect(seqs(await c.waitForEvents(3, 8_000))).toEqual([1, 2, 3]);
  });

  it("shows a tree channel as one channel in /stats, with connections per object and region", async () => {
    const ch = freshChannel("tree");
    const clients = [...(await connectIn(ch, "EU", 3)), ...(await connectIn(ch, "NA", 1))];
    await ingest(range(1, 2).map((n) => event(ch, n)));
    for (const c of clients) await c.waitForEvents(2);
    const admin = { authorization: `Bearer ${TEST_BINDINGS.ADMIN_TOKEN}` };
    const mine = await waitUntil("the tree channel's roll-ups", async () => {
      const body = (await (await fetchWorker("/stats", { headers: admin })).json()) as StatsReport;
      const s = body.channels.find((x) => x.channel === ch);
      return s && s.connections === 4 && s.objects?.length === 4 ? s : undefined;
    });
    expect(mine).toMatchObject({ events: 2, headSeq: 2, connections: 4 });
    expect(
      mine
        .objects!.filter((o) => o.region === "eu")
        .map((o) => o.connections)
        .sort(),
    ).toEqual([1, 2]);
    expect(mine.objects!.find((o) => o.region === "na")!.connections).toBe(1);
    expect(mine.objects!.find((o) => o.object === "(ordering)")!.connections).toBe(0);
  });
});

describe("gap markers (a replication slot Postgres invalidated lost events: relay/gaps.ts)", () => {
  it("resets live sockets with source_gap in their place among the events, resets a resume from before the gap, and resumes after it", async () => {
    const ch = freshChannel("gap");
    const live = await connect(ch);
    await ingest(range(1, 3).map((n) => event(ch, n)));
    await live.waitForEvents(3);
    // The marker takes seq 4, ahead of the batch's events (5, 6).
    expect((await ingest([event(ch, 4), event(ch, 5)], { gaps: [ch] })).status).toBe(200);
    const reset = await live.waitForType("reset");
    expect(reset).toEqual({ type: "reset", reason: "source_gap", headSeq: 4, oldestSeq: 4 });
    const evs = await live.waitForEvents(5);
    expect(seqs(evs)).toEqual([1, 2, 3, 5, 6]);
    // The reset came after seq 3 and before seq 5.
    const order = live.messages
      .filter((m) => m.type !== "welcome")
      .map((m) => (m.type === "reset" ? "reset" : m.type === "events" ? m.events.map((e) => e.seq).join(",") : m.type));
    expect(order.join(" ")).toMatch(/3 reset 5/);
    // A client that saw seq 2 cannot be replayed across the gap; one that reloaded at 4 resumes normally.
    const behind = await connect(ch, { since: 2 });
    expect(await behind.waitForType("reset")).toMatchObject({ reason: "source_gap", headSeq: 6 });
    expect(behind.events).toEqual([]);
    const after = await connect(ch, { since: 4 });
    expect(seqs(await after.waitForEvents(2))).toEqual([5, 6]);
    expect(after.messages.some((m) => m.type === "reset")).toBe(false);
    // A resent batch (the same id after a lost answer) adds no second marker.
    const batchId = crypto.randomUUID();
    expect((await ingest([], { gaps: [ch], batchId })).status).toBe(200);
    expect((await ingest([], { gaps: [ch], batchId })).status).toBe(409);
    await live.waitFor("the second reset", () => live.messages.filter((m) => m.type === "reset").length === 2);
    await ingest([event(ch, 7)]);
    expect(seqs(await live.waitForEvents(6)).at(-1)).toBe(8);
    expect(live.messages.filter((m) => m.type === "reset")).toHaveLength(2);
  });

  it("reaches sockets on every fan-out object of a tree channel", async () => {
    const ch = freshChannel("tree");
    const clients = [...(await connectIn(ch, "EU", 3)), ...(await connectIn(ch, "NA", 1))];
    await ingest([event(ch, 1)]);
    for (const c of clients) await c.waitForEvents(1);
    expect((await ingest([event(ch, 2)], { gaps: [ch] })).status).toBe(200);
    for (const c of clients) {
      expect(await c.waitForType("reset")).toMatchObject({ reason: "source_gap", headSeq: 2 });
      expect(seqs(await c.waitForEvents(2))).toEqual([1, 3]);
    }
  });

  it("refuses a batch with neither events nor gaps, naming the field", async () => {
    const res = await ingest([]);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("INVALID_BATCH");
    expect(body.error.message).toContain("events or gaps");
  });
});
