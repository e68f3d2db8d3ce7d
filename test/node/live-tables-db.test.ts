/**
 * Live tables in the database (db/functions/rows.sql, migration 008): watch()
 * records the key, derived channels send enter and leave, and
 * notifiws.table_rows() reads a channel's rows exactly, under caps, with the
 * rights of a role that may read the published columns only. Real Postgres,
 * both servers; enter/leave in both capture modes.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { entries, expectedWireRows, FIDELITY_DDL, insertFidelity, watchFidelity } from "../support/fidelity";
import { POSTGRES_SERVERS, testPostgres, type TestPostgres } from "../support/postgres";

let db: TestPostgres;

type Change = { op: string; data: Record<string, unknown>; old: Record<string, unknown> | null };

/** The events written for `channel` since `afterId` (outbox mode), in order. */
async function outboxEvents(channel: string, afterId = 0): Promise<Change[]> {
  const { rows } = await db.query("SELECT op, data, old_data AS old FROM notifiws.outbox WHERE channel = $1 AND id > $2 ORDER BY id", [channel, afterId]);
  return rows as Change[];
}

/** The logical messages for `channel` a test_decoding slot has (wal mode), in commit order; consumes them. */
async function walEvents(slot: string, channel: string): Promise<Change[]> {
  const { rows } = await db.query<{ data: string }>("SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)", [slot]);
  const out: Change[] = [];
  for (const { data } of rows) {
    const m = /^message: transactional: 1 prefix: notifiws, sz: \d+ content:([\s\S]*)$/.exec(data);
    if (!m) continue;
    const [head, row, old] = m[1]!.split("\n");
    const header = JSON.parse(head!) as { channel: string; op: string };
    if (header.channel === channel) out.push({ op: header.op, data: JSON.parse(row!), old: old ? JSON.parse(old) : null });
  }
  return out;
}

/** Runs table_rows() the way the Worker does: one REPEATABLE READ READ ONLY transaction. */
async function tableRows(client: pg.Pool | pg.Client | TestPostgres, channel: string, maxRows = 1000, maxBytes = 1_000_000) {
  const results = (await (client as pg.Client).query(
    `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT * FROM notifiws.table_rows(${pg.escapeLiteral(channel)}, ${maxRows}, ${maxBytes}); COMMIT`,
  )) as unknown as pg.QueryResult[];
  return results[1]!.rows[0] as { code: string | null; message: string | null; body: string | null };
}

