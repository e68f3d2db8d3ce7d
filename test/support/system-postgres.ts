/**
 * A user's own PostgreSQL: the operating system's server package (Debian's
 * `postgresql`, version 15 on this machine's image), started as a throwaway
 * cluster with initdb/pg_ctl on a free port, as the `postgres` user when the
 * tests run as root (initdb refuses root). .ci/run installs the package.
 */
import { execFile } from "node:child_process";
import { chmod, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort, LOGICAL_FLAGS, type RunningPostgres } from "../../scripts/embedded-pg";

const run = promisify(execFile);
const ROOT_DIR = "/usr/lib/postgresql";

/** The newest installed server's bin directory, or a clear error naming the package to install. */
export async function systemPostgresBin(): Promise<{ bin: string; version: number }> {
  const versions = (await readdir(ROOT_DIR).catch(() => [] as string[])).map(Number).filter((v) => v > 0);
  if (versions.length === 0) throw new Error(`no PostgreSQL server under ${ROOT_DIR}: install Debian's postgresql package (see .ci/run)`);
  const version = Math.max(...versions);
  return { bin: join(ROOT_DIR, String(version), "bin"), version };
}

export async function startSystemPostgres(opts: { dir: string; database?: string }): Promise<RunningPostgres & { version: number }> {
  const { bin, version } = await systemPostgresBin();
  const port = await freePort();
  const database = opts.database ?? "notifiws";
  const data = join(opts.dir, "data");
  await mkdir(opts.dir, { recursive: true });
  await chmod(opts.dir, 0o777);
  const asPostgres = async (cmd: string, args: string[]) =>
    process.getuid?.() === 0 ? run("runuser", ["-u", "postgres", "--", join(bin, cmd), ...args]) : run(join(bin, cmd), args);
  await asPostgres("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]);
  const serverFlags = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${opts.dir} -c fsync=off -c max_connections=200 ${LOGICAL_FLAGS.join(" ")}`;
  const start = async () => void (await asPostgres("pg_ctl", ["-D", data, "-o", serverFlags, "-w", "-t", "60", "-l", join(opts.dir, "server.log"), "start"]));
  const stop = async () => void (await asPostgres("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]).catch(() => undefined));
  await start();
  const admin = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
  return { url: `postgres://postgres@127.0.0.1:${port}/${database}`, port, dir: opts.dir, start, stop, version };
}
