import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import pg from "pg";
import { freePort } from "../../scripts/embedded-pg";
import { parseRelayConfig, type RelayConfig } from "../../relay/config";
import { Relay } from "../../relay/relay";
import { setLogLevel } from "../../shared/log";
import { CAPTURE_MATRIX, testPostgres, type TestPostgres } from "../support/postgres";
import { waitUntil } from "../support/wait";
import { spawnTs } from "../support/process";
import { Receiver, RECEIVER_SECRET } from "../support/receiver";
import { TcpProxy } from "../support/tcpproxy";
import { IngestBatch } from "../../shared/protocol";
import { prepareCapture, switchToWal } from "../../relay/capture";

setLogLevel("error");

let db: TestPostgres;
let receiver: Receiver;
const relays: Relay[] = [];

/** The capture mode under test (RELAY_CAPTURE): the suites below run in both. */
let mode: "outbox" | "wal";

beforeEach(async () => {
  receiver = await new Receiver().start();
  await db.query("TRUNCATE items; DELETE FROM notifiws.outbox; DELETE FROM notifiws.dead_letter;");
  // What an earlier test left unconfirmed in the slot must not reach this test's receiver.
  if (mode === "wal")
    await waitUntil("the slot skipped to now", () =>
      db.query("SELECT pg_replication_slot_advance('notifiws', pg_current_wal_lsn())").then(
        () => true,
        () => false, // still active: a killed relay's walsender is on its way out
      ),
    );
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  await receiver.stop();
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    WORKER_URL: receiver?.url ?? "http://127.0.0.1:9",
    INGEST_SECRET: RECEIVER_SECRET,
    RELAY_HTTP_PORT: "0",
    RELAY_POLL_MS: "20",
    RELAY_BACKOFF_BASE_MS: "20",
    RELAY_BACKOFF_MAX_MS: "300",
    RELAY_STANDBY_POLL_MS: "100",
    RELAY_HEARTBEAT_MS: "200",
    RELAY_TAKEOVER_MS: "1500",
    RELAY_STATEMENT_TIMEOUT_MS: "800",
    RELAY_CAPTURE: mode,
    LOG_LEVEL: "error",
    ...extra,
  };
}

function config(extra: Record<string, string> = {}): RelayConfig {
  const r = parseRelayConfig(env(extra));
  if (!r.ok) throw new Error(r.message);
  return r.config;
}

function startRelay(extra: Record<string, string> = {}): Relay {
  const relay = new Relay(config(extra));
  relays.push(relay);
  relay.start();
  return relay;
}

const outboxCount = async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM notifiws.outbox")).rows[0]!.n);
/** Events captured but not yet stored by the Worker: outbox rows, plus what the in-process relays hold from the slot. */
const undelivered = async () => (await outboxCount()) + relays.reduce((n, r) => n + r.walPending(), 0);
/** A relay process has nothing left to deliver: no outbox rows and, in wal mode, nothing buffered from the slot. */
async function processSettled(port: number): Promise<boolean> {
  if ((await outboxCount()) > 0) return false;
  if (mode === "outbox") return true;
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return /notifiws_relay_wal_buffered_bytes 0\n/.test(metrics);
}

