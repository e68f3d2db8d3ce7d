/**
 * Cold start: from a fresh workerd to the first accepted WebSocket, for
 * notifiws and its same-platform peer (bench/partyserver), each the bundle
 * `wrangler deploy --dry-run` builds, served by Miniflare in this process
 * (no dev proxy). Per run, a new workerd with empty storage:
 * - start: `new Miniflare()` until it answers (workerd's process start, the
 *   bundle's compile and top-level evaluation: the isolate's start);
 * - first socket: from then until the first WebSocket on a new channel is
 *   accepted (the Worker's first request, the Durable Object's creation, its
 *   SQLite schema, the accept; notifiws waits for `welcome`, PartyServer for
 *   the open);
 * - bundle: bytes of the bundle, as built for both.
 * Systems alternate within each run, so the machine's drift spreads over
 * both; each figure is the median of --runs runs (min–max).
 *
 * `npm run bench:cold [-- --runs N]` (default 7).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Log, LogLevel, Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import WebSocket from "ws";
import { ROOT } from "../scripts/stack";
import { mintToken } from "../shared/token";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const RUNS = arg("runs", 7);
const SECRET = "cold-start-secret-0123456789abcdef0123";

interface Built {
  name: string;
  dir: string;
  bytes: number;
  options: Record<string, unknown>;
  /** Opens the first socket and resolves once it is accepted. */
  first: (base: string) => Promise<void>;
}

function build(name: string, config: string, bindings: Record<string, string>, first: Built["first"]): Built {
  const dir = mkdtempSync(join(tmpdir(), "notifiws-cold-"));
  execFileSync(join(ROOT, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--config", config, "--outdir", dir], {
    cwd: dirname(config),
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const { modulesRules: _rules, ...workerOptions } = unstable_getMiniflareWorkerOptions(config).workerOptions;
  const main = join(dir, "index.js");
  return {
    name,
    dir,
    bytes: statSync(main).size,
    options: { ...workerOptions, modules: true, scriptPath: main, modulesRoot: dir, bindings: { ...(workerOptions.bindings as object), ...bindings } },
    first,
  };
}

const opened = (ws: WebSocket, until: (data: string | undefined) => boolean) =>
  new Promise<void>((resolve, reject) => {
    ws.once("error", reject);
    ws.on("open", () => until(undefined) && resolve());
    ws.on("message", (d) => until(String(d)) && resolve());
  }).finally(() => ws.terminate());

async function once(b: Built): Promise<{ startMs: number; firstMs: number }> {
  const persist = mkdtempSync(join(tmpdir(), "notifiws-cold-state-"));
  const t0 = performance.now();
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      ...b.options,
      host: "127.0.0.1",
      port: 0,
      resourcePersistencePath: persist,
      log: new Log(LogLevel.WARN),
      cf: false,
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
  );
  try {
    const url = await mf.ready;
    const t1 = performance.now();
    await b.first(url.href.replace(/\/$/, ""));
    return { startMs: t1 - t0, firstMs: performance.now() - t1 };
  } finally {
    await mf.dispose();
    rmSync(persist, { recursive: true, force: true });
  }
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const span = (xs: number[]) => `${med(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;

async function main(): Promise<void> {
  const token = await mintToken({ secret: SECRET, sub: "cold", channels: ["*"] });
  const systems = [
    build("notifiws", join(ROOT, "wrangler.toml"), { JWT_SECRET: SECRET, INGEST_SECRETS: `${SECRET}-ingest`, LOG_LEVEL: "warn" }, (base) =>
      opened(new WebSocket(`${base.replace(/^http/, "ws")}/ws/cold.start`, ["notifiws.v1", `bearer.${token}`]), (d) => d?.includes('"welcome"') === true),
    ),
    build("partyserver", join(ROOT, "bench/partyserver/wrangler.toml"), { INGEST_SECRETS: `${SECRET}-ingest` }, (base) =>
      opened(new WebSocket(`${base.replace(/^http/, "ws")}/parties/rooms/cold.start`), (d) => d === undefined),
    ),
  ];
  const results = new Map(systems.map((s) => [s.name, { start: [] as number[], first: [] as number[] }]));
  try {
    for (let r = 0; r < RUNS; r++)
      for (const s of r % 2 ? [...systems].reverse() : systems) {
        const { startMs, firstMs } = await once(s);
        results.get(s.name)!.start.push(startMs);
        results.get(s.name)!.first.push(firstMs);
        process.stderr.write(
          JSON.stringify({ level: "info", msg: "run", system: s.name, run: r, startMs: Math.round(startMs), firstMs: Math.round(firstMs) }) + "\n",
        );
      }
  } finally {
    for (const s of systems) rmSync(s.dir, { recursive: true, force: true });
  }
  const [n, p] = [results.get("notifiws")!, results.get("partyserver")!];
  console.log(
    [
      `Cold start on Miniflare (a fresh workerd each run), median of ${RUNS} runs (min–max), ms`,
      "",
      "| system | bundle KiB | start: workerd up, bundle compiled and evaluated | first socket: first request, new object, accept | total |",
      "| --- | --- | --- | --- | --- |",
      ...systems.map((s) => {
        const r = results.get(s.name)!;
        return `| ${s.name} | ${Math.round(s.bytes / 1024)} | ${span(r.start)} | ${span(r.first)} | ${span(r.start.map((x, i) => x + r.first[i]!))} |`;
      }),
      "",
      `notifiws / partyserver, medians: start ${(med(n.start) / med(p.start)).toFixed(2)}x, first socket ${(med(n.first) / med(p.first)).toFixed(2)}x`,
    ].join("\n"),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
