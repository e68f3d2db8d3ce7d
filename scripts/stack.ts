/**
 * The whole local stack as one object: Postgres (embedded unless
 * DATABASE_URL), migrations and the demo schema, the Worker under
 * `wrangler dev --local`, and the relay. Used by `npm run dev` and by the
 * end-to-end tests, so both run exactly the same parts.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes, createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { mintToken } from "../shared/token";
import { migrate, runSqlFile } from "../db/migrate";
import { freePort, startEmbeddedPostgres, type RunningPostgres } from "./embedded-pg";
import { startBridge, type Bridge } from "./ws-bridge";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

export interface Secrets {
  JWT_SECRET: string;
  INGEST_SECRET: string;
  ADMIN_TOKEN: string;
  PUBLISH_KEY: string;
}

export interface StackOptions {
  /** Folder for Postgres data, Worker state and secrets. Default `.notifiws` in the repo. */
  stateDir?: string;
  /** Existing Postgres; skips the embedded one. Default: process.env.DATABASE_URL. */
  databaseUrl?: string;
  workerPort?: number;
  relayPort?: number;
  pgPort?: number;
  /** WebSocket-to-TCP bridge for the Worker's Neon driver. Default: a free port. */
  bridgePort?: number;
  /** Apply db/demo.sql. Default true. */
  demo?: boolean;
  /** More browser origins allowed to connect, besides the Worker's own (e.g. a test page). */
  extraOrigins?: string[];
  /** Extra Worker variables (e.g. HISTORY_MAX_EVENTS); a function reads the started stack (its database URL). */
  workerVars?: Record<string, string> | ((stack: Stack) => Record<string, string>);
  /** Extra relay variables. */
  relayEnv?: Record<string, string>;
  /** Print child output. Default false. */
  verbose?: boolean;
  /**
   * How workerd serves the Worker: `wrangler-dev` (default; what `npm run dev` uses) or
   * `miniflare` (the deploy bundle served by Miniflare directly, no dev proxy; scripts/miniflare-serve.ts).
   */
  runtime?: "wrangler-dev" | "miniflare";
}

