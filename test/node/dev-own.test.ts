/**
 * README.md, "Use it with your own Postgres and app", step by step: a team's
 * own Postgres (Debian's 15) and a role that is not a superuser owning its
 * database; `npm run dev` against it (DATABASE_URL) writes nothing there but
 * the notifiws schema; the team watches its own table as that role; its app,
 * a page on another origin allowed with --origin, uses the installed SDK
 * package in Chromium and gets the row, while a page on an origin not allowed
 * sees the refusal; `npx notifiws tail` finds the stack through the same PORT
 * and NOTIFIWS_STATE_DIR, prints why it retries and exits 1 on a refusal.
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { chromium, type Browser } from "playwright-core";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningPostgres } from "../../scripts/embedded-pg";
import { devToken, type Secrets } from "../../scripts/stack";
import { startSystemPostgres } from "../support/system-postgres";
import { waitUntil } from "../support/wait";
import { ROOT, spawnTs, type Child } from "../support/process";

const appPort = await freePort();
const otherPort = await freePort();
const APP_ORIGIN = `http://127.0.0.1:${appPort}`;
let browser: Browser | undefined;
const pages: Server[] = [];
let sdkJs = "";
let dev: Child;
let dir: string;
let own: RunningPostgres;
let db: pg.Client;
/** npm run dev: spawned → "notifiws is running" (ms). */
let devReadyMs = 0;
const children: Child[] = [];
const ports = { PORT: 0, RELAY_HTTP_PORT: 0, BRIDGE_PORT: 0 };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "notifiws-dev-own-"));
  await chmod(dir, 0o755);
  own = await startSystemPostgres({ dir: join(dir, "own-pg"), database: "postgres_admin_scratch" });
  // The team's role: no superuser, no special attribute; it owns its database (made by whoever runs the server).
  const admin = new pg.Client({ connectionString: own.url });
  await admin.connect();
  await admin.query("CREATE ROLE helpdesk LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE");
  await admin.query("CREATE DATABASE helpdesk OWNER helpdesk");
  await admin.end();
  const url = new URL(own.url);
  url.username = "helpdesk";
  url.pathname = "/helpdesk";
  own = { ...own, url: url.toString() };
  // The SDK as an app installs it: the packed package's browser entry, served as the app's own file.
  const tarball = execFileSync(process.execPath, [join(ROOT, "scripts/pack-sdk.mjs")], { cwd: ROOT, encoding: "utf8" })
    .trim()
    .split("\n")
    .pop()!;
  execFileSync("tar", ["xzf", tarball, "-C", dir]);
  sdkJs = await readFile(join(dir, "package", "index.js"), "utf8");
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
  const env = Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)]));
  const devStarted = Date.now();
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
  devReadyMs = Date.now() - devStarted;
  db = new pg.Client({ connectionString: own.url });
  await db.connect();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  pages.forEach((p) => p.close());
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
    // No replication slot is left on your server unless you ask for WAL capture (--capture=wal): a slot keeps WAL while it exists.
    expect((await db.query("SELECT slot_name FROM pg_replication_slots")).rows).toEqual([]);
    expect((await db.query<{ m: string }>("SELECT notifiws.capture_mode() AS m")).rows[0]!.m).toBe("outbox");
    expect(dev.output()).toContain("capture: outbox");
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

  it("your app on its own origin gets the row through the installed SDK in Chromium; a page on another origin sees ORIGIN_NOT_ALLOWED", async () => {
    await db.query("CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, status text, card_number text)");
    await db.query("SELECT notifiws.watch('orders', 'orders', ARRAY['id', 'status'])");
    const secrets = JSON.parse(await readFile(join(dir, "state", "secrets.json"), "utf8")) as Secrets;
    const token = await devToken(secrets, { sub: "alice", channels: ["orders"] });
    const html = `<!doctype html><meta charset="utf-8"><script type="module">
      import { connect } from "/notifiws.js";
      const p = new URLSearchParams(location.hash.slice(1));
      connect({ url: p.get("url"), channel: "orders", token: p.get("token"),
        onEvent: (e) => (document.body.dataset.event = JSON.stringify(e.data)),
        onError: (e) => (document.body.dataset.error = e.code + (e.permanent ? " permanent" : "")),
        onStateChange: (s) => (document.body.dataset.state = s) });
    </script>`;
    for (const port of [appPort, otherPort]) {
      const server = createServer((req, res) =>
        req.url === "/notifiws.js"
          ? res.writeHead(200, { "content-type": "text/javascript" }).end(sdkJs)
          : res.writeHead(200, { "content-type": "text/html" }).end(html),
      );
      await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
      pages.push(server);
    }
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const hash = new URLSearchParams({ url: `http://127.0.0.1:${ports.PORT}`, token });
    const app = await browser.newPage();
    await app.goto(`${APP_ORIGIN}/#${hash}`);
    await app.waitForFunction(() => document.body.dataset.state === "open", undefined, { timeout: 15_000 });
    await db.query("INSERT INTO orders VALUES (9007199254740993, 'paid', '4111 1111 1111 1111')");
    await app.waitForFunction(() => document.body.dataset.event !== undefined, undefined, { timeout: 15_000 });
    expect(JSON.parse((await app.evaluate(() => document.body.dataset.event))!)).toEqual({ id: "9007199254740993", status: "paid" });
    const other = await browser.newPage();
    await other.goto(`http://127.0.0.1:${otherPort}/#${hash}`);
    await other.waitForFunction(() => document.body.dataset.error !== undefined, undefined, { timeout: 15_000 });
    expect(await other.evaluate(() => document.body.dataset.error)).toBe("ORIGIN_NOT_ALLOWED permanent");
    expect(await other.evaluate(() => document.body.dataset.state)).toBe("closed");
  });

  it("tails your own table with the CLI found through PORT and NOTIFIWS_STATE_DIR; a refusal exits 1; an unreachable URL says why", async () => {
    await db.query("CREATE TABLE tickets (id bigint PRIMARY KEY, title text, secret text)");
    await db.query("SELECT notifiws.watch('tickets', 'tickets', ARRAY['id', 'title'])");
    const env = { PORT: String(ports.PORT), NOTIFIWS_STATE_DIR: join(dir, "state") };
    const tail = spawnTs("client/cli.ts", env, ["tail", "tickets"]);
    children.push(tail);
    await waitUntil("the CLI to connect", () => tail.output().includes('"state":"open"'), 30_000);
    const inserted = Date.now();
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
    const insertToCliMs = Date.now() - inserted;
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
    console.log(JSON.stringify({ level: "info", msg: "npm run dev on your own Postgres 15", devReadyMs, insertToCliMs }));
  });
});
