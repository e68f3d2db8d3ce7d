import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { testStub } from "./worker";
import { CloseCode, PING_FRAME } from "../../shared/protocol";
import { connect, event, freshChannel, ingest, range, seqs, token } from "../support/worker-client";

const stubFor = (ch: string) => testStub(env, ch);

describe("fan-out and order", () => {
  it("delivers every event to every subscriber in the same order", async () => {
    const ch = freshChannel();
    const clients = await Promise.all(range(1, 40).map(() => connect(ch)));
    for (let b = 0; b < 5; b++) expect((await ingest(range(b * 4 + 1, b * 4 + 4).map((n) => event(ch, n)))).status).toBe(200);
    for (const c of clients) {
      const evs = await c.waitForEvents(20);
      expect(seqs(evs)).toEqual(range(1, 20));
      expect(evs.map((e) => e.id)).toEqual(range(1, 20).map((n) => `${ch}-${n}`));
    }
    clients.forEach((c) => c.close());
  });

  it("does not deliver a channel's events to another channel", async () => {
    const a = freshChannel();
    const b = freshChannel();
    const ca = await connect(a);
    const cb = await connect(b);
    await ingest([event(a, 1), event(b, 1)]);
    await ca.waitForEvents(1);
    await cb.waitForEvents(1);
    expect(ca.events.map((e) => e.channel)).toEqual([a]);
    expect(cb.events.map((e) => e.channel)).toEqual([b]);
  });

  it("sends one frame for a burst of events arriving together", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    await ingest(range(1, 25).map((n) => event(ch, n)));
    await c.waitForEvents(25);
    expect(c.messages.filter((m) => m.type === "events")).toHaveLength(1);
  });

  it("delivers an event seen twice (at-least-once input) exactly once", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    await ingest([event(ch, 1), event(ch, 2)]);
    const res = await ingest([event(ch, 2), event(ch, 3)]);
    expect(await res.json()).toMatchObject({ accepted: 1, duplicates: 1 });
    await c.waitForEvents(3);
    expect(seqs(c.events)).toEqual([1, 2, 3]);
    expect(c.events.map((e) => e.id)).toEqual([`${ch}-1`, `${ch}-2`, `${ch}-3`]);
  });

  it("counts a repeated id inside one batch once", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    const res = await ingest([event(ch, 1), event(ch, 1), event(ch, 2)]);
    expect(await res.json()).toMatchObject({ accepted: 2, duplicates: 1 });
    expect(seqs(await c.waitForEvents(2))).toEqual([1, 2]);
  });

  it("carries a large row intact", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    const big = "é".repeat(20_000);
    await ingest([event(ch, 1, { data: { big } })]);
    const [e] = await c.waitForEvents(1);
    expect(e!.data).toEqual({ big });
  });
});

describe("resume", () => {
  it("resumes from ?since with no gap and no duplicate", async () => {
    const ch = freshChannel();
    const first = await connect(ch);
    await ingest(range(1, 5).map((n) => event(ch, n)));
    await first.waitForEvents(5);
    first.close();
    await ingest(range(6, 10).map((n) => event(ch, n)));
    const again = await connect(ch, { since: 5 });
    await again.waitForEvents(5);
    await ingest([event(ch, 11)]);
    expect(seqs(await again.waitForEvents(6))).toEqual(range(6, 11));
  });

  it("resumes with a resume message on an open connection", async () => {
    const ch = freshChannel();
    await ingest(range(1, 4).map((n) => event(ch, n)));
    const c = await connect(ch);
    c.send(JSON.stringify({ type: "resume", since: 2 }));
    expect(seqs(await c.waitForEvents(2))).toEqual([3, 4]);
  });

  it("sends reset when since is older than the retained history (HISTORY_MAX_EVENTS=50)", async () => {
    const ch = freshChannel();
    await ingest(range(1, 60).map((n) => event(ch, n)));
    const c = await connect(ch, { since: 3 });
    const reset = await c.waitForType("reset");
    expect(reset).toMatchObject({ reason: "history_expired", headSeq: 60, oldestSeq: 11 });
    await ingest([event(ch, 61)]);
    expect(seqs(await c.waitForEvents(1))).toEqual([61]);
  });

  it("replays the whole retained window when since is exactly its edge", async () => {
    const ch = freshChannel();
    await ingest(range(1, 60).map((n) => event(ch, n)));
    const c = await connect(ch, { since: 10 });
    expect(seqs(await c.waitForEvents(50))).toEqual(range(11, 60));
    expect(c.messages.some((m) => m.type === "reset")).toBe(false);
  });

  it("sends reset when since is ahead of the channel", async () => {
    const ch = freshChannel();
    await ingest([event(ch, 1)]);
    const c = await connect(ch, { since: 99 });
    expect(await c.waitForType("reset")).toMatchObject({ reason: "ahead_of_head", headSeq: 1 });
  });
});

describe("filters", () => {
  it("delivers only matching events, and filters replays too", async () => {
    const ch = freshChannel("inventory");
    const filter = { table: "inventory", where: [{ field: "stock", op: "lt", value: 10 }] };
    const evs = [
      event(ch, 1, { table: "public.inventory", data: { sku: "a", stock: 50 } }),
      event(ch, 2, { table: "public.inventory", data: { sku: "b", stock: 3 } }),
      event(ch, 3, { table: "public.ventas", data: { stock: 1 } }),
    ];
    const live = await connect(ch, { filter });
    const all = await connect(ch);
    await ingest(evs);
    await all.waitForEvents(3);
    expect(seqs(await live.waitForEvents(1))).toEqual([2]);
    await ingest([event(ch, 4, { table: "public.inventory", data: { sku: "c", stock: 9 } })]);
    expect(seqs(await live.waitForEvents(2))).toEqual([2, 4]);
    const replay = await connect(ch, { filter, since: 0 });
    expect(seqs(await replay.waitForEvents(2))).toEqual([2, 4]);
  });
});