export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    readonly variable: string,
  ) {
    super(`port ${port} is already in use; set ${variable} to another port (e.g. ${variable}=${port + 1})`);
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

export async function loadSecrets(stateDir: string): Promise<Secrets> {
  const file = join(stateDir, "secrets.json");
  if (existsSync(file)) return JSON.parse(await readFile(file, "utf8")) as Secrets;
  const gen = () => randomBytes(32).toString("base64url");
  const secrets: Secrets = { JWT_SECRET: gen(), INGEST_SECRET: gen(), ADMIN_TOKEN: gen(), PUBLISH_KEY: gen() };
  await writeFile(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}

export function devToken(secrets: Secrets, claims: { sub?: string; channels?: string[]; expSeconds?: number } = {}): Promise<string> {
  return mintToken({ secret: secrets.JWT_SECRET, sub: claims.sub ?? "dev", channels: claims.channels ?? ["*"], ttlSeconds: claims.expSeconds ?? 24 * 3600 });
}

/** A child process with its output captured and a promise for its exit. */
export class Proc {
  output = "";
  readonly exited: Promise<number | null>;
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    verbose: boolean,
  ) {
    const onData = (d: Buffer) => {
      this.output += d.toString();
      if (this.output.length > 200_000) this.output = this.output.slice(-100_000);
      if (verbose) process.stderr.write(d);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.kill("SIGTERM");
    const t = setTimeout(() => this.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(t);
  }
  /** Kills whatever is left of the process group (e.g. workerd after wrangler itself died). */
  reap(): void {
    try {
      process.kill(-this.child.pid!, "SIGKILL");
    } catch {
      /* group already gone */
    }
  }
  kill(signal: NodeJS.Signals): void {
    if (!this.running) return;
    // Children run in their own process group so wrangler's workerd goes too.
    try {
      process.kill(-this.child.pid!, signal);
    } catch {
      this.child.kill(signal);
    }
  }
}

async function waitHttp(url: string, what: string, proc: Proc, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      /* not up yet */
    }
    if (!proc.running) throw new Error(`${what} exited before answering ${url}:\n${proc.output.slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`${what} did not answer ${url} within ${timeoutMs}ms:\n${proc.output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts one Worker on workerd and waits until `${url}/health` answers:
 * `wrangler dev --local`, or the deploy bundle through Miniflare directly
 * (scripts/miniflare-serve.ts). `config` defaults to the repo's wrangler.toml
 * (the bench's PartyServer peer passes its own).
 */
export async function startWorkerProcess(o: {
  runtime: "wrangler-dev" | "miniflare";
  url: string;
  env: Record<string, string>;
  envFile: string;
  persistDir: string;
  config?: string;
  inspectorPort?: number;
  verbose?: boolean;
  /** wrangler dev serves src/demo.ts (the product plus the demo route) with the dashboard in public/ as assets. */
  demo?: boolean;
}): Promise<Proc> {
  // Secrets go through a git-ignored env file, never the command line.
  await writeFile(
    o.envFile,
    Object.entries(o.env)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n") + "\n",
    { mode: 0o600 },
  );
  const port = new URL(o.url).port;
  const config = o.config ?? join(ROOT, "wrangler.toml");
  const demo = o.demo === true && o.runtime === "wrangler-dev";
  if (demo) execFileSync(process.execPath, [join(ROOT, "scripts/build-client.mjs")], { cwd: ROOT, stdio: "ignore" });
  const spawnOpts: SpawnOptions = {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so workerd goes with it (Proc.kill).
    detached: true,
  };
  const child =
    o.runtime === "miniflare"
      ? spawn(
          process.execPath,
          [
            "--import",
            "tsx",
            join(ROOT, "scripts/miniflare-serve.ts"),
            port,
            o.envFile,
            o.persistDir,
            config,
            ...(o.inspectorPort ? [String(o.inspectorPort)] : []),
          ],
          spawnOpts,
        )
      : spawn(
          join(ROOT, "node_modules/.bin/wrangler"),
          [
            "dev",
            ...(demo ? [join(ROOT, "src/demo.ts"), "--assets", join(ROOT, "public")] : []),
            "--config",
            config,
            "--local",
            "--ip",
            "127.0.0.1",
            "--port",
            port,
            ...(o.inspectorPort ? ["--inspector-port", String(o.inspectorPort)] : []),
            "--persist-to",
            o.persistDir,
            "--env-file",
            o.envFile,
            "--show-interactive-dev-session=false",
            "--log-level",
            o.verbose ? "info" : "warn",
          ],
          spawnOpts,
        );
  const proc = new Proc("worker", child, o.verbose ?? false);
  await waitHttp(`${o.url}/health`, o.runtime, proc, 90_000);
  return proc;
}

export class Stack {
  pg: RunningPostgres | undefined;
  worker: Proc | undefined;
  relay: Proc | undefined;
  bridge: Bridge | undefined;
  databaseUrl = "";
  workerUrl = "";
  relayUrl = "";
  secrets!: Secrets;
  /** workerd's V8 inspector (wrangler dev's, or Miniflare's with runtime "miniflare"). */
  inspectorPort = 0;

  constructor(readonly opts: StackOptions = {}) {}

  get stateDir(): string {
    return this.opts.stateDir ?? join(ROOT, ".notifiws");
  }

  /** Starts every part; throws PortInUseError naming the port and its variable. */
  async start(): Promise<this> {
    await mkdir(this.stateDir, { recursive: true });
    // The postgres user must traverse this folder to reach its data directory.
    await chmod(this.stateDir, 0o755);
    const workerPort = this.opts.workerPort ?? (await freePort());
    const relayPort = this.opts.relayPort ?? (await freePort());
    const external = this.opts.databaseUrl ?? process.env.DATABASE_URL;
    const checks: [number, string][] = [
      [workerPort, "PORT"],
      [relayPort, "RELAY_HTTP_PORT"],
    ];
    if (!external && this.opts.pgPort) checks.push([this.opts.pgPort, "PG_PORT"]);
    if (this.opts.bridgePort) checks.push([this.opts.bridgePort, "BRIDGE_PORT"]);
    for (const [port, variable] of checks) if (!(await portFree(port))) throw new PortInUseError(port, variable);
    this.inspectorPort = await freePort();

    this.secrets = await loadSecrets(this.stateDir);
    if (external) this.databaseUrl = external;
    else {
      this.pg = await startEmbeddedPostgres({ dir: join(this.stateDir, "pg"), port: this.opts.pgPort });
      this.databaseUrl = this.pg.url;
    }
    await migrate(this.databaseUrl);
    if (this.opts.demo ?? true) await runSqlFile(this.databaseUrl, join(ROOT, "db/demo.sql"));

    const pgUrl = new URL(this.databaseUrl);
    this.bridge = await startBridge({ port: this.opts.bridgePort ?? 0, allow: `${pgUrl.hostname}:${pgUrl.port || 5432}` });
    this.workerUrl = `http://127.0.0.1:${workerPort}`;
    this.relayUrl = `http://127.0.0.1:${relayPort}`;
    await this.startWorker();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startRelay();
        break;
      } catch (err) {
        // A port free when the stack started can be taken by the time the relay binds it (other
        // stacks start beside this one): choose another, unless the port was asked for.
        if (this.opts.relayPort !== undefined || attempt >= 3 || !this.relay?.output.includes("HTTP_LISTEN_FAILED")) throw err;
        this.relayUrl = `http://127.0.0.1:${await freePort()}`;
      }
    }
    return this;
  }

  workerEnv(): Record<string, string> {
    return {
      JWT_SECRET: this.secrets.JWT_SECRET,
      INGEST_SECRETS: this.secrets.INGEST_SECRET,
      ADMIN_TOKEN: this.secrets.ADMIN_TOKEN,
      PUBLISH_KEY_HASHES: createHash("sha256").update(this.secrets.PUBLISH_KEY).digest("hex"),
      ALLOWED_ORIGINS: [this.workerUrl, `http://localhost:${new URL(this.workerUrl).port}`, ...(this.opts.extraOrigins ?? [])].join(","),
      DASHBOARD_DATABASE_URL: this.databaseUrl,
      // Development only: the rows route reads as the stack's own role. In production it is a
      // read-only role with SELECT on the published columns (docs/live-tables.md).
      ROWS_DATABASE_URL: this.databaseUrl,
      NEON_WS_PROXY: `127.0.0.1:${this.bridge!.port}/v1`,
      // The demo dashboard shows who has it open (docs/protocol.md, "Presence").
      PRESENCE_CHANNELS: "dashboard",
      ...(typeof this.opts.workerVars === "function" ? this.opts.workerVars(this) : this.opts.workerVars),
    };
  }

  async startWorker(): Promise<void> {
    this.worker = await startWorkerProcess({
      runtime: this.opts.runtime ?? "wrangler-dev",
      demo: this.opts.demo ?? true,
      url: this.workerUrl,
      env: this.workerEnv(),
      envFile: join(this.stateDir, "worker.env"),
      persistDir: join(this.stateDir, "wrangler"),
      inspectorPort: this.inspectorPort,
      verbose: this.opts.verbose ?? false,
    });
  }

  relayEnv(): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl,
      WORKER_URL: this.workerUrl,
      INGEST_SECRET: this.secrets.INGEST_SECRET,
      RELAY_HTTP_PORT: new URL(this.relayUrl).port,
      RELAY_HTTP_HOST: "127.0.0.1",
      RELAY_BACKOFF_MAX_MS: "2000",
      ...this.opts.relayEnv,
    };
  }

  async startRelay(): Promise<void> {
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "relay/main.ts")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...this.relayEnv() },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    this.relay = new Proc("relay", child, this.opts.verbose ?? false);
    await waitHttp(`${this.relayUrl}/healthz`, "relay", this.relay, 30_000);
  }

  /** Points the relay at another Worker (the bench's peers take the same batches), restarting it if it changes. */
  async retargetRelay(workerUrl: string): Promise<void> {
    if (this.relayEnv().WORKER_URL === workerUrl) return;
    await this.relay?.stop();
    this.opts.relayEnv = { ...this.opts.relayEnv, WORKER_URL: workerUrl };
    await this.startRelay();
  }

  /** Stops every child and Postgres; safe to call twice. */
  async stop(): Promise<void> {
    await Promise.all([this.relay?.stop(), this.worker?.stop()]);
    await this.bridge?.close();
    this.bridge = undefined;
    await this.pg?.stop().catch(() => undefined);
    this.pg = undefined;
  }
}
