/**
 * watch()'s compiled trigger functions (migration 005): the same events as the
 * generic notifiws.capture(), for narrow, wide (over 50 columns: several
 * jsonb_build_object calls) and `*` publications, and an upgrade that rewrites
 * triggers created before the migration without losing their ops or WHEN
 * conditions. Real Postgres.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../db/migrate";
import { testPostgres, type TestPostgres } from "../support/postgres";

let db: TestPostgres;
beforeAll(async () => {
  db = await testPostgres();
}, 60_000);
afterAll(() => db?.close());

type Row = { channel: string; op: string; data: unknown; old_data: unknown };
type Query = (sql: string, params: unknown[]) => Promise<pg.QueryResult<Row>>;
const outbox = async (query: Query, channel: string) =>
  (await query("SELECT channel, op, data, old_data FROM notifiws.outbox WHERE channel = $1 ORDER BY id", [channel])).rows;
const onDb: Query = (sql, params) => db.query<Row>(sql, params);

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
    await db.query("CREATE DATABASE capture_upgrade");
    const url = new URL(db.url);
    url.pathname = "/capture_upgrade";
    await migrate(url.toString(), () => {}, { upTo: "004_wakeup_mode.sql" });
    const old = new pg.Client({ connectionString: url.toString() });
    await old.connect();
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
      expect(defs.filter((d) => /WHEN \(\(new\.stock < 5\)\)/.test(d))).toHaveLength(2);

      await old.query("INSERT INTO items (name, stock, secret) VALUES ('plenty', 50, 'x'), ('few', 3, 'y')");
      await old.query("UPDATE items SET stock = 4 WHERE name = 'plenty'");
      await old.query("DELETE FROM items WHERE name = 'few'");
      const all = await outbox((sql, params) => old.query<Row>(sql, params), "items");
      expect(all.map((r) => r.op)).toEqual(["insert", "insert", "update", "delete"]);
      expect(all[2]).toMatchObject({ data: { stock: 4 }, old_data: { stock: 50 } });
      const low = await outbox((sql, params) => old.query<Row>(sql, params), "items.low");
      expect(low.map((r) => [r.op, (r.data as { stock: number }).stock])).toEqual([
        ["insert", 3],
        ["update", 4],
      ]);
    } finally {
      await old.end();
    }
  });
});
