/**
 * Exact values at the relay: what the relay POSTs for a user's table with
 * 64-bit integers, long numerics, float specials, nested JSON with big
 * numbers, arrays and columns named like JavaScript built-ins equals what
 * Postgres says, digit for digit, on both Postgres versions (the embedded 18
 * and the system's 15, a user's own server), in both capture modes (the
 * outbox's jsonb and the logical message's text are spliced the same way).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRelayConfig } from "../../relay/config";
import { Relay } from "../../relay/relay";
import { setLogLevel } from "../../shared/log";
import { CAPTURE_MATRIX, testPostgres, type TestPostgres } from "../support/postgres";
import { Receiver, RECEIVER_SECRET } from "../support/receiver";
import { waitUntil } from "../support/wait";
import { entries, expectedWireRows, FIDELITY_DDL, insertFidelity, watchFidelity } from "../support/fidelity";

setLogLevel("error");

describe.each(CAPTURE_MATRIX)("relay on %s Postgres, %s capture", (server, mode) => {
  let db: TestPostgres;
  let receiver: Receiver;
  let relay: Relay;

  beforeAll(async () => {
    db = await testPostgres({ server });
    await db.query(FIDELITY_DDL);
    await db.query(watchFidelity("fidelity"));
    receiver = await new Receiver().start();
    const cfg = parseRelayConfig({
      DATABASE_URL: db.url,
      WORKER_URL: receiver.url,
      INGEST_SECRET: RECEIVER_SECRET,
      RELAY_HTTP_PORT: "0",
      RELAY_CAPTURE: mode,
      LOG_LEVEL: "error",
    });
    if (!cfg.ok) throw new Error(cfg.message);
    relay = new Relay(cfg.config);
    relay.start();
    // The leader switches the database to its mode as it starts; rows are written after that.
    await waitUntil(`the ${mode} mode`, async () => (await db.query<{ m: string }>("SELECT notifiws.capture_mode() AS m")).rows[0]!.m === mode);
    if (mode === "wal") await waitUntil("the slot streamed", async () => (await db.query("SELECT 1 FROM pg_replication_slots WHERE active")).rowCount === 1);
  }, 120_000);
  afterAll(async () => {
    await relay?.stop();
    await receiver?.stop();
    await db?.close();
  });

  it("posts every column exactly as Postgres gives it, with each column's type, for inserts, updates (old row) and deletes", async () => {
    await insertFidelity(db);
    await db.query("UPDATE fidelity SET i8 = i8 - 1, n = n + 1 WHERE k = 1");
    await db.query("DELETE FROM fidelity WHERE k = 2");
    const expected = await expectedWireRows(db);
    await waitUntil("6 events", () => receiver.deliveries.length >= 6, 20_000);

    // Parse the bodies as any JSON reader would: with a 64-bit float for every number.
    const events = receiver.rawBodies.flatMap(
      (b) =>
        (JSON.parse(b) as { events: { op: string; data: Record<string, unknown>; old?: Record<string, unknown>; types: Record<string, string> }[] }).events,
    );
    const inserts = events.filter((e) => e.op === "insert");
    expect(inserts).toHaveLength(4);
    const inserted = new Map(inserts.map((e) => [e.data.k as number, e.data]));
    const row3 = inserted.get(3)!;
    // Rows as inserted: k = 3 is unchanged, so Postgres's current row is the expectation.
    expect(entries(row3)).toEqual(entries(expected.get(3)));
    expect(entries(inserted.get(4))).toEqual(entries(expected.get(4)));
    expect(inserted.get(1)!.i8).toBe("9223372036854775807");
    expect(inserted.get(1)!.n).toBe("123456789012345678901234567890.123456789012345");
    expect(inserted.get(2)!.f8).toBe("-0");
    expect(Object.hasOwn(inserted.get(1)!, "__proto__")).toBe(true);
    expect(inserted.get(1)!.secret).toBeUndefined();

    const update = events.find((e) => e.op === "update")!;
    expect(entries(update.data)).toEqual(entries(expected.get(1)));
    expect(entries(update.old)).toEqual(entries(inserted.get(1)));
    expect(update.old!.i8).toBe("9223372036854775807");
    expect(update.data.i8).toBe("9223372036854775806");
    expect(update.data.n).toBe("123456789012345678901234567891.123456789012345");

    const del = events.find((e) => e.op === "delete")!;
    expect(del.data.i8).toBe("-9223372036854775808");

    expect(update.types).toMatchObject({
      i2: "int2",
      i4: "int4",
      i8: "int8",
      dom: "int8",
      n: "numeric",
      f4: "float4",
      f8: "float8",
      m: "money",
      j: "json",
      jb: "jsonb",
      by: "bytea",
      a8: "int8[]",
      an: "numeric[]",
      e: "mood",
      tstz: "timestamptz",
      ["__proto__"]: "text",
    });
    expect(Object.keys(update.types).sort()).toEqual(Object.keys(update.data).sort());
  });
});
