/**
 * WAL capture beyond what the relay suite runs in both modes (relay.test.ts):
 * switching a database between modes while it is written, a slot Postgres
 * invalidated, a server without logical replication, and the relay's memory
 * while the Worker is down. Real Postgres (18 embedded, 15 the system's).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import pg from "pg";
import { freePort } from "../../scripts/embedded-pg";
import { parseRelayConfig } from "../../relay/config";
import { Relay } from "../../relay/relay";
import { setLogLevel } from "../../shared/log";
import { POSTGRES_SERVERS, testPostgres, type TestPostgres } from "../support/postgres";
import { waitUntil } from "../support/wait";
import { spawnTs } from "../support/process";
import { Receiver, RECEIVER_SECRET } from "../support/receiver";

setLogLevel("error");

let db: TestPostgres;
let receiver: Receiver;
const relays: Relay[] = [];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    WORKER_URL: receiver.url,
    INGEST_SECRET: RECEIVER_SECRET,
    RELAY_HTTP_PORT: "0",
    RELAY_POLL_MS: "20",
    RELAY_BACKOFF_BASE_MS: "20",
    RELAY_BACKOFF_MAX_MS: "200",
    RELAY_STANDBY_POLL_MS: "100",
    RELAY_HEARTBEAT_MS: "200",
    RELAY_TAKEOVER_MS: "1500",
    RELAY_STATEMENT_TIMEOUT_MS: "800",
    LOG_LEVEL: "error",
    ...extra,
  };
}

function startRelay(extra: Record<string, string> = {}): Relay {
  const parsed = parseRelayConfig(env(extra));
  if (!parsed.ok) throw new Error(parsed.message);
  const relay = new Relay(parsed.config);
  relays.push(relay);
  relay.start();
  return relay;
}

const captureMode = async () => (await db.query<{ m: string }>("SELECT notifiws.capture_mode() AS m")).rows[0]!.m;
const slots = async () => (await db.query<{ slot_name: string; wal_status: string }>("SELECT slot_name, wal_status FROM pg_replication_slots")).rows;

/** Every distinct event of a channel once, checking that no id arrived with two contents. */
function distinct(channel: string) {
  const byId = new Map<string, string>();
  for (const e of receiver.deliveries) {
    const body = JSON.stringify(e);
    expect(byId.get(e.id) ?? body).toBe(body);
    byId.set(e.id, body);
  }
  return receiver.forChannel(channel);
}

beforeEach(async () => {
  receiver = await new Receiver().start();
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  await receiver.stop();
});