describe("client messages", () => {
  it("answers heartbeat pings by auto-response, without running the object's message handler", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    const sentBefore = (await stubFor(ch).stats()).messagesSent;
    // Three times the rate-limit burst (20): pings reaching webSocketMessage would close the socket with 4008.
    for (let i = 0; i < 60; i++) c.send(PING_FRAME);
    await c.waitFor("60 pongs", () => c.messages.filter((m) => m.type === "pong").length >= 60 || undefined);
    expect(c.closed).toBeUndefined();
    // The object sent nothing itself: every pong came from the runtime.
    expect((await stubFor(ch).stats()).messagesSent).toBe(sentBefore);
    const answered = await runInDurableObject(stubFor(ch), (_o, state) => state.getWebSockets().map((ws) => state.getWebSocketAutoResponseTimestamp(ws)));
    expect(answered[0]).toBeInstanceOf(Date);
  });

  it("answers malformed JSON and unknown types with an error and stays open", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    c.send("{oops");
    c.send(JSON.stringify({ type: "launch" }));
    c.send(JSON.stringify({ type: "resume", since: "x" }));
    const errors = await c.waitFor("three errors", () => {
      const e = c.messages.filter((m) => m.type === "error");
      return e.length >= 3 ? e : undefined;
    });
    expect(errors.map((e) => (e as { code: string }).code)).toEqual(["BAD_JSON", "UNKNOWN_TYPE", "BAD_MESSAGE"]);
    await ingest([event(ch, 1)]);
    await c.waitForEvents(1);
    expect(c.closed).toBeUndefined();
  });

  it("answers a type that is not a string (an object with toString, an array, a number, null, none, a bare array) with UNKNOWN_TYPE and stays open", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    const frames = ['{"type":{"toString":1}}', '{"type":{"valueOf":{}}}', '{"type":["ping"]}', '{"type":5}', '{"type":null}', "{}", "[1,2]", '"ping"'];
    for (const f of frames) c.send(f);
    const errors = await c.waitFor("an error per frame", () => {
      const e = c.messages.filter((m) => m.type === "error");
      return e.length >= frames.length ? e : undefined;
    });
    expect(errors.map((e) => (e as { code: string }).code)).toEqual(frames.map(() => "UNKNOWN_TYPE"));
    await ingest([event(ch, 1)]);
    await c.waitForEvents(1);
    expect(c.closed).toBeUndefined();
  });

  it("closes with 1009 on an oversize message", async () => {
    const c = await connect(freshChannel());
    c.send(JSON.stringify({ type: "refresh", token: "x".repeat(5000) }));
    expect((await c.waitForClose()).code).toBe(CloseCode.MESSAGE_TOO_BIG);
  });

  it("closes with 4008 when a client exceeds the rate limit", async () => {
    const c = await connect(freshChannel());
    for (let i = 0; i < 40; i++) c.send(JSON.stringify({ type: "resume", since: 0 }));
    expect((await c.waitForClose()).code).toBe(CloseCode.RATE_LIMITED);
  });
});

describe("token lifetime", () => {
  it("closes a connection with 4001 when its token expires", async () => {
    const c = await connect(freshChannel(), { token: await token({ expSeconds: 1 }) });
    expect((await c.waitForClose(5000)).code).toBe(CloseCode.TOKEN_EXPIRED);
  });

  it("extends a connection with a refresh for the same subject", async () => {
    const ch = freshChannel();
    const c = await connect(ch, { token: await token({ expSeconds: 60 }) });
    const later = Math.floor(Date.now() / 1000) + 7200;
    c.send(JSON.stringify({ type: "refresh", token: await token({ expSeconds: 7200 }) }));
    const r = await c.waitForType("refreshed");
    expect(r.expiresAt).toBeGreaterThanOrEqual(later - 5);
    const exps = await runInDurableObject(stubFor(ch), (_o, state) => state.getWebSockets().map((ws) => (ws.deserializeAttachment() as { exp: number }).exp));
    expect(exps).toEqual([r.expiresAt]);
  });

  it("closes with 4003 on a refresh for another subject", async () => {
    const c = await connect(freshChannel());
    c.send(JSON.stringify({ type: "refresh", token: await token({ sub: "mallory" }) }));
    expect((await c.waitForClose()).code).toBe(CloseCode.FORBIDDEN);
  });
});

describe("eviction", () => {
  it("keeps sockets open across eviction and continues the sequence in order", async () => {
    const ch = freshChannel();
    const clients = await Promise.all(range(1, 3).map(() => connect(ch, { filter: { ops: ["insert"] } })));
    await ingest(range(1, 5).map((n) => event(ch, n)));
    for (const c of clients) await c.waitForEvents(5);
    await evictDurableObject(stubFor(ch));
    await ingest(range(6, 10).map((n) => event(ch, n)));
    await ingest([event(ch, 3)]); // a redelivered id after eviction is still a duplicate
    await ingest([event(ch, 11)]);
    for (const c of clients) {
      expect(seqs(await c.waitForEvents(11))).toEqual(range(1, 11));
      expect(c.closed).toBeUndefined();
    }
    const late = await connect(ch, { since: 0 });
    expect(seqs(await late.waitForEvents(11))).toEqual(range(1, 11));
  });
});
