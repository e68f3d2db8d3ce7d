/**
 * The relay image as relay/Dockerfile builds it: its file system laid out by
 * following the Dockerfile (test/support/dockerfile.ts: no Docker engine runs
 * here), production dependencies installed by its own RUN line, then the
 * relay started from it with the image's CMD and environment against a real
 * Postgres until it delivers an event; its HEALTHCHECK passes; SIGTERM stops
 * it cleanly. Nothing from the repository's node_modules is reachable.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/embedded-pg";
import { assembleImage, type Stage } from "../support/dockerfile";
import { testPostgres, type TestPostgres } from "../support/postgres";
import { ROOT } from "../support/process";
import { Receiver, RECEIVER_SECRET } from "../support/receiver";
import { waitUntil } from "../support/wait";

let db: TestPostgres;
let receiver: Receiver;
let out = "";
let image: Stage;

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), "notifiws-image-"));
  // npm works from its cache (filled by the project's own npm ci); no registry round trip is needed.
  image = await assembleImage({ dockerfile: join(ROOT, "relay/Dockerfile"), context: ROOT, out, env: { npm_config_prefer_offline: "true" } });
  db = await testPostgres();
  await db.query("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric); SELECT notifiws.watch('orders', 'orders', ARRAY['id', 'total']);");
  receiver = await new Receiver().start();
}, 240_000);
afterAll(async () => {
  await receiver?.stop();
  await db?.close();
  if (out) await rm(out, { recursive: true, force: true });
});

describe("relay image", () => {
  it("holds the relay, its production dependencies and the migrations, and no dev tools, local state or secrets", () => {
    const app = join(image.root, image.workdir);
    for (const p of ["relay/main.ts", "shared/log.ts", "db/migrate.ts", "db/functions/capture.sql", "node_modules/pg", "node_modules/tsx", "node_modules/zod"])
      expect(existsSync(join(app, p)), p).toBe(true);
    for (const p of ["node_modules/vitest", "node_modules/wrangler", "node_modules/playwright-core", ".notifiws", ".dev.vars", "test", "src"])
      expect(existsSync(join(app, p)), p).toBe(false);
    expect(image.user).toBe("node");
    expect(image.env).toMatchObject({ NODE_ENV: "production", RELAY_HTTP_HOST: "0.0.0.0" });
  });

  it("applies the migrations from the image, as README.md says (node --import tsx db/migrate.ts)", async () => {
    await db.query("CREATE DATABASE from_image");
    const url = new URL(db.url);
    url.pathname = "/from_image";
    const migrate = spawn(process.execPath, ["--import", "tsx", "db/migrate.ts"], {
      cwd: join(image.root, image.workdir),
      env: { PATH: process.env.PATH ?? "", ...image.env, DATABASE_URL: url.toString() },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    migrate.stdout.on("data", (d) => (output += d));
    migrate.stderr.on("data", (d) => (output += d));
    expect(await new Promise((r) => migrate.on("exit", r)), output).toBe(0);
    expect(output).toContain("migrations up to date");
  });

  it("starts with the image's CMD, delivers a committed row, passes its HEALTHCHECK and stops on SIGTERM", async () => {
    const port = await freePort();
    const env = {
      PATH: process.env.PATH ?? "",
      ...image.env,
      RELAY_HTTP_HOST: "127.0.0.1",
      RELAY_HTTP_PORT: String(port),
      DATABASE_URL: db.url,
      WORKER_URL: receiver.url,
      INGEST_SECRET: RECEIVER_SECRET,
    };
    const node = (cmd: string[]) => (cmd[0] === "node" ? [process.execPath, ...cmd.slice(1)] : cmd);
    const [file, ...args] = node(image.cmd!);
    const relay = spawn(file!, args, { cwd: join(image.root, image.workdir), env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    relay.stdout.on("data", (d) => (output += d));
    relay.stderr.on("data", (d) => (output += d));
    const exited = new Promise<number | null>((r) => relay.on("exit", (code) => r(code)));
    try {
      await db.query("INSERT INTO orders VALUES (9223372036854775807, 12345678901234567890.12)");
      await waitUntil(
        "the image's relay to deliver the row",
        () => receiver.deliveries.some((e) => e.channel === "orders"),
        30_000,
        50,
        () => output.slice(-2000),
      );
      expect(receiver.deliveries.find((e) => e.channel === "orders")!.data).toEqual({ id: "9223372036854775807", total: "12345678901234567890.12" });

      const [hfile, ...hargs] = node(image.healthcheck!);
      const health = spawn(hfile!, hargs, { env, stdio: "ignore" });
      expect(await new Promise((r) => health.on("exit", r))).toBe(0);
    } finally {
      relay.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});