describe.each(CAPTURE_MATRIX)("relay on %s Postgres, %s capture", (server, captureMode) => {
  beforeAll(async () => {
    mode = captureMode;
    db = await testPostgres({ server });
    await db.query(`
      CREATE TABLE items (id serial PRIMARY KEY, name text, stock int, secret text, blob text);
      SELECT notifiws.watch('items', 'items', ARRAY['id', 'name', 'stock', 'blob'], include_old => true);
      SELECT notifiws.watch('items', 'items.low', ARRAY['id', 'stock'], condition => 'NEW.stock < 5', ops => ARRAY['insert', 'update']);
    `);
    // The database is in this mode before any test writes (rows written before a relay starts are in the test).
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const plan = await prepareCapture(admin, config());
      if (plan.switchToWal) await switchToWal(admin, "notifiws");
    } finally {
      await admin.end();
    }
  });
  afterAll(async () => {
    await db?.close();
  });

  describe("triggers and outbox", () => {
    it("captures insert, update (with old) and delete with only published columns", async () => {
      startRelay();
      await db.query("INSERT INTO items (name, stock, secret) VALUES ('a', 10, 'hunter2')");
      await db.query("UPDATE items SET stock = 9 WHERE name = 'a'");
      await db.query("UPDATE items SET secret = 'changed' WHERE name = 'a'"); // unpublished column only: no event
      await db.query("DELETE FROM items WHERE name = 'a'");
      const evs = await waitUntil("3 item events", () => (receiver.forChannel("items").length >= 3 ? receiver.forChannel("items") : undefined));
      expect(evs.map((e) => e.op)).toEqual(["insert", "update", "delete"]);
      expect(evs[0]).toMatchObject({ table: "public.items", data: { name: "a", stock: 10, blob: null } });
      expect(evs[1]).toMatchObject({ data: { stock: 9 }, old: { stock: 10 } });
      expect(evs[2]).toMatchObject({ data: { name: "a", stock: 9 } });
      await waitUntil("everything delivered", async () => (await undelivered()) === 0);
      expect(receiver.forChannel("items")).toHaveLength(3);
      for (const body of receiver.rawBodies) {
        expect(body).not.toContain("hunter2");
        expect(body).not.toContain("secret");
      }
    });

    it("routes rows matching a condition to a derived channel", async () => {
      startRelay();
      await db.query("INSERT INTO items (name, stock) VALUES ('plenty', 50), ('few', 3)");
      await db.query("UPDATE items SET stock = 2 WHERE name = 'plenty'");
      const low = await waitUntil("2 low-stock events", () => (receiver.forChannel("items.low").length >= 2 ? receiver.forChannel("items.low") : undefined));
      expect(low.map((e) => e.data)).toEqual([expect.objectContaining({ stock: 3 }), expect.objectContaining({ stock: 2 })]);
      expect(Object.keys(low[0]!.data!).sort()).toEqual(["id", "stock"]);
      await waitUntil("all item events", () => receiver.forChannel("items").length >= 3);
    });

    it("sends no NOTIFY by default (no commit lock), and one per transaction with notifiws.wakeup = 'notify'", async () => {
      const listener = new pg.Client({ connectionString: db.url });
      await listener.connect();
      const writer = new pg.Client({ connectionString: db.url });
      await writer.connect();
      try {
        const heard: string[] = [];
        listener.on("notification", (n) => heard.push(n.channel));
        await listener.query("LISTEN notifiws_outbox");
        startRelay();
        await writer.query("INSERT INTO items (name, stock) VALUES ('polled', 100)");
        await waitUntil("delivery", () => receiver.forChannel("items").length === 1);
        expect(heard).toEqual([]);
        await writer.query("SET notifiws.wakeup = 'notify'");
        await writer.query("INSERT INTO items (name, stock) VALUES ('notified', 100)");
        // Only the outbox mode has a wake-up; the WAL needs none, so the same setting stays silent there.
        if (mode === "outbox") await waitUntil("a NOTIFY when asked for", () => heard.length === 1);
        await waitUntil("delivery", () => receiver.forChannel("items").length === 2);
        expect(heard).toHaveLength(mode === "outbox" ? 1 : 0);
      } finally {
        await Promise.all([listener.end(), writer.end()]);
      }
    });

    it("refuses watch() with an unknown column or a bad channel name", async () => {
      await expect(db.query("SELECT notifiws.watch('items', 'x', ARRAY['nope'])")).rejects.toThrow(/has no column/);
      await expect(db.query("SELECT notifiws.watch('items', 'bad name', ARRAY['id'])")).rejects.toThrow(/invalid channel/);
      await expect(db.query("SELECT notifiws.watch('items', 'x', ARRAY[]::text[])")).rejects.toThrow(/allow-list is required/);
    });

    it("unwatch() stops publishing", async () => {
      startRelay();
      await db.query("CREATE TABLE IF NOT EXISTS tmp_w (id int PRIMARY KEY); SELECT notifiws.watch('tmp_w', 'tmp', ARRAY['*'])");
      await db.query("INSERT INTO tmp_w VALUES (1)");
      await db.query("SELECT notifiws.unwatch('tmp_w', 'tmp')");
      await db.query("INSERT INTO tmp_w VALUES (2)");
      await db.query("INSERT INTO items (name, stock) VALUES ('marker', 100)"); // committed after the second insert
      await waitUntil("the marker", () => receiver.forChannel("items").length === 1);
      expect(receiver.forChannel("tmp").map((e) => e.data)).toEqual([{ id: 1 }]);
    });

    it("delivers a row larger than NOTIFY's 8000-byte limit intact", async () => {
      startRelay();
      const blob = "ñ".repeat(50_000);
      await db.query("INSERT INTO items (name, stock, blob) VALUES ('big', 10, $1)", [blob]);
      const [e] = await waitUntil("the big row", () => (receiver.forChannel("items").length >= 1 ? receiver.forChannel("items") : undefined));
      expect(e!.data!.blob).toBe(blob);
    });
  });

  describe("delivery order and completeness", () => {
    it("delivers concurrent transactions that commit out of id order exactly once, each in order, causally ordered", async () => {
      startRelay({ RELAY_BATCH_MAX_EVENTS: "7" });
      const writers = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const c = new pg.Client({ connectionString: db.url });
          await c.connect();
          return c;
        }),
      );
      try {
        // Each round: every writer opens a transaction and inserts (taking outbox ids in writer order),
        // then they commit in reverse order, so the highest ids become visible first.
        const rounds = 8;
        for (let round = 0; round < rounds; round++) {
          for (const [w, c] of writers.entries()) {
            await c.query("BEGIN");
            for (let row = 0; row < 3; row++) await c.query("INSERT INTO items (name, stock) VALUES ($1, 100)", [`w${w}.t${round}.r${row}`]);
          }
          for (const c of [...writers].reverse()) await c.query("COMMIT");
        }
        const total = rounds * writers.length * 3;
        const evs = await waitUntil(`${total} events`, () => (receiver.forChannel("items").length >= total ? receiver.forChannel("items") : undefined), 20_000);
        const names = evs.map((e) => String(e.data!.name));
        expect(new Set(names).size).toBe(total); // no loss, no duplicate
        const position = new Map(names.map((n, i) => [n, i]));
        for (let w = 0; w < writers.length; w++)
          for (let t = 0; t < rounds; t++) {
            // A transaction's rows arrive in their order...
            const at = [0, 1, 2].map((r) => position.get(`w${w}.t${t}.r${r}`)!);
            expect(at).toEqual([...at].sort((a, b) => a - b));
            // ...and after every row of a transaction that committed before this one began.
            if (t > 0) for (let v = 0; v < writers.length; v++) expect(position.get(`w${v}.t${t - 1}.r2`)!).toBeLessThan(at[0]!);
          }
        await waitUntil("everything delivered", async () => (await undelivered()) === 0);
      } finally {
        await Promise.all(writers.map((c) => c.end()));
      }
    });

    it("delivers a transaction that commits late with a lower id", async () => {
      startRelay();
      const late = new pg.Client({ connectionString: db.url });
      await late.connect();
      try {
        await late.query("BEGIN");
        await late.query("INSERT INTO items (name, stock) VALUES ('late', 100)"); // takes the lower outbox id
        await db.query("INSERT INTO items (name, stock) VALUES ('early', 100)");
        await waitUntil("the early commit", () => receiver.forChannel("items").some((e) => e.data!.name === "early"));
        await late.query("COMMIT");
        await waitUntil("the late commit", () => receiver.forChannel("items").some((e) => e.data!.name === "late"));
        await waitUntil("nothing left", async () => (await undelivered()) === 0);
        expect(receiver.forChannel("items")).toHaveLength(2);
      } finally {
        await late.end();
      }
    });

    it("retries while the Worker answers 500, losing nothing", async () => {
      receiver.behaviour = "fail";
      const relay = startRelay();
      for (let i = 1; i <= 20; i++) await db.query("INSERT INTO items (name, stock) VALUES ($1, 100)", [`r${i}`]);
      await waitUntil("a few failed attempts", () => relay.metrics.failures >= 3);
      expect(await undelivered()).toBe(20);
      receiver.behaviour = "ok";
      await waitUntil("20 events after recovery", () => receiver.forChannel("items").length >= 20);
      await waitUntil("everything delivered", async () => (await undelivered()) === 0);
      expect(relay.metrics.retries).toBeGreaterThan(0);
    });

    it("times out a hanging Worker and redelivers the same batch: same batch id, same event ids and bodies", async () => {
      receiver.behaviour = "hang";
      const relay = startRelay({ RELAY_POST_TIMEOUT_MS: "300" });
      await db.query("INSERT INTO items (name, stock) VALUES ('h1', 100), ('h2', 100)");
      await waitUntil("two hung requests (the first timed out and was retried)", () => receiver.hungBodies.length >= 2);
      expect(relay.metrics.refusalCount("TIMEOUT")).toBeGreaterThanOrEqual(1);
      receiver.behaviour = "ok";
      const evs = await waitUntil("both events", () => (receiver.forChannel("items").length >= 2 ? receiver.forChannel("items") : undefined));
      expect(evs.map((e) => e.data!.name)).toEqual(["h1", "h2"]);
      const hung = receiver.hungBodies.map((b) => IngestBatch.parse(JSON.parse(b)));
      const delivered = IngestBatch.parse(JSON.parse(receiver.rawBodies[0]!));
      for (const h of hung) {
        expect(h.batchId).toBe(delivered.batchId);
        expect(h.events).toEqual(delivered.events);
      }
      await waitUntil("everything delivered", async () => (await undelivered()) === 0);
    });

    it("treats 409 BATCH_REPLAYED after a lost acknowledgement as delivered: rows deleted, nothing sent twice", async () => {
      receiver.behaviour = "lose-ack";
      const relay = startRelay();
      await db.query("INSERT INTO items (name, stock) VALUES ('a1', 100), ('a2', 100), ('a3', 100)");
      await waitUntil("a stored batch whose answer was lost", () => receiver.lostAcks >= 1);
      receiver.behaviour = "ok";
      await waitUntil("everything delivered after the 409", async () => (await undelivered()) === 0);
      expect(receiver.deliveries.map((e) => e.data!.name)).toEqual(["a1", "a2", "a3"]); // stored once, never resent as new
      expect(relay.metrics.eventsDelivered).toBe(3);
      expect(relay.metrics.retries).toBeGreaterThanOrEqual(1);
    });

    it("dead-letters exactly the event the Worker refuses as too large (multibyte, by bytes) and delivers the rest", async () => {
      receiver.maxEventBytes = 100_000;
      startRelay();
      // 40,000 × "é" is 40,000 UTF-16 units but 80,000 bytes; 60,000 × "é" is over the 100,000-byte cap.
      await db.query("INSERT INTO items (name, stock, blob) VALUES ('small1', 1, $1), ('huge', 1, $2), ('small2', 1, $1)", [
        "é".repeat(40_000),
        "é".repeat(60_000),
      ]);
      const evs = await waitUntil("the two small rows", () => (receiver.forChannel("items").length >= 2 ? receiver.forChannel("items") : undefined));
      expect(evs.map((e) => e.data!.name)).toEqual(["small1", "small2"]);
      const dead = await waitUntil("the huge row in dead_letter", async () => {
        const r = await db.query<{ data: { name: string }; reason: string }>("SELECT data, reason FROM notifiws.dead_letter");
        return r.rowCount === 1 ? r.rows[0] : undefined;
      });
      expect(dead!.data.name).toBe("huge");
      expect(dead!.reason).toContain("EVENT_TOO_LARGE");
      // The receiver records events before it answers: wait for the relay's delete, not just the delivery.
      await waitUntil("everything delivered", async () => (await undelivered()) === 0);
    });

    it("halves batches refused as too large (413 without ids) until a lone refused event is dead-lettered", async () => {
      receiver.maxBodyBytes = 50_000;
      startRelay();
      await db.query("INSERT INTO items (name, stock) SELECT 'before' || g, 100 FROM generate_series(1, 5) g");
      await db.query("INSERT INTO items (name, stock, blob) VALUES ('huge', 100, $1)", ["ü".repeat(30_000)]); // 60,000 bytes
      await db.query("INSERT INTO items (name, stock) SELECT 'after' || g, 100 FROM generate_series(1, 5) g");
      const evs = await waitUntil("the 10 small rows", () => (receiver.forChannel("items").length >= 10 ? receiver.forChannel("items") : undefined));
      expect(evs.map((e) => e.data!.name)).toEqual([
        ...Array.from({ length: 5 }, (_, i) => `before${i + 1}`),
        ...Array.from({ length: 5 }, (_, i) => `after${i + 1}`),
      ]);
      const dead = await db.query<{ data: { name: string }; reason: string }>("SELECT data, reason FROM notifiws.dead_letter");
      expect(dead.rows.map((r) => r.data.name)).toEqual(["huge"]);
      expect(dead.rows[0]!.reason).toContain("413");
    });

    it("keeps relay batches under RELAY_BATCH_MAX_BYTES measured in UTF-8 bytes", async () => {
      startRelay({ RELAY_BATCH_MAX_BYTES: "100000" });
      // Each row: 20,000 "€" = 60,000 bytes; two would fit by string length, not by bytes.
      await db.query("INSERT INTO items (name, stock, blob) SELECT 'e' || g, 100, $1 FROM generate_series(1, 4) g", ["€".repeat(20_000)]);
      await waitUntil("4 events", () => receiver.forChannel("items").length >= 4);
      for (const b of receiver.rawBodies) expect(Buffer.byteLength(b)).toBeLessThan(100_000 + 200);
      expect(receiver.batchSizes.every((n) => n === 1)).toBe(true);
    });

    it("holds back only a channel the edge fails to store, keeps the others flowing, then delivers it in order", async () => {
      receiver.failChannels.add("items.low");
      const relay = startRelay();
      // Each insert writes one 'items' event, and one 'items.low' event when stock < 5.
      for (let i = 1; i <= 5; i++) await db.query("INSERT INTO items (name, stock) VALUES ($1, 1)", [`low${i}`]);
      for (let i = 1; i <= 5; i++) await db.query("INSERT INTO items (name, stock) VALUES ($1, 100)", [`ok${i}`]);
      await waitUntil("all 10 'items' events while items.low fails", () => receiver.forChannel("items").length >= 10);
      expect(receiver.forChannel("items.low")).toHaveLength(0);
      // The receiver records the stored events before it answers 503: wait for the relay to act on the answer.
      await waitUntil("items.low held back", () => relay.metrics.heldChannels === 1);
      const waiting = await waitUntil("only items.low rows left", async () => {
        const r = await db.query<{ channel: string }>("SELECT DISTINCT channel FROM notifiws.outbox");
        return r.rows.length === 1 ? r.rows : undefined;
      });
      expect(waiting.map((r) => r.channel)).toEqual(["items.low"]);
      receiver.failChannels.clear();
      const low = await waitUntil("the held channel after recovery", () =>
        receiver.forChannel("items.low").length >= 5 ? receiver.forChannel("items.low") : undefined,
      );
      expect(low.map((e) => e.data!.id)).toEqual([...low.map((e) => e.data!.id as number)].sort((a, b) => a - b));
      expect(low).toHaveLength(5);
      await waitUntil("everything delivered", async () => (await undelivered()) === 0);
      expect(relay.metrics.heldChannels).toBe(0);
    });

    it("counts a refusal retrying cannot fix, backs off, and logs the clock skew of STALE_TIMESTAMP", async () => {
      receiver.behaviour = "refuse";
      const serverTime = Math.floor(Date.now() / 1000) + 900;
      receiver.refusal = { status: 401, body: { error: { code: "STALE_TIMESTAMP", message: "timestamp outside the window", serverTime } } };
      const port = await freePort();
      const child = spawnTs("relay/main.ts", env({ RELAY_HTTP_PORT: String(port), LOG_LEVEL: "info" }));
      try {
        await db.query("INSERT INTO items (name, stock) VALUES ('skewed', 100)");
        await waitUntil("three refusals", () => receiver.requests >= 3, 15_000);
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        expect(metrics).toMatch(/notifiws_relay_post_refusals_total\{status="401",code="STALE_TIMESTAMP"\} [3-9]/);
        const line = child
          .output()
          .split("\n")
          .map((l) => (l.startsWith("{") ? (JSON.parse(l) as Record<string, unknown>) : {}))
          .find((l) => l.code === "STALE_TIMESTAMP");
        expect(line).toMatchObject({ level: "error", status: 401 });
        expect(Math.abs((line!.clockSkewSeconds as number) - 900)).toBeLessThanOrEqual(2);
        expect(await processSettled(port)).toBe(false); // nothing forgotten while refused
        receiver.behaviour = "ok";
        await waitUntil("delivered once the cause is fixed", () => receiver.forChannel("items").length === 1, 15_000);
      } finally {
        child.kill("SIGKILL");
        await child.exited;
      }
    });

    it("splits batches the Worker refuses as too large (413), losing nothing", async () => {
      receiver.maxEvents = 3;
      startRelay();
      const names = Array.from({ length: 10 }, (_, i) => `s${i + 1}`);
      await db.query("INSERT INTO items (name, stock) SELECT unnest($1::text[]), 100", [names]);
      const evs = await waitUntil("10 events in smaller batches", () => (receiver.forChannel("items").length >= 10 ? receiver.forChannel("items") : undefined));
      expect(evs.map((e) => e.data!.name)).toEqual(names);
      expect(Math.max(...receiver.batchSizes)).toBeLessThanOrEqual(3);
      await waitUntil("everything delivered", async () => (await undelivered()) === 0);
    });

    it("moves rows the edge could never accept to notifiws.dead_letter", async () => {
      startRelay();
      await db.query("INSERT INTO notifiws.outbox (channel, op, table_name, data) VALUES ('bad channel!', 'insert', 'public.x', '{}')");
      await db.query("INSERT INTO items (name, stock) VALUES ('fine', 100)");
      await waitUntil("the good row", () => receiver.forChannel("items").length === 1);
      await waitUntil("the dead letter", async () => (await db.query("SELECT reason FROM notifiws.dead_letter")).rowCount === 1);
      await waitUntil("everything delivered", async () => (await undelivered()) === 0);
    });
  });

  describe("failures of Postgres", () => {
    it("reconnects after its backend is terminated and catches up", async () => {
      const relay = startRelay();
      await waitUntil("leader", () => relay.metrics.leader);
      await db.query("INSERT INTO items (name, stock) VALUES ('before', 100)");
      await waitUntil("first event", () => receiver.forChannel("items").length === 1);
      await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'notifiws-relay'");
      await db.query("INSERT INTO items (name, stock) VALUES ('after', 100)");
      await waitUntil("event after reconnect", () => receiver.forChannel("items").length === 2, 15_000);
      expect(relay.metrics.reconnects).toBeGreaterThanOrEqual(1);
    });

    it("survives a Postgres restart mid-stream and delivers the backlog", async () => {
      if (process.env.DATABASE_URL) return; // cannot restart an external server
      receiver.behaviour = "fail";
      const relay = startRelay();
      for (let i = 1; i <= 30; i++) await db.query("INSERT INTO items (name, stock) VALUES ($1, 100)", [`p${i}`]);
      await waitUntil("failed attempts", () => relay.metrics.failures >= 1);
      await db.stop();
      await db.start();
      receiver.behaviour = "ok";
      await db.query("INSERT INTO items (name, stock) VALUES ('p31', 100)").catch(async () => {
        // the pool's old connections died with the server; the next query gets a fresh one
        await db.query("INSERT INTO items (name, stock) VALUES ('p31', 100)");
      });
      const evs = await waitUntil(
        "31 events after restart",
        () => (receiver.forChannel("items").length >= 31 ? receiver.forChannel("items") : undefined),
        20_000,
      );
      expect(evs.map((e) => e.data!.name)).toEqual(Array.from({ length: 31 }, (_, i) => `p${i + 1}`));
    });
  });

  describe("leadership", () => {
    it("lets exactly one relay drain and fails over when the leader dies", async () => {
      const a = startRelay();
      await waitUntil("a leads", () => a.metrics.leader);
      const b = startRelay();
      await waitUntil("b connected", () => b.metrics.connected);
      expect(b.metrics.leader).toBe(false);
      await db.query("INSERT INTO items (name, stock) VALUES ('one', 100)");
      await waitUntil("delivered by a", () => a.metrics.eventsDelivered === 1);
      expect(b.metrics.eventsDelivered).toBe(0);
      await a.stop();
      await waitUntil("b takes over", () => b.metrics.leader, 5000);
      await db.query("INSERT INTO items (name, stock) VALUES ('two', 100)");
      await waitUntil("delivered by b", () => b.metrics.eventsDelivered === 1);
      expect(receiver.forChannel("items").map((e) => e.data!.name)).toEqual(["one", "two"]);
    });
  });

  describe("a leader that stops making progress is replaced", () => {
    const health = async (port: number) => (await fetch(`http://127.0.0.1:${port}/healthz`)).json() as Promise<{ leader: boolean; connected: boolean }>;

    /** Starts a relay process and waits until it is the leader (or a connected standby). */
    async function relayProcess(role: "leader" | "standby", extra: Record<string, string> = {}) {
      const port = await freePort();
      const child = spawnTs("relay/main.ts", env({ RELAY_HTTP_PORT: String(port), ...extra }));
      await waitUntil(
        `relay ${role}`,
        async () => {
          const h = await health(port).catch(() => undefined);
          return h?.connected && h.leader === (role === "leader");
        },
        20_000,
      );
      return { child, port };
    }

    const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
    const insert = (list: string[]) => db.query("INSERT INTO items (name, stock) SELECT unnest($1::text[]), 100", [list]);
    /** Every distinct event, each id delivered with one content (the edge drops repeated ids). */
    function distinctNames(): string[] {
      const byId = new Map<string, string>();
      for (const e of receiver.deliveries) {
        const body = JSON.stringify(e);
        expect(byId.get(e.id) ?? body).toBe(body);
        byId.set(e.id, body);
      }
      return receiver.forChannel("items").map((e) => String(e.data!.name));
    }

    it("frozen leader (SIGSTOP), production timings: the standby takes over within 30 s, nothing lost", async () => {
      const production = { RELAY_HEARTBEAT_MS: "2000", RELAY_TAKEOVER_MS: "10000", RELAY_STATEMENT_TIMEOUT_MS: "5000", RELAY_STANDBY_POLL_MS: "1000" };
      const a = await relayProcess("leader", production);
      const b = await relayProcess("standby", production);
      try {
        await insert(["before"]);
        await waitUntil("delivered by the leader", () => receiver.forChannel("items").length === 1);
        a.child.proc.kill("SIGSTOP");
        const frozenAt = Date.now();
        await insert(names("f", 20));
        await waitUntil("the standby leads", async () => (await health(b.port)).leader, 30_000);
        await waitUntil("rows written while the leader was frozen", () => receiver.forChannel("items").length >= 21, 30_000 - (Date.now() - frozenAt));
        expect(Date.now() - frozenAt).toBeLessThan(30_000);
        expect(distinctNames()).toEqual(["before", ...names("f", 20)]);
        // The old leader wakes up: its session was terminated, so it rejoins as a standby.
        a.child.proc.kill("SIGCONT");
        await waitUntil("the old leader stands by", async () => (await health(a.port).catch(() => undefined))?.leader === false, 20_000);
        await insert(["after"]);
        await waitUntil("delivery continues", () => receiver.forChannel("items").length === 22);
        await waitUntil("everything delivered", () => processSettled(b.port));
      } finally {
        a.child.proc.kill("SIGCONT");
        a.child.kill("SIGKILL");
        b.child.kill("SIGKILL");
        await Promise.all([a.child.exited, b.child.exited]);
      }
    });

    it("a healthy leader catching up a large backlog keeps its heartbeat: no reconnect, no takeover", async () => {
      await db.query("INSERT INTO items (name, stock) SELECT 'b' || g, 100 FROM generate_series(1, 20000) g");
      const leader = startRelay();
      await waitUntil("leader", () => leader.metrics.leader);
      const standby = startRelay();
      await waitUntil("20,000 events", () => receiver.forChannel("items").length >= 20_000, 60_000);
      expect(leader.metrics.reconnects).toBe(0);
      expect(standby.metrics.takeovers).toBe(0);
      expect(leader.metrics.leader).toBe(true);
    });

    it("partitioned leader (a proxy that stops forwarding both ways, sockets open): replaced, nothing lost", async () => {
      const proxy = await new TcpProxy({ host: "127.0.0.1", port: db.port || Number(new URL(db.url).port) }).start();
      const leader = new Relay(config({ DATABASE_URL: proxy.url(db.url) }));
      relays.push(leader);
      leader.start();
      try {
        await waitUntil("the proxied relay leads", () => leader.metrics.leader);
        const standby = startRelay();
        await waitUntil("standby connected", () => standby.metrics.connected);
        await insert(["p0"]);
        await waitUntil("delivered through the proxy", () => receiver.forChannel("items").length === 1);
        proxy.freeze();
        await insert(names("p", 15));
        await waitUntil("the standby leads", () => standby.metrics.leader, 30_000);
        await waitUntil("rows written during the partition", () => receiver.forChannel("items").length >= 16, 30_000);
        expect(distinctNames()).toEqual(["p0", ...names("p", 15)]);
        expect(standby.metrics.takeovers).toBe(1);
        // The partitioned relay notices on its own (heartbeat deadline) and stops leading.
        await waitUntil("the partitioned relay steps down", () => !leader.metrics.leader, 10_000);
      } finally {
        await proxy.stop();
      }
    });

    it("leader SIGKILLed mid-batch with a standby running: the standby delivers everything", async () => {
      receiver.behaviour = "hang";
      const a = await relayProcess("leader", { RELAY_POST_TIMEOUT_MS: "60000" });
      const b = await relayProcess("standby");
      try {
        await insert(names("k", 30));
        await waitUntil("a batch in flight", () => receiver.hungBodies.length >= 1);
        a.child.kill("SIGKILL");
        await a.child.exited;
        receiver.behaviour = "ok";
        await waitUntil("the standby leads", async () => (await health(b.port)).leader, 20_000);
        await waitUntil("30 events", () => receiver.forChannel("items").length >= 30, 20_000);
        expect(distinctNames()).toEqual(names("k", 30));
        await waitUntil("everything delivered", () => processSettled(b.port));
      } finally {
        a.child.kill("SIGKILL");
        b.child.kill("SIGKILL");
        await Promise.all([a.child.exited, b.child.exited]);
      }
    });
  });

  describe("relay process", () => {
    it("loses nothing when killed with SIGKILL mid-batch and restarted", async () => {
      receiver.behaviour = "hang";
      const port = await freePort();
      const e = env({ RELAY_HTTP_PORT: String(port), RELAY_POST_TIMEOUT_MS: "60000" });
      for (let i = 1; i <= 40; i++) await db.query("INSERT INTO items (name, stock) VALUES ($1, 100)", [`k${i}`]);
      const first = spawnTs("relay/main.ts", e);
      try {
        await waitUntil("a batch in flight", () => receiver.requests >= 1, 20_000);
        first.kill("SIGKILL");
        await first.exited;
      } finally {
        first.kill("SIGKILL");
      }
      receiver.behaviour = "ok";
      const second = spawnTs("relay/main.ts", e);
      try {
        const evs = await waitUntil(
          "40 events after restart",
          () => (receiver.forChannel("items").length >= 40 ? receiver.forChannel("items") : undefined),
          20_000,
        );
        expect(evs.map((x) => x.data!.name)).toEqual(Array.from({ length: 40 }, (_, i) => `k${i + 1}`));
        await waitUntil("everything delivered", () => processSettled(port));
        const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
        expect(health).toEqual({ ok: true, connected: true, leader: true, pid: second.proc.pid });
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        expect(metrics).toMatch(/notifiws_relay_events_delivered_total 40/);
        expect(metrics).toMatch(/notifiws_relay_backlog_events 0/);
        expect(metrics).toContain("# TYPE notifiws_relay_commit_to_ack_seconds histogram");
        expect(metrics).toMatch(/notifiws_relay_commit_to_ack_seconds_count 40\n/);
        expect(metrics).toMatch(/notifiws_relay_commit_to_ack_seconds_bucket\{le="\+Inf"\} 40\n/);
        expect(metrics).toMatch(/notifiws_relay_post_latency_seconds_count [1-9]/);
        second.kill("SIGTERM");
        expect(await second.exited).toEqual({ code: 0, signal: null });
      } finally {
        second.kill("SIGKILL");
      }
    });

    it("exits 2 naming every bad variable on bad configuration", async () => {
      const child = spawnTs("relay/main.ts", { DATABASE_URL: "mysql://nope", INGEST_SECRET: "short", RELAY_BATCH_MAX_EVENTS: "0" });
      const { code } = await child.exited;
      expect(code).toBe(2);
      const out = child.output();
      for (const v of ["DATABASE_URL", "WORKER_URL", "INGEST_SECRET", "RELAY_BATCH_MAX_EVENTS"]) expect(out).toContain(v);
      expect(out).not.toContain('short"');
      expect(out).toContain('"code":"CONFIG_INVALID"');
    });
  });
});
