/**
 * Live tables across the real stack, in both capture modes: Postgres ->
 * relay -> Worker (wrangler dev) -> channel object, with the rows route
 * reading through @neondatabase/serverless and the local bridge as a
 * read-only role that may SELECT the published columns only; liveTable()
 * clients on Node's fetch and WebSocket. Rows loaded at the edge plus live
 * events must equal `SELECT … WHERE condition` while commits land out of
 * order and rows flip in and out of a derived channel.
 */
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { liveTable, type LiveTable } from "../../client/index";
import { devToken } from "../../scripts/stack";
import { useStack } from "../support/stack";
import { waitUntil } from "../support/wait";
import { entries } from "../support/fidelity";

const READER = { user: "edge_reader", password: "edge-reader-password" };
const ROW_CAP = 200;

describe.each(["outbox", "wal"] as const)("live tables, %s capture", (mode) => {
  const tables: LiveTable[] = [];
  const fx = useStack(
    `rows-${mode}`,
    {
      relayEnv: { RELAY_BACKOFF_MAX_MS: "500", RELAY_CAPTURE: mode },
      workerVars: (stack) => {
        const url = new URL(stack.databaseUrl);
        url.username = READER.user;
        url.password = READER.password;
        return { ROWS_DATABASE_URL: url.toString(), ROWS_MAX_ROWS: String(ROW_CAP) };
      },
    },
    () => tables.forEach((t) => t.close()),
  );
  let token: string;

  beforeAll(async () => {
    token = await devToken(fx.stack.secrets);
    await fx.db.query(`
      CREATE TABLE tickets (id bigint PRIMARY KEY, status text NOT NULL, title text, n int8 NOT NULL DEFAULT 0, secret text);
      CREATE TABLE big (id int PRIMARY KEY);
      CREATE TABLE payroll (id int PRIMARY KEY, salary numeric);
      INSERT INTO payroll VALUES (1, 100000);
      INSERT INTO tickets (id, status, title, n, secret)
        SELECT i, CASE WHEN i % 3 = 0 THEN 'urgent' ELSE 'open' END, 'ticket ' || i, 9007199254740993 + i, 'secret-' || i FROM generate_series(1, 40) i;
      INSERT INTO big SELECT generate_series(1, ${ROW_CAP + 1});
      SELECT notifiws.watch('tickets', 'tickets', ARRAY['id', 'status', 'title', 'n']);
      SELECT notifiws.watch('tickets', 'tickets.urgent', ARRAY['id', 'title', 'n'], condition => 'NEW.status = ''urgent''');
      SELECT notifiws.watch('big', 'big', ARRAY['id']);
      SELECT notifiws.watch('payroll', 'payroll', ARRAY['id', 'salary']);
      DROP ROLE IF EXISTS ${READER.user};
      CREATE ROLE ${READER.user} LOGIN PASSWORD '${READER.password}';
      GRANT USAGE ON SCHEMA notifiws TO ${READER.user};
      GRANT SELECT (id, status, title, n) ON tickets TO ${READER.user};
      GRANT SELECT (id) ON big TO ${READER.user};
    `);
  });

  const rowsUrl = (channel: string) => `${fx.stack.workerUrl}/v1/channels/${channel}/rows`;
  const open = (channel: string) => {
    const t = liveTable({ url: fx.stack.workerUrl, channel, getToken: () => devToken(fx.stack.secrets), backoffBaseMs: 50, backoffMaxMs: 500 });
    tables.push(t);
    return t;
  };
  /** What the database holds now, as the channel publishes it (int8 as text). */
  const expected = async (where: string, columns: string) =>
    new Map((await fx.db.query<{ id: string }>(`SELECT ${columns} FROM tickets ${where} ORDER BY id`)).rows.map((r) => [r.id, r as Record<string, unknown>]));
  /** A map of rows as comparable text: rows by key, columns in name order. */
  const canonical = (rows: Iterable<[string, Record<string, unknown>]>) =>
    JSON.stringify([...rows].map(([k, r]) => [k, entries(r)]).sort(([a], [b]) => Number(a) - Number(b)));
  const settledEqual = async (t: LiveTable, where: string, columns: string) => {
    let want = "";
    await waitUntil(
      "the live table to equal the database",
      async () => {
        want = canonical(await expected(where, columns));
        return canonical(t.rows.entries()) === want;
      },
      20_000,
      100,
      () => `table has ${t.rows.size} rows, status ${t.status}, error ${JSON.stringify(t.error)}; table ${canonical(t.rows.entries())} database ${want}`,
    );
  };

  /** `n` connections of their own, one per concurrent writer. */
  const writerClients = (n: number) =>
    Promise.all(
      Array.from({ length: n }, async () => {
        const c = new pg.Client({ connectionString: fx.stack.databaseUrl });
        await c.connect();
        return c;
      }),
    );

  /**
   * Writers whose transactions overlap and commit out of order: each takes a
   * row, holds its transaction open a random while, then commits, so later
   * transactions often commit first. Rows flip between urgent and open.
   */
  async function overlappingWrites(clients: pg.Client[], rounds: number): Promise<void> {
    await Promise.all(
      clients.map(async (c, w) => {
        for (let i = 0; i < rounds; i++) {
          const id = 1 + ((w * 7 + i * 13) % 40);
          await c.query("BEGIN");
          await c.query("UPDATE tickets SET status = CASE WHEN status = 'urgent' THEN 'open' ELSE 'urgent' END, n = n + 1, title = $2 WHERE id = $1", [
            id,
            `w${w} r${i}`,
          ]);
          if (i % 5 === 0)
            await c.query("INSERT INTO tickets (id, status, title) VALUES ($1, 'urgent', 'new') ON CONFLICT (id) DO NOTHING", [1000 + w * 100 + i]);
          if (i % 7 === 3) await c.query("DELETE FROM tickets WHERE id = $1", [1000 + w * 100 + i - 3]);
          await c.query("SELECT pg_sleep($1)", [Math.random() * 0.05]);
          await c.query("COMMIT");
        }
      }),
    );
  }

  it("rows from the edge plus live events equal the database after 8 loads during out-of-order commits, shared loads included", async () => {
    const writers = await writerClients(4);
    try {
      const readsBefore = fx.stack.bridge!.connections;
      const writing = overlappingWrites(writers, 25);
      const all: LiveTable[] = [];
      const urgent: LiveTable[] = [];
      // Four loads at once (one read, the others join it or share it), then four more spread over the writes.
      for (let i = 0; i < 4; i++) (i % 2 ? urgent : all).push(open(i % 2 ? "tickets.urgent" : "tickets"));
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 150));
        (i % 2 ? urgent : all).push(open(i % 2 ? "tickets.urgent" : "tickets"));
      }
      await writing;
      for (const t of all) await settledEqual(t, "", "id::text AS id, status, title, n::text AS n");
      for (const t of urgent) await settledEqual(t, "WHERE status = 'urgent'", "id::text AS id, title, n::text AS n");
      expect(all.every((t) => t.loads >= 1 && t.error === undefined)).toBe(true);
      // Eight loads, fewer reads: the channel's object handed a read to loads that came while it ran or soon after.
      expect(fx.stack.bridge!.connections - readsBefore).toBeLessThan(8);
    } finally {
      await Promise.all(writers.map((c) => c.end()));
    }
  });

  it("keeps a derived channel's list equal while concurrent updates flip rows in and out", async () => {
    const t = open("tickets.urgent");
    await t.ready;
    const writers = await writerClients(3);
    try {
      await overlappingWrites(writers, 30);
    } finally {
      await Promise.all(writers.map((c) => c.end()));
    }
    await settledEqual(t, "WHERE status = 'urgent'", "id::text AS id, title, n::text AS n");
  });

  it("collapses 200 concurrent loads onto one database read at most, all with the same answer", async () => {
    const readsBefore = fx.stack.bridge!.connections;
    const answers = await Promise.all(
      Array.from({ length: 200 }, () =>
        fetch(rowsUrl("tickets"), { headers: { authorization: `Bearer ${token}` } }).then(async (r) => ({
          status: r.status,
          source: r.headers.get("notifiws-rows-source"),
          body: await r.text(),
        })),
      ),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    // One read at most (none when the object's latest read is still shareable); every load gets its answer.
    expect(fx.stack.bridge!.connections - readsBefore).toBeLessThanOrEqual(1);
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect(answers.filter((a) => a.source === "read").length).toBeLessThanOrEqual(1);
    // /stats counts the loads and the reads they cost (the channel's object reports within STATS_ROLLUP_MS).
    const stats = await waitUntil(
      "the rows counters in /stats",
      async () => {
        const res = await fetch(`${fx.stack.workerUrl}/stats`, { headers: { authorization: `Bearer ${fx.stack.secrets.ADMIN_TOKEN}` } });
        const body = (await res.json()) as { channels: { channel: string; rowsLoads: number; rowsReads: number }[] };
        const ch = body.channels.find((c) => c.channel === "tickets");
        return ch && ch.rowsLoads >= 200 ? ch : undefined;
      },
      15_000,
      200,
    );
    expect(stats.rowsReads).toBeGreaterThanOrEqual(1);
    expect(stats.rowsReads).toBeLessThanOrEqual(stats.rowsLoads - 199);
  });

  it("never sends an unpublished column, refuses a token for another channel, a table the role may not read, and one over the cap", async () => {
    const res = await fetch(rowsUrl("tickets"), { headers: { authorization: `Bearer ${token}` } });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).not.toContain("secret");
    const body = JSON.parse(text) as { key: string[]; table: string; types: Record<string, string>; fromSeq: number };
    expect(body).toMatchObject({ key: ["id"], table: "public.tickets", types: { id: "int8", n: "int8" } });
    expect(Number.isSafeInteger(body.fromSeq)).toBe(true);

    const narrow = await devToken(fx.stack.secrets, { channels: ["sales"] });
    const forbidden = await fetch(rowsUrl("tickets"), { headers: { authorization: `Bearer ${narrow}` } });
    expect(forbidden.status).toBe(403);
    expect(((await forbidden.json()) as { error: { code: string } }).error.code).toBe("CHANNEL_FORBIDDEN");

    const big = await fetch(rowsUrl("big"), { headers: { authorization: `Bearer ${token}` } });
    expect(big.status).toBe(422);
    expect(((await big.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: "TABLE_TOO_LARGE",
      message: expect.stringContaining(`more than ${ROW_CAP} rows`),
    });
    // A table the route's role may not read: refused with what Postgres said, never a value.
    const payroll = await fetch(rowsUrl("payroll"), { headers: { authorization: `Bearer ${token}` } });
    const refused = await payroll.text();
    expect(payroll.status).toBe(503);
    expect(JSON.parse(refused).error).toMatchObject({ code: "ROWS_MISCONFIGURED", message: expect.stringContaining("permission denied") });
    expect(refused).not.toContain("100000");
    // The SDK reports it as a permanent error and closes.
    const t = open("big");
    await waitUntil("the refusal", () => t.status === "closed" && t.error);
    expect(t.error).toMatchObject({ status: 422, code: "TABLE_TOO_LARGE", permanent: true });
  });
});
