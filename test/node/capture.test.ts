/**
 * watch()'s compiled trigger functions (migration 005): the same events as the
 * generic notifiws.capture(), for narrow, wide (over 50 columns: several
 * jsonb_build_object calls) and `*` publications, and an upgrade that rewrites
 * triggers created before the migration without losing their ops or WHEN
 * conditions. Real Postgres.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { ROOT } from "../support/process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../db/migrate";
import { POSTGRES_SERVERS, testPostgres, type TestPostgres } from "../support/postgres";

let db: TestPostgres;

type Row = { channel: string; op: string; data: unknown; old_data: unknown };
type Query = (sql: string, params: unknown[]) => Promise<pg.QueryResult<Row>>;
const outbox = async (query: Query, channel: string) =>
  (await query("SELECT channel, op, data, old_data FROM notifiws.outbox WHERE channel = $1 ORDER BY id", [channel])).rows;
const onDb: Query = (sql, params) => db.query<Row>(sql, params);

/** The SQL functions as an older release defined them (test/fixtures), to build a database to upgrade. */
const legacyFunctions = (release: "004" | "005") => readFileSync(join(ROOT, `test/fixtures/legacy-functions-${release}.sql`), "utf8");

/** A new database with the schema of an older release: its migrations, then its functions. */
async function olderDatabase(name: string, release: "004" | "005"): Promise<{ url: URL; old: pg.Client }> {
  await db.query(`CREATE DATABASE ${name}`);
  const url = new URL(db.url);
  url.pathname = `/${name}`;
  await migrate(url.toString(), () => {}, { upTo: release === "004" ? "004_wakeup_mode.sql" : "005_compiled_capture.sql" });
  const old = new pg.Client({ connectionString: url.toString() });
  await old.connect();
  await old.query(legacyFunctions("004"));
  if (release === "005") await old.query(legacyFunctions("005"));
  return { url, old };
}

/** The same writes against a table, in order. */
async function writes(query: (sql: string) => Promise<unknown>, table: string) {
  await query(`INSERT INTO ${table} (name, stock, secret) VALUES ('a', 10, 's1'), ('b', 2, 's2')`);
  await query(`UPDATE ${table} SET stock = stock - 1`);
  await query(`UPDATE ${table} SET secret = 'changed'`); // unpublished only: no event
  await query(`UPDATE ${table} SET "Mixed Case" = 'x' WHERE name = 'a'`);
  await query(`DELETE FROM ${table} WHERE name = 'b'`);
}

const createTable = (name: string, extraColumns = 0) =>
  db.query(
    `CREATE TABLE ${name} (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, stock int, secret text, "Mixed Case" text, note text DEFAULT NULL` +
      Array.from({ length: extraColumns }, (_, i) => `, c${i} int DEFAULT ${i}`).join("") +
      ")",
  );