describe.each(POSTGRES_SERVERS)("WAL capture on %s Postgres", (server) => {
  beforeAll(async () => {
    db = await testPostgres({ server });
    await db.query(`
      CREATE TABLE items (id serial PRIMARY KEY, writer int, n int, note text);
      SELECT notifiws.watch('items', 'items', ARRAY['id', 'writer', 'n']);
      CREATE TABLE filler (x text);
    `);
  });
  afterAll(async () => {
    await db?.close();
  });

  it("switching the database between modes while four writers commit loses no event, duplicates none, and keeps each writer's order; the retired slot is dropped", async () => {
    const writers = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = new pg.Client({ connectionString: db.url });
        await c.connect();
        return c;
      }),
    );
    let stop = false;
    const written = [0, 0, 0, 0];
    // Each writer commits its rows one after another (some transactions hold two rows), so its own order is commit order.
    const writing = writers.map(async (c, w) => {
      for (let n = 1; !stop && n <= 3000; n++) {
        if (n % 5 === 0) {
          await c.query("BEGIN");
          await c.query("INSERT INTO items (writer, n) VALUES ($1, $2)", [w, n]);
          await c.query("INSERT INTO items (writer, n) VALUES ($1, $2)", [w, ++n]);
          await c.query("COMMIT");
        } else await c.query("INSERT INTO items (writer, n) VALUES ($1, $2)", [w, n]);
        written[w] = n;
      }
    });
    try {
      const rowsNow = () => written.reduce((a, b) => a + b, 0);
      const phase = async (mode: "outbox" | "wal", what: (m: string) => boolean) => {
        const relay = startRelay({ RELAY_CAPTURE: mode });
        await waitUntil(`the ${mode} mode`, async () => what(await captureMode()));
        const at = rowsNow();
        await waitUntil(`writes during the ${mode} phase`, () => rowsNow() >= at + 200, 20_000);
        await relay.stop();
        relays.splice(relays.indexOf(relay), 1);
      };
      await phase("outbox", (m) => m === "outbox");
      await phase("wal", (m) => m === "wal");
      await phase("outbox", (m) => m === "outbox");
      await phase("wal", (m) => m === "wal");
      stop = true;
      await Promise.all(writing);
      // The last relay (outbox again) delivers the rest and retires the slot.
      startRelay({ RELAY_CAPTURE: "outbox" });
      const total = rowsNow();
      const evs = await waitUntil(`${total} events`, () => (distinct("items").length >= total ? distinct("items") : undefined), 30_000);
      expect(evs).toHaveLength(total);
      for (let w = 0; w < writers.length; w++) {
        const ns = evs.filter((e) => e.data!.writer === w).map((e) => e.data!.n as number);
        expect(ns).toEqual(Array.from({ length: written[w]! }, (_, i) => i + 1));
      }
      // The slot is dropped first, then its publication.
      await waitUntil(
        "the slot and its publication dropped",
        async () => (await slots()).length === 0 && (await db.query("SELECT 1 FROM pg_publication")).rowCount === 0,
      );
    } finally {
      stop = true;
      await Promise.allSettled(writing);
      await Promise.all(writers.map((c) => c.end()));
    }
  });

  it("a slot Postgres invalidated is detected, logged at error level, recreated, and every watched channel gets a gap marker (clients reset) before new events", async () => {
    const port = await freePort();
    const run = () => spawnTs("relay/main.ts", env({ RELAY_CAPTURE: "wal", RELAY_HTTP_PORT: String(port), LOG_LEVEL: "info" }));
    let relay = run();
    try {
      await waitUntil("the wal mode", async () => (await captureMode()) === "wal", 20_000);
      await db.query("INSERT INTO items (writer, n) VALUES (0, 1)");
      await waitUntil("the first event", () => receiver.forChannel("items").length === 1);
      relay.kill("SIGTERM");
      await relay.exited;
      await db.query("SELECT notifiws.watch('items', 'items.odd', ARRAY['id'], condition => 'NEW.n % 2 = 1')");
      // Written while no relay reads the slot, then the slot falls behind max_slot_wal_keep_size: this change is lost.
      await db.query("INSERT INTO items (writer, n) VALUES (0, 2)");
      await db.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
      await db.query("SELECT pg_reload_conf()");
      try {
        await waitUntil(
          "the slot invalidated",
          async () => {
            await db.query("INSERT INTO filler SELECT repeat(md5(g::text), 64) FROM generate_series(1, 20000) g; SELECT pg_switch_wal(); CHECKPOINT");
            return (await slots())[0]?.wal_status === "lost";
          },
          60_000,
        );
      } finally {
        await db.query("ALTER SYSTEM RESET max_slot_wal_keep_size");
        await db.query("SELECT pg_reload_conf()");
        await db.query("TRUNCATE filler");
      }
      relay = run();
      await waitUntil(
        "gap markers for both watched channels",
        () => receiver.gaps.length >= 2,
        20_000,
        50,
        () => relay.output(),
      );
      expect([...receiver.gaps].sort()).toEqual(["items", "items.odd"]);
      await waitUntil("the slot recreated", async () => (await slots())[0]?.wal_status === "reserved");
      await db.query("INSERT INTO items (writer, n) VALUES (0, 3)");
      const evs = await waitUntil("an event after the new slot", () => (receiver.forChannel("items").length >= 2 ? receiver.forChannel("items") : undefined));
      expect(evs.map((e) => e.data!.n)).toEqual([1, 3]);
      // The gap was sent before the new slot's first event.
      const firstAfter = receiver.rawBodies.findIndex((b) => /"n": ?3[,}]/.test(b));
      const gapAt = receiver.rawBodies.findIndex((b) => b.includes('"gaps"'));
      expect(gapAt).toBeGreaterThanOrEqual(0);
      expect(gapAt).toBeLessThan(firstAfter);
      const logged = relay
        .output()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { level: string; code?: string });
      expect(logged.find((l) => l.code === "SLOT_INVALIDATED")).toMatchObject({ level: "error" });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/notifiws_relay_slot_invalidations_total 1\n/);
      expect(metrics).toMatch(/notifiws_relay_slot_lost 0\n/);
      expect(metrics).toMatch(/notifiws_relay_slot_retained_wal_bytes \d+\n/);
      expect((await db.query("SELECT count(*)::int AS n FROM notifiws.pending_gaps")).rows[0]!.n).toBe(0);
    } finally {
      relay.kill("SIGKILL");
      await relay.exited;
      await db.query("SELECT notifiws.unwatch('items', 'items.odd')");
    }
  });

  it("a slot dropped while the database captures to it (by hand, or by a provider's cleanup) is treated as lost: gap markers, then a new slot", async () => {
    let relay = startRelay({ RELAY_CAPTURE: "wal" });
    await waitUntil("the wal mode", async () => (await captureMode()) === "wal");
    await relay.stop();
    relays.splice(relays.indexOf(relay), 1);
    await db.query("SELECT pg_drop_replication_slot('notifiws')");
    await db.query("INSERT INTO items (writer, n) VALUES (5, 1)"); // its message has no slot to keep it
    relay = startRelay({ RELAY_CAPTURE: "wal" });
    await waitUntil("a gap marker", () => receiver.gaps.includes("items"));
    expect(relay.metrics.slotInvalidations).toBe(1);
    await db.query("INSERT INTO items (writer, n) VALUES (5, 2)");
    await waitUntil("the next event", () => receiver.forChannel("items").some((e) => e.data!.writer === 5 && e.data!.n === 2));
  });

  it("moves an idle slot past the WAL other tables write (it asks for keepalives), so quiet channels do not make Postgres keep WAL", async () => {
    startRelay({ RELAY_CAPTURE: "wal", RELAY_SLOT_STATUS_MS: "200" });
    await waitUntil("the slot streamed", async () => (await db.query("SELECT 1 FROM pg_replication_slots WHERE active")).rowCount === 1);
    // Only an unwatched table is written: no event reaches the relay, so only the walsender's keepalives carry the position.
    await db.query("INSERT INTO filler SELECT repeat('y', 500) FROM generate_series(1, 5000)");
    const written = (await db.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l;
    await waitUntil(
      "the slot past that WAL",
      async () => (await db.query<{ ok: boolean }>("SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots", [written])).rows[0]?.ok,
    );
    await db.query("TRUNCATE filler");
  });

  it("gap markers a leader recorded but did not send (it crashed) are sent by the next leader, whatever its mode, once each", async () => {
    // What a leader leaves when it dies between recording a lost slot's channels and sending their markers.
    const gapId = crypto.randomUUID();
    await db.query("INSERT INTO notifiws.pending_gaps (channel, gap_id) VALUES ('items', $1), ('items.other', $1)", [gapId]);
    startRelay({ RELAY_CAPTURE: "outbox" });
    await waitUntil("both markers", () => receiver.gaps.length >= 2);
    expect([...receiver.gaps].sort()).toEqual(["items", "items.other"]);
    await waitUntil("nothing pending", async () => (await db.query("SELECT 1 FROM notifiws.pending_gaps")).rowCount === 0);
    // Sent with the recorded id as the batch id, so a resend after a lost answer is recognised (409).
    expect(receiver.rawBodies.find((b) => b.includes('"gaps"'))).toContain(gapId);
  });

  it("does not grow without bound while the Worker is down, even for one transaction larger than its buffer: it stops reading at RELAY_WAL_BUFFER_BYTES and delivers everything once the Worker is back", async () => {
    receiver.behaviour = "fail";
    const relay = startRelay({ RELAY_CAPTURE: "wal", RELAY_WAL_BUFFER_BYTES: String(1024 * 1024) });
    await waitUntil("the wal mode", async () => (await captureMode()) === "wal");
    const note = "x".repeat(20_000);
    await db.query("SELECT notifiws.watch('items', 'items.notes', ARRAY['id', 'note'])");
    try {
      // 100 transactions of ~20 KB, then one of 100 rows (2 MB on its own): 4 MB decoded in all, four times the buffer.
      for (let i = 0; i < 100; i++) await db.query("INSERT INTO items (writer, n, note) VALUES (9, $1, $2)", [i, note]);
      await db.query("INSERT INTO items (writer, n, note) SELECT 9, g, $1 FROM generate_series(100, 199) g", [note]);
      await waitUntil("the relay's buffer full", async () => ((await relay.backlog())?.slot?.pendingBytes ?? 0) >= 1024 * 1024 && relay.metrics.failures >= 3);
      let peak = 0;
      for (let i = 0; i < 20; i++) {
        const b = await relay.backlog();
        peak = Math.max(peak, b?.slot?.pendingBytes ?? 0);
        await new Promise((r) => setTimeout(r, 25));
      }
      // The cap plus what was already read off the socket when reading paused.
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThan(1024 * 1024 + 512 * 1024);
      receiver.behaviour = "ok";
      await waitUntil("all 200 notes", () => receiver.forChannel("items.notes").length >= 200, 30_000);
      expect(receiver.forChannel("items.notes").map((e) => e.data!.id)).toEqual(
        [...receiver.forChannel("items.notes").map((e) => e.data!.id as number)].sort((a, b) => a - b),
      );
    } finally {
      await db.query("SELECT notifiws.unwatch('items', 'items.notes')");
    }
  });
});

