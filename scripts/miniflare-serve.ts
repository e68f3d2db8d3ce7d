/**
 * Serves the Worker from workerd through Miniflare directly: the bundle
 * `wrangler deploy --dry-run` would upload, with the bindings wrangler reads
 * from the same wrangler.toml, and no `wrangler dev` proxy in front. Production
 * has no such proxy (under `wrangler dev` every client socket costs workerd
 * about four file descriptors and every frame an extra hop), so the bench
 * measures both (bench/run.ts, `--runtime`).
 *
 * Run as a child of scripts/stack.ts: argv port, env file (KEY=value lines,
 * the secrets), persist dir, and optionally the wrangler config (default the
 * repo's wrangler.toml; the bench's PartyServer peer passes its own) and the
 * V8 inspector port (bench/profile.ts samples the isolate through it). Prints `{"ready":true}` when it answers, and
 * disposes workerd on SIGTERM/SIGINT.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Log, LogLevel, Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { ROOT } from "./stack";

const [portArg, envFile, persistDir, configArg, inspectorArg] = process.argv.slice(2);
const config = configArg ?? join(ROOT, "wrangler.toml");
if (!portArg || !envFile || !persistDir) {
  process.stderr.write(
    JSON.stringify({ level: "error", code: "USAGE", msg: "usage: miniflare-serve.ts <port> <env-file> <persist-dir> [wrangler-config] [inspector-port]" }) +
      "\n",
  );
  process.exit(2);
}
const log = (level: string, msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level, msg, ...fields }) + "\n");

/** KEY=value lines, as `wrangler dev --env-file` reads them (values are never logged). */
function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const i = line.indexOf("=");
    if (i > 0 && !line.startsWith("#")) out[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  return out;
}

const outdir = mkdtempSync(join(tmpdir(), "notifiws-bundle-"));
// The same bundle a deploy uploads (and the same [build] step for the dashboard's assets).
// Unminified, unlike a deploy: the profiler (bench/profile.ts) maps time to modules by the bundle's
// module comments, which minification strips. The code is otherwise the deployed code.
execFileSync(join(ROOT, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--no-minify", "--config", config, "--outdir", outdir], {
  cwd: dirname(config),
  env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
  stdio: ["ignore", "ignore", "inherit"],
});
// modulesRules only matter when Miniflare collects modules itself; the bundle is one file.
const { modulesRules: _rules, ...workerOptions } = unstable_getMiniflareWorkerOptions(config).workerOptions;
const mf = new Miniflare(
  convertV4MiniflareOptions({
    ...workerOptions,
    modules: true,
    scriptPath: join(outdir, "index.js"),
    modulesRoot: outdir,
    bindings: { ...(workerOptions.bindings as Record<string, string>), ...readEnvFile(envFile) },
    host: "127.0.0.1",
    // Miniflare's own entry socket (an entry worker in front of ours) on any free port; clients use the direct socket.
    port: 0,
    unsafeDirectSockets: [{ host: "127.0.0.1", port: Number(portArg) }],
    ...(inspectorArg ? { inspectorPort: Number(inspectorArg), inspectorHost: "127.0.0.1" } : {}),
    resourcePersistencePath: persistDir,
    log: new Log(LogLevel.WARN),
    // No request.cf lookup (this machine is offline); the placeholder has no continent, as in wrangler dev.
    cf: false,
  }),
);
await mf.ready;
log("info", "miniflare serving", { port: Number(portArg) });
process.stdout.write(JSON.stringify({ ready: true }) + "\n");

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose().catch(() => undefined);
  rmSync(outdir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
