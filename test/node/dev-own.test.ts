/**
 * `npm run dev` against a team's own Postgres (DATABASE_URL: here Debian's
 * PostgreSQL 15, as a user's own server): nothing but the notifiws schema is
 * written there, the app's origin given with --origin may connect and others
 * may not, the printed lines say how to watch and tail one's own table, and
 * `npx notifiws tail` (client/cli.ts) finds the stack through the same PORT and
 * NOTIFIWS_STATE_DIR, prints why it retries, and exits 1 on a permanent refusal.
 */
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningPostgres } from "../../scripts/embedded-pg";
import { devToken, type Secrets } from "../../scripts/stack";
import { startSystemPostgres } from "../support/system-postgres";
import { waitUntil } from "../support/wait";
import { spawnTs, type Child } from "../support/process";

const APP_ORIGIN = "http://app.example:5173";
let dev: Child;
let dir: string;
let own: RunningPostgres;
let db: pg.Client;
let firstEventMs = 0;
const started = Date.now();
const children: Child[] = [];
const ports = { PORT: 0, RELAY_HTTP_PORT: 0, BRIDGE_PORT: 0 };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "notifiws-dev-own-"));
  await chmod(dir, 0o755);
  own = await startSystemPostgres({ dir: join(dir, "own-pg"), database: "helpdesk" });
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
  const env = Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)]));
  dev = spawnTs("scripts/dev.ts", { ...env, DATABASE_URL: own.url, NOTIFIWS_STATE_DIR: join(dir, "state"), WRANGLER_SEND_METRICS: "false" }, [
    "--origin",
    APP_ORIGIN,
  ]);
  children.push(dev);
  await waitUntil(
    "npm run dev to be up",
    () => dev.output().includes("notifiws is running") || (dev.proc.exitCode !== null && Promise.reject(new Error(dev.output()))),
    120_000,
    200,
  );
  db = new pg.Client({ connectionString: own.url });
  await db.connect();
}, 180_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGINT");
  await dev?.exited;
  await db?.end();
  await own?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

const connectWs = (channel: string, token: string, origin: string) =>
  new Promise<{ ok: boolean; status?: number; body?: string; ws?: WebSocket }>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${ports.PORT}/ws/${channel}`, ["notifiws.v1", `bearer.${token}`], { origin });
    ws.once("open", () => resolve({ ok: true, ws }));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d));
      res.on("end", () => resolve({ ok: false, status: res.statusCode, body }));
    });
  });

describe("npm run dev with your own database", () => {
  it("writes nothing but the notifiws schema, and prints how to watch and tail your own table", async () => {
    const tables = (
      await db.query<{ t: string }>(
        "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
      )
    ).rows.map((r) => r.t);
    expect(tables.filter((t) => !t.startsWith("notifiws."))).toEqual([]);
    expect(tables).toContain("notifiws.outbox");
    expect(dev.output()).toContain("SELECT notifiws.watch(");
    expect(dev.output()).toContain(`PORT=${ports.PORT}`);
    expect(dev.output()).toContain("npx notifiws tail");
    expect(dev.output()).not.toContain("Dashboard");
  });

  it("lets your app's origin connect (--origin) and refuses any other with ORIGIN_NOT_ALLOWED", async () => {
    const secrets = JSON.parse(await readFile(join(dir, "state", "secrets.json"), "utf8")) as Secrets;
    const token = await devToken(secrets);
    const app = await connectWs("tickets", token, APP_ORIGIN);
    expect(app.ok).toBe(true);
    app.ws!.close();
    const other = await connectWs("tickets", token, "http://evil.example");
    expect(other).toMatchObject({ ok: false, status: 403 });
    expect(JSON.parse(other.body!).error.code).toBe("ORIGIN_NOT_ALLOWED");
  });

  it("tails your own table with the CLI found through PORT and NOTIFIWS_STATE_DIR; a refusal exits 1; an unreachable URL says why", async () => {
    await db.query("CREATE TABLE tickets (id bigint PRIMARY KEY, title text, secret text)");
    await db.query("SELECT notifiws.watch('tickets', 'tickets', ARRAY['id', 'title'])");
    const env = { PORT: String(ports.PORT), NOTIFIWS_STATE_DIR: join(dir, "state") };
    const tail = spawnTs("client/cli.ts", env, ["tail", "tickets"]);
    children.push(tail);
    await waitUntil("the CLI to connect", () => tail.output().includes('"state":"open"'), 30_000);
    await db.query("INSERT INTO tickets VALUES (9007199254740993, 'printer on fire', 'x')");
    const line = await waitUntil(
      "the event on the CLI's stdout",
      () =>
        tail
          .output()
          .split("\n")
          .find((l) => l.includes('"tickets"') && l.includes('"seq"')),
      30_000,
    );
    firstEventMs = Date.now() - started;
    expect(JSON.parse(line).data).toEqual({ id: "9007199254740993", title: "printer on fire" });
    tail.kill("SIGINT");
    expect((await tail.exited).code).toBe(0);

    const secrets = JSON.parse(await readFile(join(dir, "state", "secrets.json"), "utf8")) as Secrets;
    const narrow = await devToken(secrets, { channels: ["other"] });
    const refused = spawnTs("client/cli.ts", env, ["tail", "tickets", "--token", narrow]);
    children.push(refused);
    expect((await refused.exited).code).toBe(1);
    expect(refused.output()).toContain('"code":"CHANNEL_FORBIDDEN"');

    const unreachable = spawnTs("client/cli.ts", env, ["tail", "tickets", "--url", `http://127.0.0.1:${await freePort()}`]);
    children.push(unreachable);
    await waitUntil("the CLI to say why it retries", () => unreachable.output().includes('"code":"UNREACHABLE"'), 30_000);
    unreachable.kill("SIGINT");
    console.log(JSON.stringify({ level: "info", msg: "npm run dev on your own Postgres 15 to the first event of your own table", ms: firstEventMs }));
  });
});