describe("a server without logical replication", () => {
  beforeAll(async () => {
    db = await testPostgres({ walLevel: "replica" });
    await db.query("CREATE TABLE items (id serial PRIMARY KEY, writer int, n int, note text); SELECT notifiws.watch('items', 'items', ARRAY['id', 'n'])");
  });
  afterAll(async () => {
    await db?.close();
  });

  it("RELAY_CAPTURE=wal on wal_level = replica: an error naming the fix (WAL_UNAVAILABLE), and events keep flowing through the outbox", async () => {
    const relay = spawnTs("relay/main.ts", env({ RELAY_CAPTURE: "wal", LOG_LEVEL: "info" }));
    try {
      expect((await db.query("SHOW wal_level")).rows[0]!.wal_level).toBe("replica");
      await db.query("INSERT INTO items (n) VALUES (1)");
      await waitUntil(
        "delivery through the outbox",
        () => receiver.forChannel("items").length === 1,
        20_000,
        50,
        () => relay.output(),
      );
      const line = relay
        .output()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { level: string; code?: string; msg: string })
        .find((l) => l.code === "WAL_UNAVAILABLE");
      expect(line).toMatchObject({ level: "error" });
      expect(line!.msg).toContain("wal_level = logical");
      expect(await captureMode()).toBe("outbox");
    } finally {
      relay.kill("SIGKILL");
      await relay.exited;
    }
  });
});
