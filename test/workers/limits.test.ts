/**
 * Production limits local workerd does not enforce: sizes in UTF-8 bytes,
 * one SQLite value under 2 MB, atomic batch storage, per-channel failure.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { HttpErrorBody, IngestResult } from "../../shared/protocol";
import { CONNECT_HEADER } from "../../src/channel-contract";
import { serializeEvent } from "../../src/deliver";
import { DEFAULT_MAX_EVENT_BYTES, PLATFORM_SQL_VALUE_MAX_BYTES, utf8Length } from "../../shared/limits";
import { connect, event, freshChannel, ingest, range, seqs, token } from "../support/worker-client";
import { waitUntil } from "../support/wait";

const stubFor = (ch: string) => env.CHANNEL.get(env.CHANNEL.idFromName(ch));
const errorOf = async (res: Response) => HttpErrorBody.parse(await res.json()).error;
/** The object's stored state: the batches its pages name, entry count and head, read from its SQLite (durable-objects/pages.ts). */
const storedState = (ch: string) =>
  runInDurableObject(stubFor(ch), (_o, state) => ({
    batches: state.storage.sql
      .exec<{ batch: string | null }>("SELECT DISTINCT json_extract(r.value, '$[2]') AS batch FROM pages, json_each(pages.runs) AS r")
      .toArray()
      .map((r) => r.batch),
    events: state.storage.sql.exec<{ n: number }>("SELECT coalesce(sum(last - first + 1), 0) AS n FROM pages").one().n,
    headSeq: Number(
      state.storage.sql.exec<{ s: number | null }>("SELECT max(last) AS s FROM pages").one().s ??
        (JSON.parse(String(state.storage.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'counters'").toArray()[0]?.v ?? "{}")) as { headSeq?: number })
          .headSeq ??
        0,
    ),
  }));

describe("event size, measured in UTF-8 bytes", () => {
  it("refuses an event over MAX_EVENT_BYTES by id (multibyte text under the cap in UTF-16 units) and applies nothing", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    // 600,000 × "é": 600,000 UTF-16 units (under the cap), 1,200,000 UTF-8 bytes (over it).
    const big = event(ch, 2, { data: { text: "é".repeat(600_000) } });
    expect(JSON.stringify(big).length).toBeLessThan(DEFAULT_MAX_EVENT_BYTES);
    const res = await ingest([event(ch, 1), big, event(ch, 3)]);
    expect(res.status).toBe(413);
    const err = await errorOf(res);
    expect(err.code).toBe("EVENT_TOO_LARGE");
    expect(err.eventIds).toEqual([big.id]);
    expect(err.message).toContain(big.id);
    // Nothing of the refused batch was applied: the resend without it starts at seq 1.
    expect((await ingest([event(ch, 1), event(ch, 3)])).status).toBe(200);
    const evs = await c.waitForEvents(2);
    expect(evs.map((e) => [e.seq, e.id])).toEqual([
      [1, `${ch}-1`],
      [2, `${ch}-3`],
    ]);
  });

  it("stores an event just under the cap whose escaped form would exceed one SQL value, intact", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    // Quotes double when the body is nested in a JSON array: 900 kB of body, 1.8 MB nested.
    const quotes = '"'.repeat(450_000);
    const res = await ingest([event(ch, 1, { data: { quotes } })]);
    expect(res.status).toBe(200);
    const [e] = await c.waitForEvents(1, 10_000);
    expect(e!.data).toEqual({ quotes });
  });

  it("splits a batch larger than one SQL value across statements and keeps its order", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    // Four events of 600 kB each: 2.4 MB in one bound value would exceed SQLite's 2 MB.
    const text = "ñ".repeat(300_000);
    const evs = range(1, 4).map((n) => event(ch, n, { data: { n, text } }));
    expect(utf8Length(JSON.stringify(evs))).toBeGreaterThan(PLATFORM_SQL_VALUE_MAX_BYTES);
    expect((await ingest(evs)).status).toBe(200);
    const got = await c.waitForEvents(4, 10_000);
    expect(seqs(got)).toEqual([1, 2, 3, 4]);
    expect(got.every((e) => e.data!.text === text)).toBe(true);
  });

  it("packs frames by bytes, not string length", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    // Three events of 100,000 "é": 300,000 UTF-16 units fit one 512 KiB frame, 600,000 bytes do not.
    const text = "é".repeat(100_000);
    await ingest(range(1, 3).map((n) => event(ch, n, { data: { text } })));
    await c.waitForEvents(3);
    const frames = c.raw.filter((f) => f.startsWith('{"type":"events"'));
    expect(frames.length).toBeGreaterThanOrEqual(2);
    for (const f of frames) expect(utf8Length(f)).toBeLessThanOrEqual(512 * 1024);
  });
});