describe.each(POSTGRES_SERVERS)("capture on %s Postgres", (server) => {
  beforeAll(async () => {
    db = await testPostgres({ server });
  }, 60_000);
  afterAll(() => db?.close());

  describe("compiled capture triggers", () => {
    it("emit exactly what the generic capture() emits: narrow, wide (60 columns) and '*'", async () => {
      const extra = 60;
      const wide = ["id", "name", "stock", "Mixed Case", "note", ...Array.from({ length: extra }, (_, i) => `c${i}`)];
      const cases: [string, string[], boolean][] = [
        ["narrow", ["id", "name", "stock", "Mixed Case", "note"], true],
        ["wide", wide, false],
        ["star", ["*"], true],
      ];
      for (const [name, columns, includeOld] of cases) {
        await createTable(`cap_${name}_generic`, extra);
        await createTable(`cap_${name}_compiled`, extra);
        const cols = `ARRAY[${columns.map((c) => `'${c}'`).join(", ")}]`;
        // The generic function, attached the way watch() attached it before migration 005.
        await db.query(
          `CREATE TRIGGER generic AFTER INSERT OR UPDATE OR DELETE ON cap_${name}_generic FOR EACH ROW
           EXECUTE FUNCTION notifiws.capture('g.${name}', '${`{${columns.map((c) => `"${c}"`).join(",")}}`}', '${includeOld}')`,
        );
        await db.query(`SELECT notifiws.watch('cap_${name}_compiled', 'c.${name}', ${cols}, include_old => ${includeOld})`);
        await writes((sql) => db.query(sql), `cap_${name}_generic`);
        await writes((sql) => db.query(sql), `cap_${name}_compiled`);
        const generic = await outbox(onDb, `g.${name}`);
        const compiled = await outbox(onDb, `c.${name}`);
        // '*' publishes `secret` too, so its secret-only update is two more events.
        const updates = name === "star" ? 5 : 3;
        expect(
          generic.map((r) => r.op),
          name,
        ).toEqual(["insert", "insert", ...Array<string>(updates).fill("update"), "delete"]);
        expect(compiled.map(({ op, data, old_data }) => ({ op, data, old_data }))).toEqual(generic.map(({ op, data, old_data }) => ({ op, data, old_data })));
        if (name !== "star") for (const r of compiled) expect(JSON.stringify(r)).not.toContain("s1");
        if (name === "wide") expect(Object.keys(compiled[0]!.data as object)).toHaveLength(wide.length);
      }
    });

    it("recompile_watches() follows ALTER TABLE: a changed column type and columns added under '*'; unwatch() forgets the watch", async () => {
      await db.query("CREATE TABLE cap_alter (id int PRIMARY KEY, v int, secret text)");
      await db.query("SELECT notifiws.watch('cap_alter', 'alter.list', ARRAY['id', 'v'])");
      await db.query("SELECT notifiws.watch('cap_alter', 'alter.star', ARRAY['*'])");
      await db.query("ALTER TABLE cap_alter ALTER COLUMN v TYPE int8, ADD COLUMN w numeric");
      expect((await db.query<{ n: number }>("SELECT notifiws.recompile_watches() AS n")).rows[0]!.n).toBeGreaterThanOrEqual(2);
      await db.query("INSERT INTO cap_alter VALUES (1, 9007199254740993, 's', 0.30)");
      const got = (
        await db.query<{ channel: string; data: string; types: string }>(
          "SELECT channel, data::text AS data, types::text AS types FROM notifiws.outbox WHERE channel LIKE 'alter.%'",
        )
      ).rows;
      const list = got.find((r) => r.channel === "alter.list")!;
      const star = got.find((r) => r.channel === "alter.star")!;
      expect(JSON.parse(list.data)).toEqual({ id: 1, v: "9007199254740993" });
      expect(JSON.parse(list.types)).toEqual({ id: "int4", v: "int8" });
      expect(JSON.parse(star.data)).toEqual({ id: 1, v: "9007199254740993", secret: "s", w: "0.30" });
      expect(JSON.parse(star.types)).toMatchObject({ w: "numeric" });
      await db.query(
        "CREATE TABLE cap_dropped (id int); SELECT notifiws.watch('cap_dropped', 'alter.dropped', ARRAY['id'], key => ARRAY['id']); DROP TABLE cap_dropped;",
      );
      await db.query("SELECT notifiws.recompile_watches()"); // a watch whose table is gone is forgotten, not an error
      await db.query("SELECT notifiws.unwatch('cap_alter', 'alter.star')");
      expect((await db.query("SELECT channel FROM notifiws.watches WHERE channel LIKE 'alter.%'")).rows).toEqual([{ channel: "alter.list" }]);
    });

    it("unwatch() drops the triggers and the compiled function", async () => {
      await createTable("cap_gone");
      await db.query("SELECT notifiws.watch('cap_gone', 'gone', ARRAY['id', 'stock'])");
      const fn = (await db.query<{ f: string }>("SELECT notifiws.capture_function_name('cap_gone', 'gone') AS f")).rows[0]!.f;
      const exists = async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_proc WHERE proname = $1", [fn])).rows[0]!.n);
      expect(await exists()).toBe(1);
      await db.query("SELECT notifiws.unwatch('cap_gone', 'gone')");
      expect(await exists()).toBe(0);
      await db.query("INSERT INTO cap_gone (name, stock) VALUES ('z', 1)");
      expect(await outbox(onDb, "gone")).toEqual([]);
    });

    it("the upgrade rewrites triggers created before migration 005, keeping their ops and WHEN conditions", async () => {
      const { url, old } = await olderDatabase("capture_upgrade", "004");
      try {
        await old.query(`CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, stock int, secret text, "Mixed Case" text)`);
        await old.query("SELECT notifiws.watch('items', 'items', ARRAY['id', 'name', 'stock'], include_old => true)");
        await old.query("SELECT notifiws.watch('items', 'items.low', ARRAY['id', 'stock'], condition => 'NEW.stock < 5', ops => ARRAY['insert', 'update'])");
        const generic = async () =>
          Number((await old.query<{ n: string }>("SELECT count(*) AS n FROM pg_trigger WHERE tgfoid = 'notifiws.capture()'::regprocedure")).rows[0]!.n);
        expect(await generic()).toBe(5);

        expect(await migrate(url.toString())).toContain("005_compiled_capture.sql");
        expect(await generic()).toBe(0);
        const defs = (
          await old.query<{ def: string }>("SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgname LIKE 'notifiws\\_%' ORDER BY tgname")
        ).rows.map((r) => r.def);
        expect(defs).toHaveLength(5);
        // The insert trigger keeps the condition; the update trigger fires on rows entering or leaving it (migration 008).
        expect(defs.filter((d) => /AFTER INSERT .* WHEN \(\(new\.stock < 5\)\)/.test(d))).toHaveLength(1);
        expect(defs.filter((d) => /AFTER UPDATE .* WHEN \(\(+new\.stock < 5\)+ OR \(+old\.stock < 5\)+/.test(d))).toHaveLength(1);

        await old.query("INSERT INTO items (name, stock, secret) VALUES ('plenty', 50, 'x'), ('few', 3, 'y')");
        await old.query("UPDATE items SET stock = 4 WHERE name = 'plenty'");
        await old.query("DELETE FROM items WHERE name = 'few'");
        const all = await outbox((sql, params) => old.query<Row>(sql, params), "items");
        expect(all.map((r) => r.op)).toEqual(["insert", "insert", "update", "delete"]);
        expect(all[2]).toMatchObject({ data: { stock: 4 }, old_data: { stock: 50 } });
        const low = await outbox((sql, params) => old.query<Row>(sql, params), "items.low");
        expect(low.map((r) => [r.op, (r.data as { stock: number }).stock])).toEqual([
          ["insert", 3],
          ["enter", 4], // 50 -> 4 moves the row into the condition
        ]);
      } finally {
        await old.end();
      }
    });

    it("the upgrade to exact values (006) registers the watches compiled by 005 and recompiles them: same ops, conditions and columns, exact values", async () => {
      const { url, old } = await olderDatabase("exact_upgrade", "005");
      try {
        await old.query(`CREATE TABLE ledger (id int8 PRIMARY KEY, amount numeric, "it's" text, secret text)`);
        await old.query(`SELECT notifiws.watch('ledger', 'ledger', ARRAY['id', 'amount', 'it''s'], include_old => true)`);
        await old.query(`SELECT notifiws.watch('ledger', 'ledger.big', ARRAY['id'], condition => 'NEW.amount > 1000', ops => ARRAY['insert'])`);
        await old.query(`SELECT notifiws.watch('ledger', 'ledger.all', ARRAY['*'])`);
        // Before the upgrade: 005's encoding, a jsonb number (exact in Postgres, rounded by any JSON reader downstream).
        await old.query("INSERT INTO ledger VALUES (1, 1, 'a', 's')");
        expect((await old.query("SELECT data::text AS d FROM notifiws.outbox WHERE channel = 'ledger'")).rows[0]!.d).toContain('"id": 1');
        await old.query("DELETE FROM notifiws.outbox");

        const applied = await migrate(url.toString());
        expect(applied).toEqual(["006_exact_values.sql", "007_wal_capture.sql", "008_live_tables.sql", "functions/capture.sql", "functions/rows.sql"]);
        const watches = (
          await old.query<{ channel: string; columns: string[]; include_old: boolean; ops: string[]; condition: string | null }>(
            "SELECT channel, columns, include_old, ops, condition FROM notifiws.watches ORDER BY channel",
          )
        ).rows;
        expect(watches).toEqual([
          { channel: "ledger", columns: ["id", "amount", "it's"], include_old: true, ops: ["delete", "insert", "update"], condition: null },
          { channel: "ledger.all", columns: ["*"], include_old: false, ops: ["delete", "insert", "update"], condition: null },
          { channel: "ledger.big", columns: ["id"], include_old: false, ops: ["insert"], condition: "(new.amount > (1000)::numeric)" },
        ]);
        expect(await migrate(url.toString())).toEqual([]); // nothing changed: nothing re-applied

        await old.query("INSERT INTO ledger VALUES (9007199254740993, 12345678901234567890.12, 'b', 's')");
        await old.query("UPDATE ledger SET amount = 0.5 WHERE id = 1");
        const rows = (
          await old.query<{ channel: string; op: string; data: string; old: string | null; types: string }>(
            "SELECT channel, op, data::text AS data, old_data::text AS old, types::text AS types FROM notifiws.outbox ORDER BY id",
          )
        ).rows;
        // Triggers on one table fire in name order (hashed channel names): look rows up by channel and op.
        const row = (channel: string, op: string) => rows.find((r) => r.channel === channel && r.op === op)!;
        expect(rows.map((r) => `${r.channel} ${r.op}`).sort()).toEqual([
          "ledger insert",
          "ledger update",
          "ledger.all insert",
          "ledger.all update",
          "ledger.big insert",
        ]);
        expect(JSON.parse(row("ledger", "insert").data)).toEqual({ id: "9007199254740993", amount: "12345678901234567890.12", "it's": "b" });
        expect(JSON.parse(row("ledger", "insert").types)).toEqual({ id: "int8", amount: "numeric", "it's": "text" });
        expect(JSON.parse(row("ledger.big", "insert").data)).toEqual({ id: "9007199254740993" });
        expect(JSON.parse(row("ledger.all", "insert").data)).toEqual({ id: "9007199254740993", amount: "12345678901234567890.12", "it's": "b", secret: "s" });
        expect(JSON.parse(row("ledger", "update").old!)).toEqual({ id: "1", amount: "1", "it's": "a" });
        expect(row("ledger.all", "update").old).toBeNull();
      } finally {
        await old.end();
      }
    });
  });
});
