/**
 * A team's own setup, as a new user meets it: a relay started before the
 * migrations says what to run and starts by itself once they are in; the
 * migration command refuses a URL without a scheme the way the relay does.
 * Real Postgres, the relay and db:migrate as processes.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../db/migrate";
import { testPostgres, type TestPostgres } from "../support/postgres";
import { spawnTs, type Child } from "../support/process";
import { Receiver, RECEIVER_SECRET } from "../support/receiver";
import { waitUntil } from "../support/wait";

let db: TestPostgres;
let receiver: Receiver;
const children: Child[] = [];

beforeAll(async () => {
  db = await testPostgres();
  receiver = await new Receiver().start();
}, 120_000);
afterAll(async () => {
  children.forEach((c) => c.kill("SIGKILL"));
  await receiver?.stop();
  await db?.close();
});

describe("your own database", () => {
  it("a relay started before the migrations names the command to run, then starts by itself once they are applied", async () => {
    await db.query("CREATE DATABASE not_migrated_yet");
    const url = new URL(db.url);
    url.pathname = "/not_migrated_yet";
    const relay = spawnTs("relay/main.ts", {
      DATABASE_URL: url.toString(),
      WORKER_URL: receiver.url,
      INGEST_SECRET: RECEIVER_SECRET,
      RELAY_HTTP_PORT: "0",
      RELAY_BACKOFF_BASE_MS: "50",
      RELAY_BACKOFF_MAX_MS: "200",
    });
    children.push(relay);
    const line = await waitUntil("the relay to say what is missing", () =>
      relay
        .output()
        .split("\n")
        .find((l) => l.includes('"SCHEMA_MISSING"')),
    );
    expect(JSON.parse(line)).toMatchObject({ level: "error", code: "SCHEMA_MISSING" });
    expect(line).toContain("npm run db:migrate");
    expect(line).not.toContain(url.toString()); // the URL (with its password) is never logged

    await migrate(url.toString());
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      await client.query("CREATE TABLE tickets (id bigint PRIMARY KEY, title text)");
      await client.query("SELECT notifiws.watch('tickets', 'tickets', ARRAY['id', 'title'])");
      await client.query("INSERT INTO tickets VALUES (9007199254740993, 'first')");
      await waitUntil("the relay to deliver the first event", () => receiver.deliveries.some((e) => e.channel === "tickets"), 20_000);
      expect(receiver.deliveries.find((e) => e.channel === "tickets")!.data).toEqual({ id: "9007199254740993", title: "first" });
    } finally {
      await client.end();
    }
  });

  /**
   * A user's own Postgres 15 as its administrator sets it up: an owner role
   * (not a superuser) with its database, migrated, a watched table, and the
   * relay and writer roles (`relayAttributes` added to the relay's); `body`
   * runs as the owner, the other roles reached through `as(role)`.
   */
  async function helpdesk(relayAttributes: string, body: (ctx: { app: pg.Client; as: (role: string) => string }) => Promise<void>): Promise<void> {
    const server = await testPostgres({ server: "system" });
    try {
      // Roles are made by whoever administers the server; everything after that runs as them.
      await server.query(
        `CREATE ROLE helpdesk LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; CREATE ROLE helpdesk_relay LOGIN ${relayAttributes}; CREATE ROLE helpdesk_writer LOGIN`,
      );
      await server.query("CREATE DATABASE helpdesk OWNER helpdesk");
      const url = new URL(server.url);
      url.username = "helpdesk";
      url.pathname = "/helpdesk";
      await migrate(url.toString());
      const app = new pg.Client({ connectionString: url.toString() });
      await app.connect();
      try {
        expect((await app.query<{ s: boolean }>("SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user")).rows[0]!.s).toBe(false);
        await app.query("CREATE TABLE tickets (id bigint PRIMARY KEY, title text, internal_note text)");
        await app.query("SELECT notifiws.watch('tickets', 'tickets', ARRAY['id', 'title'])");
        await body({ app, as: (role) => Object.assign(new URL(url), { username: role }).toString() });
      } finally {
        await app.end();
      }
    } finally {
      await server.close();
    }
  }

  it("roles that are not superusers: the owner migrates and watches, the relay and a writer run with only the grants README.md lists (Postgres 15, the system's)", async () => {
    await helpdesk("", async ({ app, as }) => {
      // The relay and a writer as separate roles, with exactly the grants README.md lists.
      await app.query(`
      GRANT USAGE ON SCHEMA notifiws TO helpdesk_relay;
      GRANT SELECT, DELETE ON notifiws.outbox TO helpdesk_relay;
      GRANT INSERT ON notifiws.dead_letter TO helpdesk_relay;
      GRANT SELECT, INSERT, UPDATE ON notifiws.relay_leader TO helpdesk_relay;
      GRANT EXECUTE ON FUNCTION notifiws.wakeup_channel() TO helpdesk_relay;
      GRANT INSERT ON tickets TO helpdesk_writer;
      GRANT USAGE ON SCHEMA notifiws TO helpdesk_writer;
      GRANT INSERT ON notifiws.outbox TO helpdesk_writer;`);
      const relay = spawnTs("relay/main.ts", {
        DATABASE_URL: as("helpdesk_relay"),
        WORKER_URL: receiver.url,
        INGEST_SECRET: RECEIVER_SECRET,
        RELAY_HTTP_PORT: "0",
      });
      children.push(relay);
      const writer = new pg.Client({ connectionString: as("helpdesk_writer") });
      await writer.connect();
      await writer.query("INSERT INTO tickets VALUES (42, 'owned by helpdesk', 'not published')").finally(() => writer.end());
      await waitUntil(
        "the event",
        () => receiver.deliveries.some((e) => e.channel === "tickets" && e.data?.id === "42"),
        20_000,
        50,
        () => relay.output(),
      );
      relay.kill("SIGTERM");
      expect((await relay.exited).code).toBe(0);
    });
  });

  it("WAL capture with roles that are not superusers: the relay role has REPLICATION and only the grants README.md lists; writers need nothing more (Postgres 15, the system's)", async () => {
    await helpdesk("REPLICATION", async ({ app, as }) => {
      await app.query(`
      GRANT USAGE ON SCHEMA notifiws TO helpdesk_relay;
      GRANT SELECT, INSERT, DELETE ON notifiws.outbox TO helpdesk_relay;
      GRANT INSERT ON notifiws.dead_letter TO helpdesk_relay;
      GRANT SELECT, INSERT, UPDATE ON notifiws.relay_leader TO helpdesk_relay;
      GRANT SELECT, INSERT, DELETE ON notifiws.pending_gaps TO helpdesk_relay;
      GRANT EXECUTE ON FUNCTION notifiws.wakeup_channel(), notifiws.set_capture_mode(text) TO helpdesk_relay;
      GRANT CREATE ON DATABASE helpdesk TO helpdesk_relay;
      GRANT INSERT ON tickets TO helpdesk_writer;
      GRANT USAGE ON SCHEMA notifiws TO helpdesk_writer;`);
      // A role without the grant cannot switch the mode (set_capture_mode runs with its owner's rights).
      const writer = new pg.Client({ connectionString: as("helpdesk_writer") });
      await writer.connect();
      try {
        await expect(writer.query("SELECT notifiws.set_capture_mode('outbox')")).rejects.toThrow(/permission denied/);
        const relay = spawnTs("relay/main.ts", {
          DATABASE_URL: as("helpdesk_relay"),
          WORKER_URL: receiver.url,
          INGEST_SECRET: RECEIVER_SECRET,
          RELAY_HTTP_PORT: "0",
          RELAY_CAPTURE: "wal",
        });
        children.push(relay);
        await waitUntil(
          "the wal mode",
          async () => (await app.query("SELECT notifiws.capture_mode() AS m")).rows[0]!.m === "wal",
          20_000,
          50,
          () => relay.output(),
        );
        await writer.query("INSERT INTO tickets VALUES (43, 'through the WAL', 'not published')");
        await waitUntil(
          "the event",
          () => receiver.deliveries.some((e) => e.channel === "tickets" && e.data?.id === "43"),
          20_000,
          50,
          () => relay.output(),
        );
        expect((await app.query("SELECT count(*)::int AS n FROM notifiws.outbox")).rows[0]!.n).toBe(0);
        relay.kill("SIGTERM");
        expect((await relay.exited).code).toBe(0);
      } finally {
        await writer.end();
      }
    });
  });

  it("db:migrate refuses a URL without a scheme, naming DATABASE_URL, instead of connecting to a default server", async () => {
    const run = spawnTs("db/migrate.ts", { DATABASE_URL: "notifiws@127.0.0.1:5432/app" });
    children.push(run);
    const { code } = await run.exited;
    expect(code).toBe(2);
    const line = JSON.parse(run.output().trim().split("\n").pop()!) as { code: string; variables: string[]; msg: string };
    expect(line).toMatchObject({ code: "CONFIG_INVALID", variables: ["DATABASE_URL"] });
    expect(line.msg).toContain("postgres://");
  });
});
