/**
 * Protocol conformance: docs/protocol.md, case by case, checked against the
 * Worker (the deploy bundle on Miniflare, real TCP) through raw WebSockets
 * (test/support/raw-ws.ts: RFC 6455 on a bare socket) and plain HTTP only,
 * no SDK. Each case names the section of docs/protocol.md it checks, so a
 * third-party client author can read what the server promises and what to
 * expect of it. Events come from the publish API (docs/protocol.md,
 * "Publish API"); the stack's history holds 20 events per channel.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { mintToken } from "../../shared/token";
import { useStack } from "../support/stack";
import { waitUntil } from "../support/wait";
import { RawWs } from "../support/raw-ws";

const opened: RawWs[] = [];
const fx = useStack(
  "conformance",
  {
    runtime: "miniflare",
    workerVars: {
      HISTORY_MAX_EVENTS: "20",
      PRESENCE_CHANNELS: "conf.room.*",
      PRESENCE_BATCH_MS: "50",
      FLOW_SOCKET_BYTES: "16384",
      FLOW_GRACE_MS: "200",
    },
  },
  () => opened.forEach((w) => w.destroy()),
);

let n = 0;
const channel = (prefix = "conf") => `${prefix}.c${Date.now().toString(36)}${(n++).toString(36)}`;
const token = (o: { sub?: string; channels?: string[]; ttlSeconds?: number; claims?: Record<string, unknown> } = {}) =>
  mintToken({ secret: fx.stack.secrets.JWT_SECRET, sub: o.sub ?? "author", channels: o.channels ?? ["conf.*"], ttlSeconds: o.ttlSeconds, claims: o.claims });
const expOf = (t: string) => (JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString()) as { exp: number }).exp;

async function open(
  ch: string,
  o: { token?: string; query?: string; headers?: Record<string, string>; via?: "protocol" | "header" | "query" } = {},
): Promise<RawWs> {
  const t = o.token ?? (await token());
  const via = o.via ?? "protocol";
  const q = new URLSearchParams(o.query ?? "");
  if (via === "query") q.set("token", t);
  const headers: Record<string, string> = { ...o.headers };
  if (via === "protocol") headers["Sec-WebSocket-Protocol"] = `notifiws.v1, bearer.${t}`;
  if (via === "header") headers.Authorization = `Bearer ${t}`;
  const ws = await RawWs.open(fx.stack.workerUrl, `/ws/${ch}${q.size ? `?${q}` : ""}`, headers);
  opened.push(ws);
  await ws.waitForType("welcome");
  return ws;
}

/** The refusal an upgrade gets: its status and JSON code. */
async function refusal(ch: string, o: { token?: string | null; query?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...o.headers };
  const t = o.token === undefined ? await token() : o.token;
  if (t !== null) headers["Sec-WebSocket-Protocol"] = `notifiws.v1, bearer.${t}`;
  try {
    const ws = await RawWs.open(fx.stack.workerUrl, `/ws/${ch}${o.query ? `?${o.query}` : ""}`, headers);
    ws.destroy();
    return { status: 101, code: undefined };
  } catch (err) {
    const e = err as { status: number; body: string };
    return { status: e.status, code: (JSON.parse(e.body) as { error: { code: string } }).error.code };
  }
}

async function publish(ch: string, count: number, data: (i: number) => Record<string, unknown> = (i) => ({ i })): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${fx.stack.workerUrl}/api/channels/${ch}/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${fx.stack.secrets.PUBLISH_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ data: data(i) }),
    });
    expect(res.status).toBe(200);
  }
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe("Writing a client / Connecting: authentication places and the order of checks", () => {
  it("Connecting: the token works from the subprotocol (only notifiws.v1 is echoed), the Authorization header and ?token=", async () => {
    const ch = channel();
    const a = await open(ch, { via: "protocol" });
    expect(a.responseHead.toLowerCase()).toContain("sec-websocket-protocol: notifiws.v1");
    expect(a.responseHead).not.toContain("bearer.");
    await open(ch, { via: "header" });
    await open(ch, { via: "query" });
  });

  it("Writing a client (order of checks): channel name 400, origin 403 before the token, token 401, channel 403, plain GET 426 with valid credentials and 401 without", async () => {
    expect(await refusal("bad channel!".replace(" ", "%20"))).toEqual({ status: 400, code: "BAD_CHANNEL" });
    expect(await refusal(channel(), { token: null, headers: { Origin: "https://evil.example" } })).toEqual({ status: 403, code: "ORIGIN_NOT_ALLOWED" });
    expect(await refusal(channel(), { token: null })).toEqual({ status: 401, code: "TOKEN_MISSING" });
    expect(await refusal(channel(), { token: "not.a.jwt" })).toEqual({ status: 401, code: "TOKEN_INVALID" });
    expect(await refusal(channel(), { token: await token({ ttlSeconds: -10 }) })).toEqual({ status: 401, code: "TOKEN_EXPIRED" });
    expect(await refusal("other.x", {})).toEqual({ status: 403, code: "CHANNEL_FORBIDDEN" });
    expect(await refusal(channel(), { query: "since=-1" })).toEqual({ status: 400, code: "BAD_SINCE" });
    expect(await refusal(channel(), { query: "filter=%7B" })).toEqual({ status: 400, code: "BAD_FILTER" });
    expect(await refusal(channel(), { query: "ack=yes" })).toEqual({ status: 400, code: "BAD_REQUEST" });
    expect(await refusal(channel(), { query: "presence=1" })).toEqual({ status: 400, code: "PRESENCE_DISABLED" });
    const plain = async (t?: string) => {
      const res = await fetch(`${fx.stack.workerUrl}/ws/${channel()}`, { headers: t ? { authorization: `Bearer ${t}` } : {} });
      return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
    };
    expect(await plain()).toEqual({ status: 401, code: "TOKEN_MISSING" });
    expect(await plain(await token())).toEqual({ status: 426, code: "UPGRADE_REQUIRED" });
  });
});

