/**
 * Presence (docs/protocol.md, "Presence"; durable-objects/presence.ts) with
 * the test bindings: channels room.* and tree.room.* (the latter on fan-out
 * objects of 2 sockets), 50 ms batches, a 400 ms grace period, 5 listed
 * members, PRESENCE_CLAIMS role,name. Each client's view is rebuilt from the
 * frames it received with the SDK's rule (client/presence.ts), so these
 * tests also check that the frames compose.
 */
import { evictDurableObject, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { applyPresence, EMPTY_PRESENCE, type PresenceState } from "../../client/presence";
import { HttpErrorBody, type ServerMessage } from "../../shared/protocol";
import type { StatsReport } from "../../src/metrics";
import { TEST_BINDINGS } from "../support/bindings";
import { connect, event, fetchWorker, freshChannel, ingest, token, type Client } from "../support/worker-client";
import { waitUntil } from "../support/wait";

type PresenceFrame = Extract<ServerMessage, { type: "presence" | "presence_diff" }>;
const frames = (c: Client) => c.messages.filter((m): m is PresenceFrame => m.type === "presence" || m.type === "presence_diff");
const viewOf = (c: Client): PresenceState => frames(c).reduce(applyPresence, EMPTY_PRESENCE);
const subs = (c: Client) =>
  viewOf(c)
    .members.map((m) => m.sub)
    .sort();

/** Connects `sub` with presence; its token shows role and name, and carries a claim that must never be shown. */
async function member(ch: string, sub: string, opts: { presence?: boolean; continent?: string; role?: string } = {}): Promise<Client> {
  const t = await token({ sub, role: opts.role ?? "viewer", extra: { name: `Name of ${sub}`, email: `${sub}@example.com` } });
  return connect(ch, { token: t, presence: opts.presence ?? true, continent: opts.continent });
}

const settle = (clients: Client[], what: string, check: (s: PresenceState) => boolean) =>
  waitUntil(
    what,
    () => clients.every((c) => check(viewOf(c))),
    5000,
    10,
    () => JSON.stringify(clients.map(viewOf)),
  );
const same = (a: string[], b: string[]) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

describe("presence", () => {
  it("a late joiner first gets the whole state, then the same diffs as everyone; members show role and the listed claims only", async () => {
    const ch = freshChannel("room");
    const ana = await member(ch, "ana", { role: "ops" });
    const bob = await member(ch, "bob", { presence: false }); // counted and listed, does not subscribe
    await settle([ana], "ana sees ana and bob", (s) =>
      same(
        s.members.map((m) => m.sub),
        ["ana", "bob"],
      ),
    );
    const cid = await member(ch, "cid");
    const first = frames(cid)[0]!;
    expect(first.type).toBe("presence"); // the whole state comes first
    expect(first.type === "presence" && first.members.map((m) => m.sub).sort()).toEqual(["ana", "bob"]);
    await settle([ana, cid], "everyone sees the three", (s) => s.users === 3 && s.connections === 3 && s.members.length === 3);
    expect(viewOf(ana)).toEqual(viewOf(cid));
    const shown = viewOf(ana).members.find((m) => m.sub === "ana")!;
    expect(shown).toEqual({ sub: "ana", role: "ops", claims: { name: "Name of ana" }, connections: 1 });
    expect(JSON.stringify(ana.raw)).not.toContain("example.com");
    expect(bob.messages.some((m) => m.type === "presence" || m.type === "presence_diff")).toBe(false);
  });

  it("join, metadata update and leave arrive in order; connections of one user are grouped; metadata numbers stay exact", async () => {
    const ch = freshChannel("room");
    const ana = await member(ch, "ana");
    await settle([ana], "ana alone", (s) => s.users === 1);
    const bob1 = await member(ch, "bob");
    const bob2 = await member(ch, "bob");
    await settle([ana], "bob with two connections", (s) => s.members.find((m) => m.sub === "bob")?.connections === 2);
    bob1.send(JSON.stringify({ type: "presence", meta: { viewing: "orders" } }));
    await settle([ana], "bob's first metadata", (s) => s.members.find((m) => m.sub === "bob")?.meta?.viewing === "orders");
    // The latest metadata of any of bob's connections wins.
    bob2.send('{"type":"presence","meta":{"cursor":12345678901234567890.10}}');
    await settle([ana], "bob's latest metadata", (s) => JSON.stringify(s.members.find((m) => m.sub === "bob")?.meta ?? {}).includes("cursor"));
    expect(ana.raw.some((r) => r.includes('"cursor":12345678901234567890.10'))).toBe(true); // digit for digit
    bob1.close();
    bob2.close();
    await settle([ana], "bob left", (s) => s.users === 1 && s.members.length === 1);
    // In order: bob joins before any update of bob, and leaves after it.
    const kinds = frames(ana).flatMap((f) =>
      f.type === "presence"
        ? []
        : [
            ...f.joins.filter((m) => m.sub === "bob").map(() => "join"),
            ...f.updates.filter((m) => m.sub === "bob").map(() => "update"),
            ...f.leaves.filter((s) => s === "bob").map(() => "leave"),
          ],
    );
    expect(kinds[0]).toBe("join");
    expect(kinds.at(-1)).toBe("leave");
    expect(kinds.filter((k) => k === "join")).toHaveLength(1);
    expect(kinds.filter((k) => k === "leave")).toHaveLength(1);
  });

  it("a user who reconnects within the grace period is never shown leaving; one who does not is, after it", async () => {
    const ch = freshChannel("room");
    const ana = await member(ch, "ana");
    let bob = await member(ch, "bob");
    await settle([ana], "bob present", (s) => s.users === 2);
    bob.close();
    bob = await member(ch, "bob"); // back well within 400 ms
    const cid = await member(ch, "cid");
    await settle([ana], "cid present", (s) => s.users === 3);
    cid.close();
    const closedAt = Date.now();
    await settle([ana], "cid gone", (s) => s.users === 2);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(300); // the grace period (400 ms; timers may fire a little early)
    const leaves = frames(ana).flatMap((f) => (f.type === "presence_diff" ? f.leaves : []));
    expect(leaves).toEqual(["cid"]);
    bob.close();
  });

  it("lists at most PRESENCE_MAX_MEMBERS members, the first to arrive, with exact counts; a leave lets the next one in", async () => {
    const ch = freshChannel("room");
    const clients: Client[] = [];
    for (const sub of ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]) clients.push(await member(ch, sub));
    clients.push(await member(ch, "u7")); // a second connection of u7
    await settle(clients, "7 users, 8 connections, 5 listed", (s) => s.users === 7 && s.connections === 8 && s.members.length === 5);
    expect(subs(clients[7]!)).toEqual(["u1", "u2", "u3", "u4", "u5"]);
    clients[1]!.close(); // u2 leaves: u6 arrived next
    await settle(
      clients.slice(2),
      "u6 listed",
      (s) =>
        s.users === 6 &&
        same(
          s.members.map((m) => m.sub),
          ["u1", "u3", "u4", "u5", "u6"],
        ),
    );
    const late = await member(ch, "u8");
    expect(frames(late)[0]).toMatchObject({ type: "presence", users: 6, connections: 7 });
  });

  it("refuses oversized and too frequent metadata with an error frame and keeps the connection; non-subscribers cannot set it", async () => {
    const ch = freshChannel("room");
    const ana = await member(ch, "ana");
    const bob = await member(ch, "bob", { presence: false });
    ana.send(JSON.stringify({ type: "presence", meta: { blob: "x".repeat(600) } }));
    expect(await ana.waitFor("an error", () => ana.messages.find((m) => m.type === "error"))).toMatchObject({ code: "PRESENCE_TOO_LARGE" });
    bob.send(JSON.stringify({ type: "presence", meta: { a: 1 } }));
    expect(await bob.waitForType("error")).toMatchObject({ code: "PRESENCE_DISABLED" });
    for (let i = 0; i < 7; i++) ana.send(JSON.stringify({ type: "presence", meta: { i } }));
    await ana.waitFor("a rate-limit error", () => ana.messages.find((m) => m.type === "error" && m.code === "PRESENCE_RATE_LIMITED"));
    await settle([ana], "ana's last accepted metadata", (s) => JSON.stringify(s.members.find((m) => m.sub === "ana")?.meta) === '{"i":4}');
    expect(ana.closed).toBeUndefined();
    expect(bob.closed).toBeUndefined();
  });

  it("refuses presence on a channel without it (400) and to a token with presence: false (403); presence uses no seq", async () => {
    const plain = freshChannel("plain");
    const t = await token();
    const res = await fetchWorker(`/ws/${plain}?presence=1`, { headers: { upgrade: "websocket", authorization: `Bearer ${t}` } });
    expect(res.status).toBe(400);
    expect(HttpErrorBody.parse(await res.json()).error.code).toBe("PRESENCE_DISABLED");
    const ch = freshChannel("room");
    const denied = await token({ extra: { presence: false } });
    const res2 = await fetchWorker(`/ws/${ch}?presence=1`, { headers: { upgrade: "websocket", authorization: `Bearer ${denied}` } });
    expect(res2.status).toBe(403);
    expect(HttpErrorBody.parse(await res2.json()).error.code).toBe("PRESENCE_FORBIDDEN");
    const ana = await member(ch, "ana");
    await member(ch, "bob");
    await settle([ana], "two", (s) => s.users === 2);
    expect((await ingest([event(ch, 1)])).status).toBe(200);
    const [ev] = await ana.waitForEvents(1);
    expect(ev!.seq).toBe(1); // joins and leaves took no seq
  });

  it("survives hibernation: members are rebuilt from the sockets, subscribers get the whole state again, and a late joiner sees everyone", async () => {
    const ch = freshChannel("room");
    const ana = await member(ch, "ana");
    const bob = await member(ch, "bob");
    bob.send(JSON.stringify({ type: "presence", meta: { viewing: "stock" } }));
    await settle([ana, bob], "both, with bob's metadata", (s) => s.users === 2 && s.members.some((m) => m.meta !== undefined));
    await evictDurableObject(env.CHANNEL.get(env.CHANNEL.idFromName(ch))); // the object goes, the sockets stay
    const before = frames(ana).length;
    const cid = await member(ch, "cid");
    await settle([ana, bob, cid], "all three, metadata kept", (s) => s.users === 3 && s.members.find((m) => m.sub === "bob")?.meta?.viewing === "stock");
    expect(frames(ana).slice(before)[0]!.type).toBe("presence"); // the whole state after the restart
    expect(viewOf(ana)).toEqual(viewOf(cid));
  });

  it("across the fan-out tree: members on every object and region appear in one state, the same for every subscriber", async () => {
    const ch = freshChannel("tree.room");
    const clients: Client[] = [];
    for (const [sub, continent] of [
      ["eu1", "EU"],
      ["eu2", "EU"],
      ["eu3", "EU"],
      ["na1", "NA"],
      ["na2", "NA"],
    ] as const)
      clients.push(await member(ch, sub, { continent }));
    await settle(clients, "five members everywhere", (s) => s.users === 5 && s.members.length === 5);
    const views = clients.map((c) => JSON.stringify(viewOf(c)));
    expect(new Set(views).size).toBe(1);
    clients[0]!.close();
    clients[3]!.close();
    await settle(
      [clients[1]!, clients[2]!, clients[4]!],
      "eu1 and na1 gone",
      (s) =>
        same(
          s.members.map((m) => m.sub),
          ["eu2", "eu3", "na2"],
        ) && s.connections === 3,
    );
    // /stats counts the same users once the roll-ups arrive.
    const admin = { authorization: `Bearer ${TEST_BINDINGS.ADMIN_TOKEN}` };
    await waitUntil("stats agree", async () => {
      const report = (await (await fetchWorker("/stats", { headers: admin })).json()) as StatsReport;
      const mine = report.channels.filter((s) => s.channel === ch);
      return mine.reduce((n, s) => n + s.connections, 0) === 3;
    });
  });
});
