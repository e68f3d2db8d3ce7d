/**
 * The presence rules as pure functions (durable-objects/presence-view.ts) and
 * the SDK's rule for applying frames (client/presence.ts): grouping, merging
 * objects, the grace period, the capped list, diffs that compose back into
 * the next view, and the metadata limits.
 */
import { describe, expect, it } from "vitest";
import { applyPresence, EMPTY_PRESENCE, type PresenceState } from "../../client/presence";
import { ServerMessage } from "../../shared/protocol";
import {
  decideMeta,
  diffFrame,
  diffViews,
  membersOf,
  merge,
  stateFrame,
  viewOf,
  withGrace,
  type Lingering,
  type Member,
  type PresenceConn,
} from "../../durable-objects/presence-view";

const conn = (sub: string, connectedAt: number, extra: Partial<PresenceConn> = {}): PresenceConn => ({ sub, connectedAt, ...extra });
const bySub = (members: Member[]) => new Map(members.map((m) => [m.sub, m]));
const sorted = (s: PresenceState) => ({ ...s, members: [...s.members].sort((a, b) => (a.sub < b.sub ? -1 : 1)) });
const parse = (text: string) => ServerMessage.parse(JSON.parse(text)) as Extract<ServerMessage, { type: "presence" | "presence_diff" }>;

describe("membersOf and merge", () => {
  it.each([
    { name: "one connection", conns: [conn("a", 5)], want: [{ sub: "a", connections: 1, since: 5 }] },
    { name: "two connections of one user add up; the earliest since", conns: [conn("a", 9), conn("a", 5)], want: [{ sub: "a", connections: 2, since: 5 }] },
    {
      name: "the latest metadata wins, whichever connection set it",
      conns: [conn("a", 1, { meta: '{"v":1}', metaAt: 10 }), conn("a", 2, { meta: '{"v":2}', metaAt: 20 }), conn("a", 3)],
      want: [{ sub: "a", connections: 3, meta: '{"v":2}', since: 1 }],
    },
    {
      name: "a connection without metadata does not blank another's",
      conns: [conn("a", 1, { meta: '{"v":1}', metaAt: 10 }), conn("a", 2)],
      want: [{ sub: "a", connections: 2, meta: '{"v":1}' }],
    },
    { name: "users stay apart", conns: [conn("a", 1), conn("b", 2)], want: [{ sub: "a" }, { sub: "b" }] },
  ])("$name", ({ conns, want }) => {
    expect(membersOf(conns)).toMatchObject(want);
  });

  it("merges the members of several objects by user", () => {
    const eu = membersOf([conn("a", 5, { meta: '{"at":"eu"}', metaAt: 50 }), conn("b", 1)]);
    const na = membersOf([conn("a", 3, { meta: '{"at":"na"}', metaAt: 40 }), conn("c", 2)]);
    const all = merge([eu, na]);
    expect(all.get("a")).toMatchObject({ connections: 2, since: 3, meta: '{"at":"eu"}' });
    expect([...all.keys()].sort()).toEqual(["a", "b", "c"]);
  });
});

describe("withGrace", () => {
  const a = membersOf([conn("a", 1)])[0]!;
  const b = membersOf([conn("b", 2)])[0]!;
  it("keeps a member who left for the grace period, then lets them go", () => {
    const lingering: Lingering = new Map();
    const before = bySub([a, b]);
    const t0 = withGrace(bySub([a]), before, lingering, 1000, 500);
    expect([...t0.shown.keys()].sort()).toEqual(["a", "b"]);
    expect(t0.nextExpiry).toBe(1500);
    const t1 = withGrace(bySub([a]), bySub([a]), lingering, 1499, 500);
    expect(t1.shown.has("b")).toBe(true);
    const t2 = withGrace(bySub([a]), bySub([a]), lingering, 1500, 500);
    expect(t2.shown.has("b")).toBe(false);
    expect(t2.nextExpiry).toBe(Infinity);
  });
  it("a member back within the grace period is simply present; grace 0 lets them go at once", () => {
    const lingering: Lingering = new Map();
    withGrace(bySub([a]), bySub([a, b]), lingering, 1000, 500);
    const back = withGrace(bySub([a, b]), bySub([a]), lingering, 1200, 500);
    expect(back.shown.has("b")).toBe(true);
    expect(lingering.size).toBe(0);
    expect(withGrace(bySub([a]), bySub([a, b]), new Map(), 1000, 0).shown.has("b")).toBe(false);
  });
});