describe("atomic batch storage", () => {
  it("leaves no trace of a batch whose storage fails, so its retry is stored (not answered as replayed)", async () => {
    const ch = freshChannel();
    const stub = stubFor(ch);
    const oversize = event(ch, 2, { data: { text: "€".repeat(400_000) } }); // 1.2 MB in UTF-8
    // The object's own guard (for callers other than the ingest route) fails the whole transaction.
    const failure = await stub.ingest(ch, [serializeEvent(event(ch, 1)), serializeEvent(oversize)], "batch-atomic").then(
      () => undefined,
      (err: Error) => err,
    );
    expect(failure?.message).toMatch(/MAX_EVENT_BYTES/);
    expect(await storedState(ch)).toEqual({ batches: [], events: 0, headSeq: 0 });
    const retry = await stub.ingest(ch, [serializeEvent(event(ch, 1))], "batch-atomic");
    expect(retry).toMatchObject({ replayed: false, accepted: 1, headSeq: 1 });
  });

  it("stores the healthy channels of a batch, names the failing one, and rolls the failing one back", async () => {
    const ok = freshChannel();
    const failing = "fail.always"; // TEST_FAIL_CHANNELS in the test bindings
    const before = await storedState(failing);
    const c = await connect(ok);
    const res = await ingest([event(ok, 1), { ...event(failing, 1), id: `${ok}-f1` }, event(ok, 2)], { batchId: `b-${ok}` });
    expect(res.status).toBe(503);
    const err = await errorOf(res);
    expect(err.code).toBe("CHANNEL_UNAVAILABLE");
    expect(err.failedChannels).toEqual([failing]);
    expect(err.channels).toEqual({ [ok]: { headSeq: 2 } });
    expect(seqs(await c.waitForEvents(2))).toEqual([1, 2]);
    const after = await storedState(failing);
    expect(after).toEqual(before);
    expect(after.batches).not.toContain(`b-${ok}`);
    // The same batch again: the stored channel says "already applied", the failing one fails again.
    const again = await ingest([event(ok, 1), { ...event(failing, 1), id: `${ok}-f1` }, event(ok, 2)], { batchId: `b-${ok}` });
    expect(again.status).toBe(503);
    expect((await errorOf(again)).channels).toEqual({ [ok]: { headSeq: 2 } });
  });

  it("answers a replayed batch 409 only when every channel already applied it", async () => {
    const a = freshChannel();
    const b = freshChannel();
    const batchId = `replay-${a}`;
    expect((await ingest([event(a, 1)], { batchId })).status).toBe(200);
    const mixed = await ingest([event(a, 1), event(b, 1)], { batchId });
    expect(mixed.status).toBe(200);
    expect(IngestResult.parse(await mixed.json()).channels[b]).toEqual({ headSeq: 1 });
    const replay = await ingest([event(a, 1), event(b, 1)], { batchId });
    expect(replay.status).toBe(409);
    expect((await errorOf(replay)).code).toBe("BATCH_REPLAYED");
  });
});

describe("sockets per object", () => {
  it("refuses a connection over MAX_SOCKETS_PER_OBJECT with 503 CHANNEL_FULL, and takes one again after a close", async () => {
    const ch = freshChannel();
    const clients = await Promise.all(range(1, 45).map(() => connect(ch)));
    const refused = await connect(ch).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/upgrade refused: 503 .*CHANNEL_FULL/);
    clients[0]!.close();
    await clients[0]!.waitForClose().catch(() => undefined);
    const again = await waitUntil("a free slot", () =>
      connect(ch).then(
        (c) => c,
        () => false as const,
      ),
    );
    expect(again.closed).toBeUndefined();
  });
});

describe("socket attachment size", () => {
  it("keeps attachments far below 16 KiB: the Worker bounds the token's claims, the object refuses anything over 8 KiB", async () => {
    const ch = freshChannel();
    // The Worker: a subject over 256 characters is a malformed token.
    const refused = await connect(ch, { token: await token({ sub: "u".repeat(9000) }), via: "header" }).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/upgrade refused: 401 .*TOKEN_INVALID/);
    // The object's own guard, for any other caller: 400 SESSION_TOO_LARGE and nothing accepted.
    const init = { channel: ch, sub: "u".repeat(9000), exp: Math.floor(Date.now() / 1000) + 60 };
    const res = await stubFor(ch).fetch(
      new Request("https://notifiws.test/ws/" + ch, { headers: { upgrade: "websocket", [CONNECT_HEADER]: JSON.stringify(init) } }),
    );
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe("SESSION_TOO_LARGE");
    expect(await runInDurableObject(stubFor(ch), (_o, state) => state.getWebSockets().length)).toBe(0);
    expect((await connect(ch)).closed).toBeUndefined();
  });
});
