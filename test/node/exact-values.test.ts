/**
 * Exact values across the real stack: Postgres → trigger → outbox → relay →
 * Worker → channel object → WebSocket → SDK, live, replayed from the
 * object's history, and through the fan-out tree; on the embedded Postgres 18
 * and on the system's Postgres 15 (a user's own server). For every type the
 * client gets what Postgres says (test/support/fidelity.ts), compared as text
 * and never through a float; filters compare 64-bit values exactly; published
 * numbers keep their digits.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type Envelope, type Subscription } from "../../client/index";
import { devToken, Stack } from "../../scripts/stack";
import type { RunningPostgres } from "../../scripts/embedded-pg";
import { entries, expectedWireRows, FIDELITY_DDL, HARD_TEXT, insertFidelity, watchFidelity } from "../support/fidelity";
import { startSystemPostgres } from "../support/system-postgres";
import { waitUntil } from "../support/wait";
import { WsClient } from "../support/wsclient";

describe.each(["embedded", "system"] as const)("exact values end to end on %s Postgres", (server) => {
  let dir = "";
  let system: RunningPostgres | undefined;
  let stack: Stack;
  let db: pg.Pool;
  let token = "";
  const clients: WsClient[] = [];
  const subs: Subscription[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `notifiws-exact-${server}-`));
    if (server === "system") {
      await chmod(dir, 0o755); // the postgres user must reach its data directory
      system = await startSystemPostgres({ dir: join(dir, "pg15") });
    }
    stack = await new Stack({
      stateDir: dir,
      databaseUrl: system?.url,
      demo: false,
      workerVars: { FANOUT_CHANNELS: "fidelity.tree" },
      relayEnv: { LOG_LEVEL: "error" },
    }).start();
    db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
    await db.query(FIDELITY_DDL);
    await db.query(watchFidelity("fidelity"));
    await db.query(watchFidelity("fidelity.tree"));
    token = await devToken(stack.secrets);
  }, 120_000);
  afterAll(async () => {
    clients.forEach((c) => c.terminate());
    subs.forEach((s) => s.close());
    await db?.end();
    await stack?.stop();
    await system?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const ws = async (channel: string, opts: { since?: number; filter?: unknown } = {}) => {
    const c = await WsClient.connect(stack.workerUrl, channel, token, opts);
    clients.push(c);
    return c;
  };
  const sdk = (channel: string, values?: Parameters<typeof connect>[0]["values"]) => {
    const events: Envelope[] = [];
    const sub = connect({ url: stack.workerUrl, channel, token, values, onEvent: (e) => events.push(e) });
    subs.push(sub);
    return { sub, events };
  };
  const byKey = (events: Envelope[]) => new Map(events.map((e) => [e.data!.k as number, e.data!]));

  it("delivers every type digit for digit, live, from history and through the fan-out tree, and the SDK decodes it exactly", async () => {
    const live = await ws("fidelity");
    const tree = await ws("fidelity.tree");
    const decoded = sdk("fidelity");
    const bigints = sdk("fidelity.tree", { int8: "bigint" });
    // Exact comparisons in filters: a float would make 9007199254740993 equal 9007199254740992.
    const above = await ws("fidelity", { filter: { where: [{ field: "constructor", op: "gt", value: 9007199254740992 }] } });
    const atMost = await ws("fidelity", { filter: { where: [{ field: "constructor", op: "lte", value: "9007199254740992" }] } });
    await waitUntil("SDK subscriptions open", () => decoded.sub.state === "open" && bigints.sub.state === "open");

    await insertFidelity(db);
    const expected = await expectedWireRows(db);
    for (const c of [live, tree]) await c.waitFor("4 rows", () => c.events.length >= 4, 20_000);
    const replayed = await ws("fidelity", { since: 0 });
    const treeReplayed = await ws("fidelity.tree", { since: 0 });
    for (const c of [replayed, treeReplayed]) await c.waitFor("4 replayed rows", () => c.events.length >= 4);

    // The wire: WsClient parses frames with plain JSON.parse, as any client would.
    for (const [name, c] of [
      ["live", live],
      ["tree", tree],
      ["replayed from history", replayed],
      ["replayed on the tree", treeReplayed],
    ] as const) {
      const got = byKey(c.events);
      for (const [k, row] of expected) expect(entries(got.get(k)), `${name}, row ${k}`).toEqual(entries(row));
    }
    expect(live.raw.join("\n")).toContain('"i8":"9223372036854775807"');
    expect(live.raw.join("\n")).not.toContain("hunter2"); // unpublished column

    // Filters.
    await above.waitFor("the row above 2^53", () => above.events.length >= 1);
    await atMost.waitFor("rows at most 2^53", () => atMost.events.length >= 2);
    const headAfter = live.events[live.events.length - 1]!.seq;
    expect(above.events.map((e) => e.data!.k)).toEqual([1]);
    expect(atMost.events.map((e) => e.data!.k).sort()).toEqual([2, 3]);
    expect(Math.max(...atMost.events.map((e) => e.seq))).toBeLessThanOrEqual(headAfter);

    // The SDK: int8 and numeric as exact strings (or bigint), floats as numbers, json parsed exactly.
    await waitUntil("SDK events", () => decoded.events.length >= 4 && bigints.events.length >= 4);
    const d = byKey(decoded.events);
    const r1 = d.get(1)!;
    const r2 = d.get(2)!;
    const r3 = d.get(3)!;
    expect(r1.i8).toBe("9223372036854775807");
    expect(r2.i8).toBe("-9223372036854775808");
    expect(r1.n).toBe("123456789012345678901234567890.123456789012345");
    expect(r1.n_scaled).toBe("12345678901234567890.1200000000");
    expect(r2.n).toBe("NaN");
    expect(r3.n).toBe("Infinity");
    expect(r1.m).toBe("92233720368547758.07");
    expect(r1.f8).toBe(1.7976931348623157e308);
    expect(Object.is(r2.f8, -0)).toBe(true);
    expect(Number.isNaN(r2.f4)).toBe(true);
    expect(r3.f4).toBe(-Infinity);
    expect(r1.tx).toBe(HARD_TEXT);
    expect(r1.j).toEqual({ big: 12345678901234567890n, ["__proto__"]: { polluted: true }, f: [1.5, -0, 1.1, "1e400"] });
    expect(Object.hasOwn(r1.j as object, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(r1.jb).toEqual({ big: -12345678901234567890n, dec: "0.1000000000000000000000001", constructor: { prototype: 1 } });
    expect(r2.j).toBe(null); // JSON null, a value
    expect(d.get(4)!.j).toBe(null); // SQL NULL
    expect(r1.a8).toEqual(["9223372036854775807", "-9223372036854775808", null]);
    expect(r1.af).toEqual([-0, NaN, 1e308]);
    expect(r1.a2).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(Object.hasOwn(r1, "__proto__") && r1["__proto__"]).toBe("proto");
    expect(r1.constructor).toBe("9007199254740993");
    const b = byKey(bigints.events);
    expect(b.get(1)!.i8).toBe(9223372036854775807n);
    expect(b.get(1)!.constructor).toBe(9007199254740993n);
    expect(b.get(1)!.a8).toEqual([9223372036854775807n, -9223372036854775808n, null]);
    expect(b.get(3)!.i8).toBe(9007199254740992n);
  });

  it("keeps published numbers as written: the wire has the same digits and the SDK gives exact values", async () => {
    const raw = await ws("published");
    const s = sdk("published");
    await waitUntil("SDK open", () => s.sub.state === "open");
    const body = '{"data":{"big":12345678901234567890,"dec":1.10,"negz":-0,"small":42,"__proto__":{"x":1},"nested":{"n":-98765432109876543210}}}';
    const res = await fetch(`${stack.workerUrl}/api/channels/published/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.secrets.PUBLISH_KEY}`, "content-type": "application/json" },
      body,
    });
    expect(res.status).toBe(200);
    await raw.waitFor("the published event", () => raw.events.length >= 1);
    const frame = raw.raw.find((f) => f.startsWith('{"type":"events"'))!;
    expect(frame).toContain('"data":{"big":12345678901234567890,"dec":1.10,"negz":-0,"small":42,"__proto__":{"x":1},"nested":{"n":-98765432109876543210}}');
    await waitUntil("SDK event", () => s.events.length >= 1);
    const data = s.events[0]!.data!;
    expect(data.big).toBe(12345678901234567890n);
    expect(data.dec).toBe(1.1);
    expect(Object.is(data.negz, -0)).toBe(true);
    expect((data.nested as { n: unknown }).n).toBe(-98765432109876543210n);
    expect(Object.hasOwn(data, "__proto__")).toBe(true);
  });
});