describe("viewOf and diffViews", () => {
  const users = (n: number) => bySub(membersOf(Array.from({ length: n }, (_, i) => conn(`u${i}`, 100 + i))));
  it("lists the first to arrive up to the cap, with exact counts", () => {
    const v = viewOf(users(7), 5);
    expect(v.members.map((m) => m.sub)).toEqual(["u0", "u1", "u2", "u3", "u4"]);
    expect(v).toMatchObject({ users: 7, connections: 7 });
  });
  it("a leave in the list brings in the next to arrive; counts change with members beyond the list", () => {
    const all = users(7);
    const prev = viewOf(all, 5);
    all.delete("u1");
    const d = diffViews(prev, viewOf(all, 5))!;
    expect(d).toMatchObject({ leaves: ["u1"], joins: [{ sub: "u5" }], updates: [], users: 6 });
    all.delete("u6");
    const d2 = diffViews(viewOf(all, 5), viewOf(users(7), 5));
    expect(d2?.users).toBe(7);
  });
  it("no diff when nothing a subscriber sees changed", () => {
    expect(diffViews(viewOf(users(3), 5), viewOf(users(3), 5))).toBeUndefined();
  });
  it("diff frames applied to the state frame give the next state frame, over random churn", () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const present = new Map<string, Member>();
    let view = viewOf(present, 4);
    let client = applyPresence(EMPTY_PRESENCE, parse(stateFrame(view)));
    for (let step = 0; step < 300; step++) {
      const sub = `u${rnd(12)}`;
      if (present.has(sub) && rnd(2) === 0) present.delete(sub);
      else present.set(sub, membersOf([conn(sub, rnd(50), rnd(3) === 0 ? { meta: `{"n":${rnd(1000)}}`, metaAt: step } : {})])[0]!);
      const next = viewOf(present, 4);
      const d = diffViews(view, next);
      if (d) client = applyPresence(client, parse(diffFrame(d)));
      view = next;
      // The same members and counts; the order of the list carries no meaning (docs/protocol.md, "Presence").
      expect(sorted(client)).toEqual(sorted(applyPresence(EMPTY_PRESENCE, parse(stateFrame(view)))));
    }
  });
  it("metadata goes out as the text it was stored as", () => {
    const m = membersOf([conn("a", 1, { meta: '{"big":12345678901234567890.10,"nested":{"x":[1,2]}}', metaAt: 1 })]);
    expect(stateFrame(viewOf(bySub(m), 5))).toContain('"meta":{"big":12345678901234567890.10,"nested":{"x":[1,2]}}');
  });
});

describe("decideMeta", () => {
  const limits = { maxBytes: 20, perSec: 1 };
  it.each([
    { name: "not a presence subscriber", conn: {}, meta: "{}", code: "PRESENCE_DISABLED" },
    { name: "over the byte cap (UTF-8 bytes, not characters)", conn: { presence: true }, meta: `{"n":"${"é".repeat(8)}"}`, code: "PRESENCE_TOO_LARGE" },
    { name: "fits", conn: { presence: true }, meta: '{"n":"ok"}', code: undefined },
  ])("$name", ({ conn: c, meta, code }) => {
    const d = decideMeta(meta, c, 0, limits);
    expect(d.ok ? undefined : d.code).toBe(code);
  });
  it("allows a burst of 5, then about one a second", () => {
    let bucket;
    const results: boolean[] = [];
    for (let i = 0; i < 7; i++) {
      const d = decideMeta("{}", { presence: true, metaBucket: bucket }, 0, limits);
      results.push(d.ok);
      bucket = d.bucket;
    }
    expect(results).toEqual([true, true, true, true, true, false, false]);
    expect(decideMeta("{}", { presence: true, metaBucket: bucket }, 1000, limits).ok).toBe(true);
  });
});