describe.each(POSTGRES_SERVERS)("live tables on %s Postgres", (server) => {
  beforeAll(async () => {
    db = await testPostgres({ server });
    await db.query(`
      CREATE TABLE tickets (id bigint PRIMARY KEY, status text NOT NULL, title text, priority int, secret text);
      CREATE TABLE nokey (a int, b text);
      CREATE TABLE pair (org int, n int, v text, PRIMARY KEY (org, n));
    `);
  }, 60_000);
  afterAll(() => db?.close());

  describe("watch() and the key", () => {
    it("records the primary key, in key order, and a given key for a table without one", async () => {
      await db.query("SELECT notifiws.watch('tickets', 'tickets', ARRAY['id', 'status', 'title'])");
      await db.query("SELECT notifiws.watch('pair', 'pair', ARRAY['n', 'org', 'v'])");
      await db.query("SELECT notifiws.watch('nokey', 'nokey', ARRAY['a', 'b'], key => ARRAY['a'])");
      const { rows } = await db.query("SELECT channel, key FROM notifiws.watches WHERE channel IN ('tickets', 'pair', 'nokey') ORDER BY channel");
      expect(rows).toEqual([
        { channel: "nokey", key: ["a"] },
        { channel: "pair", key: ["org", "n"] },
        { channel: "tickets", key: ["id"] },
      ]);
    });

    it("refuses a table without a primary key unless a key is given, and a key that is not published", async () => {
      await expect(db.query("SELECT notifiws.watch('nokey', 'nokey.x', ARRAY['a'])")).rejects.toThrow(/has no primary key; pass key =>/);
      await expect(db.query("SELECT notifiws.watch('tickets', 'tickets.x', ARRAY['status'])")).rejects.toThrow(
        /key column\(s\) id of tickets must be published/,
      );
      await expect(db.query("SELECT notifiws.watch('nokey', 'nokey.y', ARRAY['b'], key => ARRAY['a'])")).rejects.toThrow(/must be published/);
      // Nothing was registered or attached by the refused calls.
      const { rows } = await db.query("SELECT count(*)::int AS n FROM notifiws.watches WHERE channel LIKE '%.x' OR channel LIKE '%.y'");
      expect(rows[0]!.n).toBe(0);
    });
  });

  describe.each(["outbox", "wal"] as const)("a derived channel in %s mode", (mode) => {
    const channel = `tickets.urgent.${mode}`;
    const slot = `lt_${mode}_${server}`;
    beforeAll(async () => {
      await db.query("DELETE FROM tickets");
      await db.query(`SELECT notifiws.watch('tickets', '${channel}', ARRAY['id', 'title'], condition => 'NEW.status = ''urgent''', include_old => true)`);
      if (mode === "wal") {
        await db.query("SELECT pg_create_logical_replication_slot($1, 'test_decoding')", [slot]);
        await db.query("SELECT notifiws.set_capture_mode('wal')");
      }
    });
    afterAll(async () => {
      await db.query(`SELECT notifiws.unwatch('tickets', '${channel}')`);
      if (mode === "wal") {
        await db.query("SELECT notifiws.set_capture_mode('outbox')");
        await db.query("SELECT pg_drop_replication_slot($1)", [slot]);
      }
    });

    it("sends insert, update, leave, enter and delete as rows move in and out of the condition", async () => {
      const { rows: mark } = await db.query("SELECT coalesce(max(id), 0) AS id FROM notifiws.outbox");
      await db.query("INSERT INTO tickets VALUES (1, 'urgent', 'fire', 1, 's'), (2, 'open', 'quiet', 1, 's')"); // 1 in, 2 out
      await db.query("UPDATE tickets SET title = 'big fire' WHERE id = 1"); // stays in: update, with old
      await db.query("UPDATE tickets SET priority = 2 WHERE id = 1"); // unpublished column, stays in: nothing
      await db.query("UPDATE tickets SET status = 'closed' WHERE id = 1"); // leaves, though no published column changed
      await db.query("UPDATE tickets SET status = 'urgent', title = 'now loud' WHERE id = 2"); // enters
      await db.query("UPDATE tickets SET title = 'still quiet' WHERE id = 1"); // outside, stays outside: nothing
      await db.query("DELETE FROM tickets WHERE id = 1"); // deleted outside: nothing
      await db.query("DELETE FROM tickets WHERE id = 2"); // deleted inside: delete
      const events = mode === "outbox" ? await outboxEvents(channel, Number(mark[0]!.id)) : await walEvents(slot, channel);
      expect(events).toEqual([
        { op: "insert", data: { id: "1", title: "fire" }, old: null },
        { op: "update", data: { id: "1", title: "big fire" }, old: { id: "1", title: "fire" } },
        { op: "leave", data: { id: "1", title: "big fire" }, old: null },
        { op: "enter", data: { id: "2", title: "now loud" }, old: null },
        { op: "delete", data: { id: "2", title: "now loud" }, old: null },
      ]);
    });
  });

  describe("table_rows()", () => {
    it("reads a channel's rows exactly, as events encode them, with types, key, table and snapshot", async () => {
      await db.query(FIDELITY_DDL);
      await insertFidelity(db);
      await db.query(watchFidelity("fidelity"));
      const res = await tableRows(db, "fidelity");
      expect(res.code).toBeNull();
      // Parsed with JSON.parse on purpose: every number a float could round travels as text.
      const body = JSON.parse(res.body!) as { rows: Record<string, unknown>[]; types: Record<string, string>; key: string[]; table: string; snapshot: unknown };
      const expected = await expectedWireRows(db);
      expect(body.rows.map((r) => entries(r))).toEqual([...expected.values()].map((r) => entries(r)));
      expect(body.rows.some((r) => "secret" in r)).toBe(false);
      expect(body.key).toEqual(["k"]);
      expect(body.table).toBe("public.fidelity");
      expect(body.types).toMatchObject({ i8: "int8", n: "numeric", jb: "jsonb", a8: "int8[]", dom: "int8" });
      expect(body.snapshot).toMatchObject({ xmin: expect.stringMatching(/^\d+$/), xmax: expect.stringMatching(/^\d+$/) });
    });

    it("applies the channel's condition, in key order", async () => {
      await db.query("DELETE FROM tickets");
      await db.query("SELECT notifiws.watch('tickets', 'tickets.open', ARRAY['id', 'title'], condition => 'NEW.status = ''open''')");
      await db.query("INSERT INTO tickets VALUES (3, 'open', 'c', 1, 's'), (1, 'open', 'a', 1, 's'), (2, 'closed', 'b', 1, 's')");
      const body = JSON.parse((await tableRows(db, "tickets.open")).body!);
      expect(body.rows).toEqual([
        { id: "1", title: "a" },
        { id: "3", title: "c" },
      ]);
    });

    it("refuses, with a code, a channel no table feeds, one two tables feed, and one over the row or byte cap", async () => {
      expect(await tableRows(db, "no.such.channel")).toMatchObject({ code: "CHANNEL_NOT_A_TABLE", body: null });
      await db.query("SELECT notifiws.watch('pair', 'mixed', ARRAY['org', 'n'])");
      await db.query("SELECT notifiws.watch('tickets', 'mixed', ARRAY['id'])");
      expect(await tableRows(db, "mixed")).toMatchObject({ code: "CHANNEL_NOT_A_TABLE", message: expect.stringContaining("2 watches") });
      await db.query("INSERT INTO pair SELECT 1, n, repeat('x', 100) FROM generate_series(1, 50) n");
      expect((await tableRows(db, "pair", 50)).code).toBeNull();
      expect(await tableRows(db, "pair", 49)).toMatchObject({ code: "TABLE_TOO_LARGE", message: expect.stringContaining("ROWS_MAX_ROWS") });
      expect((await tableRows(db, "pair", 1000, 1000)).code).toBe("TABLE_TOO_LARGE");
    });

    it("answers TABLE_HAS_NO_KEY for a watch registered before keys were recorded", async () => {
      await db.query("SELECT notifiws.watch('nokey', 'nokey.legacy', ARRAY['a', 'b'], key => ARRAY['a'])");
      await db.query("UPDATE notifiws.watches SET key = NULL WHERE channel = 'nokey.legacy'"); // as migration 008 leaves a key-less table
      expect(await tableRows(db, "nokey.legacy")).toMatchObject({ code: "TABLE_HAS_NO_KEY", message: expect.stringContaining("key =>") });
    });

    it("runs for a read-only role with SELECT on the published and condition columns only, and refuses outside REPEATABLE READ", async () => {
      await db.query(`
        DROP ROLE IF EXISTS edge_reader;
        CREATE ROLE edge_reader LOGIN PASSWORD 'edge-reader-pw';
        GRANT USAGE ON SCHEMA notifiws TO edge_reader;
        GRANT SELECT (id, title, status) ON tickets TO edge_reader;
      `);
      const url = new URL(db.url);
      url.username = "edge_reader";
      url.password = "edge-reader-pw";
      const reader = new pg.Client({ connectionString: url.toString() });
      await reader.connect();
      try {
        const body = JSON.parse((await tableRows(reader, "tickets.open")).body!);
        expect(body.rows.map((r: { id: string }) => r.id)).toEqual(["1", "3"]);
        await expect(reader.query("SELECT secret FROM tickets")).rejects.toThrow(/permission denied/);
        await expect(reader.query("SELECT * FROM notifiws.table_rows('tickets.open', 10, 1000)")).rejects.toThrow(/REPEATABLE READ/);
      } finally {
        await reader.end();
      }
    });
  });
});