describe("Server → client messages: welcome, events, seq, caught_up, reset", () => {
  it("welcome: first frame, with the channel, a connection id, the head and the token's expiry", async () => {
    const ch = channel();
    await publish(ch, 2);
    const t = await token();
    const ws = await open(ch, { token: t });
    expect(ws.frames[0]!.json).toMatchObject({ type: "welcome", channel: ch, headSeq: 2, expiresAt: expOf(t) });
    expect(typeof ws.frames[0]!.json.connectionId).toBe("string");
  });

  it("events: every subscriber sees the same seqs, contiguous, in order; one publish is one event", async () => {
    const ch = channel();
    const [a, b] = [await open(ch), await open(ch)];
    await publish(ch, 5);
    await a.waitFor("5 events", () => a.seqs.length >= 5);
    await b.waitFor("5 events", () => b.seqs.length >= 5);
    expect(a.seqs).toEqual(range(1, 5));
    expect(b.seqs).toEqual(range(1, 5));
  });

  it("Writing a client (the resume point): welcome.headSeq is the resume point before any event; reconnecting with it loses nothing; caught_up marks the end of the replay", async () => {
    const ch = channel();
    await publish(ch, 3);
    const first = await open(ch);
    const resumeFrom = first.frames[0]!.json.headSeq as number;
    first.destroy(); // cut before any event
    await publish(ch, 2);
    const again = await open(ch, { query: `since=${resumeFrom}` });
    const caught = await again.waitForType("caught_up");
    expect(again.seqs).toEqual([4, 5]);
    expect(caught).toEqual({ type: "caught_up", headSeq: 5 });
    const caughtAt = again.frames.findIndex((f) => f.json.type === "caught_up");
    await publish(ch, 1);
    await again.waitFor("the live event", () => again.seqs.includes(6));
    expect(again.frames.findIndex((f) => f.json.type === "events" && (f.json.events as { seq: number }[])[0]!.seq === 6)).toBeGreaterThan(caughtAt);
  });

  it("Writing a client (dedupe): a resume on a live connection replays from its point, the client drops seq ≤ its own; caught_up follows, also with nothing to replay", async () => {
    const ch = channel();
    const ws = await open(ch);
    await publish(ch, 4);
    await ws.waitFor("4 events", () => ws.seqs.length >= 4);
    ws.send(JSON.stringify({ type: "resume", since: 2 }));
    await ws.waitForType("caught_up");
    expect(ws.seqs).toEqual([1, 2, 3, 4, 3, 4]); // the replay repeats 3 and 4
    const seen = new Set<number>();
    expect(ws.seqs.filter((s) => !seen.has(s) && seen.add(s))).toEqual([1, 2, 3, 4]);
    const quiet = await open(ch, { query: "since=4" });
    expect(await quiet.waitForType("caught_up")).toEqual({ type: "caught_up", headSeq: 4 });
    expect(quiet.seqs).toEqual([]);
  });

  it("Writing a client (a seq jump): with a filter seqs jump over what did not match; the replay applies the filter too", async () => {
    const ch = channel();
    const filter = encodeURIComponent(JSON.stringify({ where: [{ field: "i", op: "gte", value: 3 }] }));
    const live = await open(ch, { query: `filter=${filter}` });
    await publish(ch, 5);
    await live.waitFor("2 matching events", () => live.seqs.length >= 2);
    expect(live.seqs).toEqual([4, 5]); // i = 3 and 4 were seqs 4 and 5
    const replay = await open(ch, { query: `since=0&filter=${filter}` });
    await replay.waitForType("caught_up");
    expect(replay.seqs).toEqual(live.seqs);
  });

  it("reset: a resume point ahead of the head, or behind the kept history (20 events here), gets a reset instead of a replay", async () => {
    const ch = channel();
    await publish(ch, 25);
    const ahead = await open(ch, { query: "since=99" });
    expect(await ahead.waitForType("reset")).toMatchObject({ reason: "ahead_of_head", headSeq: 25 });
    const behind = await open(ch, { query: "since=1" });
    expect(await behind.waitForType("reset")).toMatchObject({ reason: "history_expired", headSeq: 25, oldestSeq: 6 });
    expect(behind.of("caught_up")).toEqual([]);
  });

  it("Values: a number a float cannot hold arrives digit for digit", async () => {
    const ch = channel();
    const ws = await open(ch);
    const res = await fetch(`${fx.stack.workerUrl}/api/channels/${ch}/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${fx.stack.secrets.PUBLISH_KEY}`, "content-type": "application/json" },
      body: '{"data":{"big":12345678901234567890123,"price":0.10,"nested":{"x":[1e400,-0.0]}}}',
    });
    expect(res.status).toBe(200);
    await ws.waitForType("events");
    const text = ws.frames.find((f) => f.json.type === "events")!.text;
    expect(text).toContain('"big":12345678901234567890123');
    expect(text).toContain('"price":0.10');
    expect(text).toContain('"x":[1e400,-0.0]');
  });
});

