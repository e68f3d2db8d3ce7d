/** The snapshot visibility rule, checked against Postgres's own pg_visible_in_snapshot. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { parseSnapshot, visibleInSnapshot } from "../../shared/snapshot";
import { testPostgres, type TestPostgres } from "../support/postgres";

describe("visibleInSnapshot", () => {
  const snap = parseSnapshot({ xmin: "100", xmax: "110", xip: ["100", "104", "107"] });
  it.each([
    ["99", true, "below xmin: committed (or aborted) before the snapshot"],
    ["100", false, "xmin itself is in progress"],
    ["101", true, "between xmin and xmax, not in progress"],
    ["104", false, "in the in-progress list"],
    ["109", true, "just below xmax, not in progress"],
    ["110", false, "at xmax: started after the snapshot"],
    ["5000", false, "above xmax"],
  ])("txid %s → %s (%s)", (txid, visible) => {
    expect(visibleInSnapshot(txid, snap)).toBe(visible);
  });

  it("compares 64-bit ids exactly, past 2^32 and 2^53", () => {
    const epoch = 2n ** 32n * 3n; // xid8 = epoch << 32 | xid
    const big = parseSnapshot({ xmin: String(epoch + 10n), xmax: String(epoch + 20n), xip: [String(epoch + 15n)] });
    expect(visibleInSnapshot(String(epoch + 9n), big)).toBe(true);
    expect(visibleInSnapshot(String(epoch + 15n), big)).toBe(false);
    expect(visibleInSnapshot(String(epoch + 16n), big)).toBe(true);
    expect(visibleInSnapshot(String(epoch + 20n), big)).toBe(false);
    // Two ids that are the same JSON number (2^53 + 1 rounds to 2^53) are told apart.
    const huge = parseSnapshot({ xmin: "9007199254740993", xmax: "9007199254740995", xip: [] });
    expect(visibleInSnapshot("9007199254740992", huge)).toBe(true);
    expect(visibleInSnapshot("9007199254740993", huge)).toBe(true);
    expect(visibleInSnapshot("9007199254740995", huge)).toBe(false);
  });

  it("reads pg_current_snapshot()'s text form", () => {
    expect(parseSnapshot("100:110:100,104")).toEqual({ xmin: 100n, xmax: 110n, xip: new Set([100n, 104n]) });
    expect(parseSnapshot("7:7:")).toEqual({ xmin: 7n, xmax: 7n, xip: new Set() });
  });

  it.each([["x:1:"], ["5:4:"], ["1:2:a"]])("refuses a malformed snapshot %j", (text) => {
    expect(() => parseSnapshot(text)).toThrow();
  });
});

describe("against Postgres", () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await testPostgres();
  });
  afterAll(async () => {
    await db?.close();
  });

  it("agrees with pg_visible_in_snapshot on every id around a snapshot with transactions in progress", async () => {
    // Two transactions stay open (in progress) while a third reads the snapshot.
    const open = await Promise.all(
      [0, 1].map(async () => {
        const c = new pg.Client({ connectionString: db.url });
        await c.connect();
        await c.query("BEGIN");
        await c.query("SELECT pg_current_xact_id()");
        return c;
      }),
    );
    await db.query("SELECT pg_current_xact_id()"); // a committed one between them
    const reader = new pg.Client({ connectionString: db.url });
    await reader.connect();
    try {
      await reader.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      const { s, text } = (
        await reader.query<{ s: { xmin: string; xmax: string; xip: string[] }; text: string }>(
          "SELECT notifiws.snapshot() AS s, pg_current_snapshot()::text AS text",
        )
      ).rows[0]!;
      expect(s.xip.length).toBeGreaterThanOrEqual(2);
      const parsed = parseSnapshot(s);
      expect(parseSnapshot(text)).toEqual(parsed);
      const ids = Array.from({ length: Number(parsed.xmax - parsed.xmin) + 6 }, (_, i) => parsed.xmin - 3n + BigInt(i)).filter((x) => x > 2n);
      const pgSays = await reader.query<{ id: string; visible: boolean }>(
        "SELECT id::text, pg_visible_in_snapshot(id::text::xid8, $2::pg_snapshot) AS visible FROM unnest($1::text[]) AS id",
        [ids.map(String), text],
      );
      for (const row of pgSays.rows) expect(visibleInSnapshot(row.id, parsed), `txid ${row.id}`).toBe(row.visible);
      await reader.query("COMMIT");
    } finally {
      await reader.end();
      await Promise.all(open.map(async (c) => (await c.query("ROLLBACK"), await c.end())));
    }
  });

  it("refuses notifiws.snapshot() outside REPEATABLE READ, naming the problem", async () => {
    await expect(db.query("SELECT notifiws.snapshot()")).rejects.toThrow(/REPEATABLE READ/);
  });
});
