/**
 * W10, soak: R rows/s committed through the relay for M minutes while S
 * subscribers (ack=1, acknowledging as the SDK does) churn: every 15 s, 10%
 * of them close and are replaced by new ones resuming from where the closed
 * ones stopped. The Worker runs on Miniflare directly (the deploy bundle).
 * Every 30 s: the isolate's heap after a forced GC (V8 inspector), workerd's
 * RSS, the relay's RSS, and the bytes the Durable Objects store (their
 * SQLite files). Written as a table and an SVG chart to bench/results/.
 * "Flat" means: after the history and dedupe windows fill, no curve keeps
 * rising.
 *
 * `npm run bench:soak [-- --minutes M --rate R --subscribers S]` (default 30 min, 100 rows/s, 300).
 */
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import WebSocket from "ws";
import { createAcker } from "../client/ack";
import { devToken, ROOT, Stack } from "../scripts/stack";
import { paced } from "./pace";
import { groupPids, pidRss } from "./proc";
import { isolateHeapMiB } from "./profile";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const MINUTES = arg("minutes", 30);
const RATE = arg("rate", 100);
const SUBSCRIBERS = arg("subscribers", 300);
const CHURN_EVERY_MS = 15_000;
const SAMPLE_EVERY_MS = 30_000;
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n");

interface Sub {
  ws: WebSocket;
  last: number;
}

/** Events delivered to every subscriber so far, replaced ones included. */
let delivered = 0;

function subscribe(url: string, token: string, since: number | undefined): Sub {
  const q = new URLSearchParams({ ack: "1", ...(since !== undefined ? { since: String(since) } : {}) });
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws/soak?${q}`, ["notifiws.v1", `bearer.${token}`], { perMessageDeflate: false });
  const sub: Sub = { ws, last: since ?? 0 };
  const acker = createAcker((f) => ws.readyState === WebSocket.OPEN && ws.send(f), { everyEvents: 500, everyMs: 1000 });
  ws.on("message", (data) => {
    const m = JSON.parse(String(data)) as { type: string; headSeq?: number; events?: { seq: number }[] };
    if (m.type === "welcome" && since === undefined) sub.last = m.headSeq!;
    if (m.type !== "events") return;
    for (const e of m.events!) if (e.seq > sub.last) ((sub.last = e.seq), delivered++);
    acker.delivered(sub.last, m.events!.length);
  });
  ws.on("close", () => acker.stop());
  ws.on("error", () => undefined);
  return sub;
}

/** Bytes of every file under a directory (the Durable Objects' SQLite files live under the persist dir). */
async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

interface Sample {
  minute: number;
  heapMiB: number;
  workerdMiB: number;
  relayMiB: number;
  storedMiB: number;
  events: number;
}

function chart(samples: Sample[]): string {
  const W = 720;
  const H = 300;
  const [L, R, T, B] = [50, 20, 30, 40];
  const series: [keyof Sample, string][] = [
    ["workerdMiB", "#d33"],
    ["relayMiB", "#36c"],
    ["heapMiB", "#393"],
    ["storedMiB", "#a6a"],
  ];
  const maxY = Math.max(1, ...samples.flatMap((s) => series.map(([k]) => s[k])));
  const maxX = Math.max(1, ...samples.map((s) => s.minute));
  const x = (m: number) => L + (m / maxX) * (W - L - R);
  const y = (v: number) => H - B - (v / maxY) * (H - T - B);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="#fff"/>`;
  svg += `<text x="${L}" y="16" font-size="13">soak: MiB over minutes (workerd RSS red, relay RSS blue, isolate heap green, stored bytes purple)</text>`;
  for (let v = 0; v <= maxY; v += Math.max(1, Math.round(maxY / 5)))
    svg += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="4" y="${y(v) + 4}">${v}</text>`;
  svg += `<text x="${W / 2}" y="${H - 8}">minutes</text>`;
  for (const [k, color] of series)
    svg += `<polyline fill="none" stroke="${color}" stroke-width="2" points="${samples.map((s) => `${x(s.minute).toFixed(1)},${y(s[k]).toFixed(1)}`).join(" ")}"/>`;
  return svg + "</svg>";
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "notifiws-soak-"));
  await chmod(dir, 0o755); // the postgres user traverses it to its data directory
  let stack: Stack | undefined;
  let db: pg.Pool | undefined;
  const subs: Sub[] = [];
  const samples: Sample[] = [];
  try {
    stack = await new Stack({ stateDir: dir, runtime: "miniflare", demo: false, workerVars: { LOG_LEVEL: "warn" }, relayEnv: { LOG_LEVEL: "warn" } }).start();
    db = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
    await db.query("CREATE TABLE soak (id bigserial PRIMARY KEY, payload text); SELECT notifiws.watch('soak', 'soak', ARRAY['id', 'payload'])");
    const token = await devToken(stack.secrets);
    for (let i = 0; i < SUBSCRIBERS; i++) subs.push(subscribe(stack.workerUrl, token, undefined));
    const started = Date.now();
    const end = started + MINUTES * 60_000;
    const workerd = () => groupPids(stack!.worker!.child.pid, /workerd/);
    const sample = async () => {
      const s: Sample = {
        minute: Math.round(((Date.now() - started) / 60_000) * 10) / 10,
        heapMiB: await isolateHeapMiB(stack!.inspectorPort).catch(() => NaN),
        workerdMiB: Math.round(workerd().reduce((n, pid) => n + pidRss(pid), 0)),
        relayMiB: Math.round(pidRss(stack!.relay!.child.pid)),
        storedMiB: Math.round(((await dirBytes(join(dir, "wrangler"))) / 2 ** 20) * 10) / 10,
        events: delivered,
      };
      samples.push(s);
      log("sample", { ...s });
    };
    await sample();
    const churn = setInterval(() => {
      for (let i = 0; i < Math.ceil(SUBSCRIBERS / 10); i++) {
        const k = Math.floor(Math.random() * subs.length);
        const old = subs[k]!;
        old.ws.close(1000);
        subs[k] = subscribe(stack!.workerUrl, token, old.last);
      }
    }, CHURN_EVERY_MS);
    const sampler = setInterval(() => void sample(), SAMPLE_EVERY_MS);
    let n = 0;
    await paced(RATE, MINUTES * 60, async (rows) => {
      if (Date.now() > end) return;
      await db!.query("INSERT INTO soak (payload) SELECT 'row ' || g FROM generate_series(1, $1::int) g", [rows]);
      n += rows;
    });
    clearInterval(churn);
    clearInterval(sampler);
    await sample();
    log("done", { rows: n });
  } finally {
    for (const s of subs) s.ws.terminate();
    await db?.end().catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  const out = join(ROOT, "bench/results");
  await mkdir(out, { recursive: true });
  const stamp = `soak-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  const table = [
    `W10 soak: ${RATE} rows/s for ${MINUTES} min, ${SUBSCRIBERS} subscribers churning 10% every 15 s (Miniflare)`,
    "",
    "| minute | isolate heap MiB | workerd RSS MiB | relay RSS MiB | stored MiB | events delivered |",
    "| --- | --- | --- | --- | --- | --- |",
    ...samples.map((s) => `| ${s.minute} | ${s.heapMiB} | ${s.workerdMiB} | ${s.relayMiB} | ${s.storedMiB} | ${s.events} |`),
  ].join("\n");
  await writeFile(join(out, `${stamp}.md`), table + "\n");
  await writeFile(join(out, `${stamp}.svg`), chart(samples));
  console.log(table);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