describe("Client → server messages: heartbeats, errors, limits", () => {
  it("ping: the exact ping is answered and never counted; any other spelling is answered and counted against the rate limit (close 4008)", async () => {
    const ch = channel();
    const exact = await open(ch);
    for (let i = 0; i < 60; i++) exact.send('{"type":"ping"}'); // three times the burst of 20
    await exact.waitFor("60 pongs", () => exact.of("pong").length >= 60);
    expect(exact.closeFrame).toBeUndefined();
    const spaced = await open(ch);
    for (let i = 0; i < 30; i++) spaced.send('{"type": "ping"}');
    await spaced.waitFor("a close", () => spaced.closeFrame);
    expect(spaced.closeFrame!.code).toBe(4008);
    expect(spaced.of("pong").length).toBeGreaterThanOrEqual(1);
  });

  it("error: bad JSON, a message that is not an object, an unknown type, a known type with bad fields and binary frames get error frames; the connection stays open", async () => {
    const ch = channel();
    const ws = await open(ch);
    ws.send("{nope");
    ws.send("[1,2]");
    ws.send('{"type":"dance"}');
    ws.send('{"type":"resume","since":-1}');
    ws.sendBinary(Buffer.from([1, 2, 3]));
    await ws.waitFor("five errors", () => ws.of("error").length >= 5);
    const errors = ws.of("error");
    expect(errors.map((e) => e.code)).toEqual(["BAD_JSON", "UNKNOWN_TYPE", "UNKNOWN_TYPE", "BAD_MESSAGE", "BAD_MESSAGE"]);
    expect(errors[1]!.message).toMatch(/JSON object/);
    expect(errors[1]!.message).toMatch(/an array/);
    ws.send('{"type":"ping"}');
    await ws.waitForType("pong");
    expect(ws.closeFrame).toBeUndefined();
  });
});

