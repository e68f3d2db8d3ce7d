/**
 * `npm run dev` as a developer runs it: when the relay or wrangler dev dies,
 * the stack says so, restarts that part with backoff, and delivery resumes.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/embedded-pg";
import { devToken, type Secrets } from "../../scripts/stack";
import { waitUntil } from "../support/wait";
import { spawnTs, type Child } from "../support/process";
import { WsClient } from "../support/wsclient";

let dev: Child;
let dir: string;
const ports = { PORT: 0, RELAY_HTTP_PORT: 0, PG_PORT: 0, BRIDGE_PORT: 0 };

/** Direct children of the dev process whose command line contains `what`. */
function childPid(what: string): number | undefined {
  const out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(dev.proc.pid)], { encoding: "utf8" });
  const line = out.split("\n").find((l) => l.includes(what));
  return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "notifiws-dev-"));
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
  const env = Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)]));
  dev = spawnTs("scripts/dev.ts", { ...env, NOTIFIWS_STATE_DIR: dir, WRANGLER_SEND_METRICS: "false" }, ["--no-traffic"]);
  await waitUntil(
    "npm run dev to be up",
    () => dev.output().includes("notifiws is running") || (dev.proc.exitCode !== null && Promise.reject(new Error(dev.output()))),
    120_000,
    200,
  );
}, 150_000);

afterAll(async () => {
  dev?.kill("SIGINT");
  await dev?.exited;
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("npm run dev", () => {
  it("restarts a crashed relay and a crashed wrangler dev, and delivery resumes", async () => {
    const secrets = JSON.parse(await readFile(join(dir, "secrets.json"), "utf8")) as Secrets;
    const workerUrl = `http://127.0.0.1:${ports.PORT}`;
    const db = new pg.Client({ connectionString: `postgres://postgres:notifiws@127.0.0.1:${ports.PG_PORT}/notifiws` });
    await db.connect();
    try {
      // The embedded Postgres captures from the WAL by default (--capture=outbox for the outbox).
      expect((await db.query<{ wal_level: string }>("SHOW wal_level")).rows[0]!.wal_level).toBe("logical");
      await waitUntil("WAL capture", async () => (await db.query<{ m: string }>("SELECT notifiws.capture_mode() AS m")).rows[0]!.m === "wal", 30_000);
      expect(dev.output()).toContain("capture: wal");
      for (const part of [
        { match: "relay/main.ts", name: "relay" },
        { match: "wrangler", name: "worker (wrangler dev)" },
      ]) {
        const pid = childPid(part.match);
        expect(pid, `a ${part.name} child`).toBeDefined();
        process.kill(-pid!, "SIGKILL"); // the whole group: wrangler and its workerd
        await waitUntil(`${part.name} restarted`, () => dev.output().includes(`"msg":"${part.name} restarted"`), 90_000, 200);
        expect(dev.output()).toContain(`"msg":"${part.name} exited; restarting"`);
        expect(dev.proc.exitCode).toBeNull();
        const client = await WsClient.connect(workerUrl, "sales", await devToken(secrets));
        const r = await db.query<{ id: string }>("INSERT INTO ventas (sku, quantity, total) VALUES ('KB-01', 1, 89.00) RETURNING id");
        await client.waitFor(`a sale after the ${part.name} restart`, () => client.events.some((e) => String(e.data!.id) === r.rows[0]!.id), 30_000);
        client.terminate();
      }
    } finally {
      await db.end();
    }
  }, 240_000);
});
