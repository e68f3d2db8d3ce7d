import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import pg from "pg";
import { freePort } from "../../scripts/embedded-pg";
import { parseRelayConfig, type RelayConfig } from "../../relay/config";
import { Relay } from "../../relay/relay";
import { setLogLevel } from "../../src/log";
import { testPostgres, waitUntil, type TestPostgres } from "./support/postgres";
import { spawnTs } from "./support/process";
import { Receiver, RECEIVER_SECRET } from "./support/receiver";

setLogLevel("error");

let db: TestPostgres;
let receiver: Receiver;
const relays: Relay[] = [];

beforeAll(async () => {
  db = await testPostgres();
  await db.query(`
    CREATE TABLE items (id serial PRIMARY KEY, name text, stock int, secret text, blob text);
    SELECT notifiws.watch('items', 'items', ARRAY['id', 'name', 'stock', 'blob'], include_old => true);
    SELECT notifiws.watch('items', 'items.low', ARRAY['id', 'stock'], condition => 'NEW.stock < 5', ops => ARRAY['insert', 'update']);
  `);
});
afterAll(async () => {
  await db?.close();
});

beforeEach(async () => {
  receiver = await new Receiver().start();
  await db.query("TRUNCATE items; DELETE FROM notifiws.outbox; DELETE FROM notifiws.dead_letter;");
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  await receiver.stop();
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    WORKER_URL: receiver.url,
    INGEST_SECRET: RECEIVER_SECRET,
    RELAY_HTTP_PORT: "0",
    RELAY_POLL_MS: "500",
    RELAY_BACKOFF_BASE_MS: "20",
    RELAY_BACKOFF_MAX_MS: "300",
    RELAY_STANDBY_POLL_MS: "100",
    RELAY_LIVENESS_MS: "500",
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
    await waitUntil("outbox drained", async () => (await outboxCount()) === 0);
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

  it("refuses watch() with an unknown column or a bad channel name", async () => {
    await expect(db.query("SELECT notifiws.watch('items', 'x', ARRAY['nope'])")).rejects.toThrow(/has no column/);
    await expect(db.query("SELECT notifiws.watch('items', 'bad name', ARRAY['id'])")).rejects.toThrow(/invalid channel/);
    await expect(db.query("SELECT notifiws.watch('items', 'x', ARRAY[]::text[])")).rejects.toThrow(/allow-list is required/);
  });

  it("unwatch() stops publishing", async () => {
    await db.query("CREATE TABLE IF NOT EXISTS tmp_w (id int); SELECT notifiws.watch('tmp_w', 'tmp', ARRAY['*'])");
    await db.query("INSERT INTO tmp_w VALUES (1)");
    await db.query("SELECT notifiws.unwatch('tmp_w', 'tmp')");
    await db.query("INSERT INTO tmp_w VALUES (2)");
    const rows = await db.query("SELECT data FROM notifiws.outbox WHERE channel = 'tmp'");
    expect(rows.rows.map((r) => r.data)).toEqual([{ id: 1 }]);
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
  it("keeps commit order inside a channel", async () => {
    startRelay({ RELAY_BATCH_MAX_EVENTS: "7" });
    for (let i = 1; i <= 60; i++) await db.query("INSERT INTO items (name, stock) VALUES ($1, 100)", [`n${i}`]);
    const evs = await waitUntil("60 events", () => (receiver.forChannel("items").length >= 60 ? receiver.forChannel("items") : undefined));
    expect(evs.map((e) => e.data!.name)).toEqual(Array.from({ length: 60 }, (_, i) => `n${i + 1}`));
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
      const ids = (await db.query("SELECT count(*)::int AS n FROM notifiws.outbox")).rows[0]!.n;
      expect(ids).toBe(0);
    } finally {
      await late.end();
    }
  });

  it("retries while the Worker answers 500, losing nothing", async () => {
    receiver.behaviour = "fail";
    const relay = startRelay();
    for (let i = 1; i <= 20; i++) await db.query("INSERT INTO items (name, stock) VALUES ($1, 100)", [`r${i}`]);
    await waitUntil("a few failed attempts", () => relay.metrics.failures >= 3);
    expect(await outboxCount()).toBe(20);
    receiver.behaviour = "ok";
    await waitUntil("20 events after recovery", () => receiver.forChannel("items").length >= 20);
    await waitUntil("outbox drained", async () => (await outboxCount()) === 0);
    expect(relay.metrics.retries).toBeGreaterThan(0);
  });

  it("times out a hanging Worker and redelivers; duplicates carry identical ids", async () => {
    receiver.behaviour = "hang";
    startRelay({ RELAY_POST_TIMEOUT_MS: "300" });
    await db.query("INSERT INTO items (name, stock) VALUES ('h1', 100), ('h2', 100)");
    await waitUntil("a hung request", () => receiver.requests >= 1);
    receiver.behaviour = "ok";
    const evs = await waitUntil("both events", () => (receiver.forChannel("items").length >= 2 ? receiver.forChannel("items") : undefined));
    expect(evs.map((e) => e.data!.name)).toEqual(["h1", "h2"]);
    const byId = new Map<string, string>();
    for (const e of receiver.deliveries) {
      const prev = byId.get(e.id);
      if (prev) expect(JSON.stringify(e)).toBe(prev);
      byId.set(e.id, JSON.stringify(e));
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
    await waitUntil("outbox drained", async () => (await outboxCount()) === 0);
  });

  it("moves rows the edge could never accept to notifiws.dead_letter", async () => {
    startRelay();
    await db.query("INSERT INTO notifiws.outbox (channel, op, table_name, data) VALUES ('bad channel!', 'insert', 'public.x', '{}')");
    await db.query("INSERT INTO items (name, stock) VALUES ('fine', 100)");
    await waitUntil("the good row", () => receiver.forChannel("items").length === 1);
    await waitUntil("the dead letter", async () => (await db.query("SELECT reason FROM notifiws.dead_letter")).rowCount === 1);
    expect(await outboxCount()).toBe(0);
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
    const evs = await waitUntil("31 events after restart", () => (receiver.forChannel("items").length >= 31 ? receiver.forChannel("items") : undefined), 20_000);
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
      const evs = await waitUntil("40 events after restart", () => (receiver.forChannel("items").length >= 40 ? receiver.forChannel("items") : undefined), 20_000);
      expect(evs.map((x) => x.data!.name)).toEqual(Array.from({ length: 40 }, (_, i) => `k${i + 1}`));
      await waitUntil("outbox drained", async () => (await outboxCount()) === 0);
      const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
      expect(health).toEqual({ ok: true, connected: true, leader: true });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/notifiws_relay_events_delivered_total 40/);
      expect(metrics).toMatch(/notifiws_relay_backlog_events 0/);
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
    expect(out).not.toContain("short\"");
    expect(out).toContain('"code":"CONFIG_INVALID"');
  });
});