describe("Close codes: every server close, its frame and its TCP end", () => {
  /** A close the server starts inside the socket's own message event completes at once: frame and TCP end within 2 s. */
  const prompt = (ws: RawWs, from: number) => {
    expect(ws.closeFrame!.at - from).toBeLessThan(2000);
    return waitUntil("the TCP end", () => ws.tcpEndAt !== undefined && ws.tcpEndAt - from < 2000, 3000);
  };

  it("1009: a message over MAX_CLIENT_MESSAGE_BYTES (4096)", async () => {
    const ws = await open(channel());
    const at = Date.now();
    ws.send(JSON.stringify({ type: "ping", pad: "x".repeat(5000) }));
    await ws.waitFor("the close frame", () => ws.closeFrame);
    expect(ws.closeFrame!.code).toBe(1009);
    await prompt(ws, at);
  });

  it("refresh: a later or an earlier expiry is accepted (refreshed.expiresAt is the new one); another subject, a channel it does not allow or a bad token close with 4003", async () => {
    const ch = channel();
    const ws = await open(ch, { token: await token({ ttlSeconds: 600 }) });
    const longer = await token({ ttlSeconds: 3600 });
    ws.send(JSON.stringify({ type: "refresh", token: longer }));
    await ws.waitFor("refreshed", () => ws.of("refreshed")[0]);
    const shorter = await token({ ttlSeconds: 120 });
    ws.send(JSON.stringify({ type: "refresh", token: shorter }));
    await ws.waitFor("two refreshed", () => ws.of("refreshed").length >= 2);
    expect(ws.of("refreshed").map((r) => r.expiresAt)).toEqual([expOf(longer), expOf(shorter)]);
    for (const bad of [await token({ sub: "someone-else" }), await token({ channels: ["elsewhere"] }), "garbage"]) {
      const victim = await open(ch);
      const at = Date.now();
      victim.send(JSON.stringify({ type: "refresh", token: bad }));
      await victim.waitFor("the close frame", () => victim.closeFrame);
      expect(victim.closeFrame!.code).toBe(4003);
      await prompt(victim, at);
    }
  });

  it("4001: the close frame arrives within 2 s of exp; nothing is sent after it; the next connection resumes what was committed meanwhile", async () => {
    const ch = channel();
    const t = await token({ ttlSeconds: 3 });
    const ws = await open(ch, { token: t });
    await publish(ch, 1);
    await ws.waitFor("the event", () => ws.seqs.length === 1);
    await ws.waitFor("the close frame", () => ws.closeFrame, 8000);
    expect(ws.closeFrame!.code).toBe(4001);
    expect(ws.closeFrame!.at - expOf(t) * 1000).toBeLessThan(2000);
    await publish(ch, 2);
    const again = await open(ch, { query: "since=1" });
    await again.waitForType("caught_up");
    expect(again.seqs).toEqual([2, 3]);
    expect(ws.seqs).toEqual([1]);
  });

  it("4009: a connection with ack=1 that leaves more than its budget unacknowledged past the grace period (16 KiB, 200 ms here) gets the close frame", async () => {
    const ch = channel();
    const ws = await open(ch, { query: "ack=1" });
    const blob = "x".repeat(6000);
    await publish(ch, 3, () => ({ blob }));
    await new Promise((r) => setTimeout(r, 300)); // past the grace period, still unacknowledged
    await publish(ch, 3, () => ({ blob }));
    await ws.waitFor("the close frame", () => ws.closeFrame);
    expect(ws.closeFrame!.code).toBe(4009);
  });
});

describe("Presence", () => {
  it("Presence: the whole state first, then diffs; presence uses no seq", async () => {
    const ch = channel("conf.room");
    const a = await open(ch, { query: "presence=1", token: await token({ sub: "ana" }) });
    await a.waitFor("a state with ana", () => a.of("presence").find((p) => (p.members as { sub: string }[]).some((m) => m.sub === "ana")));
    await open(ch, { query: "presence=1", token: await token({ sub: "bob" }) });
    await a.waitFor("bob's join", () => a.of("presence_diff").find((d) => (d.joins as { sub: string }[]).some((m) => m.sub === "bob")));
    await publish(ch, 1);
    await a.waitFor("the event", () => a.seqs.length === 1);
    expect(a.seqs).toEqual([1]);
  });
});

describe("Rows from the edge / Snapshot, then live", () => {
  it("rows plus events after fromSeq equal the table", async () => {
    const table = `conf_rows_${createHash("sha1").update(channel()).digest("hex").slice(0, 8)}`;
    await fx.db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await fx.db.query(`SELECT notifiws.watch('${table}', '${table.replace(/_/g, ".")}', ARRAY['id','v'])`);
    const ch = table.replace(/_/g, ".");
    await fx.db.query(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'b')`);
    const t = await token({ channels: ["*"] });
    const res = await fetch(`${fx.stack.workerUrl}/v1/channels/${ch}/rows`, { headers: { authorization: `Bearer ${t}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { rows: { id: string; v: string }[]; fromSeq: number };
    const ws = await open(ch, { token: t, query: `since=${body.fromSeq}` });
    await ws.waitForType("caught_up");
    await fx.db.query(`UPDATE ${table} SET v = 'c' WHERE id = 2`);
    await ws.waitFor("the update", () => ws.of("events").some((f) => (f.events as { data: { v: string } }[]).some((e) => e.data.v === "c")));
    const rows = new Map(body.rows.map((r) => [String(r.id), r.v]));
    for (const f of ws.of("events")) for (const e of f.events as { data: { id: string; v: string } }[]) rows.set(String(e.data.id), e.data.v);
    const db = (await fx.db.query<{ id: number; v: string }>(`SELECT id, v FROM ${table} ORDER BY id`)).rows;
    expect([...rows.entries()].sort()).toEqual(db.map((r) => [String(r.id), r.v]));
  });
});
