/**
 * `npm run dev`: Postgres (embedded unless DATABASE_URL), migrations and the
 * demo schema, the Worker under wrangler dev, the relay, and demo traffic.
 * With DATABASE_URL (your own database) the demo tables and traffic are left
 * out unless --demo asks for them: nothing is written there but the notifiws
 * schema (the migrations).
 *
 * Flags: --demo (demo tables and traffic in your DATABASE_URL), --no-traffic
 * (no demo writes), --rate=N (sales per second, default 2), --origin URL
 * (repeatable: your app's origin, allowed to connect; ALLOWED_ORIGINS adds a
 * comma-separated list too), --capture=wal|outbox (RELAY_CAPTURE: the
 * embedded Postgres runs with wal_level = logical and captures from the WAL;
 * your own database defaults to the outbox, because a replication slot keeps
 * WAL on your server for as long as it exists).
 * Ports: PORT (Worker, default 8787), RELAY_HTTP_PORT (default 9464),
 * PG_PORT (embedded Postgres, default 54329), BRIDGE_PORT (Neon driver bridge, 54330).
 * NOTIFIWS_STATE_DIR: where Postgres data, Worker state and generated secrets live (default .notifiws).
 * A part that crashes (the relay, wrangler dev) is restarted with backoff.
 */
import { parseArgs } from "node:util";
import { log } from "../shared/log";
import { devToken, PortInUseError, Stack } from "./stack";
import { startTraffic } from "./traffic";
import { supervise } from "./supervise";

const { values } = parseArgs({
  options: {
    "no-traffic": { type: "boolean", default: false },
    demo: { type: "boolean", default: false },
    origin: { type: "string", multiple: true, default: [] },
    rate: { type: "string", default: "2" },
    capture: { type: "string" },
    verbose: { type: "boolean", default: false },
  },
});

const num = (name: string, v: string | undefined, def: number) => {
  const n = v === undefined || v === "" ? def : Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(JSON.stringify({ level: "error", code: "CONFIG_INVALID", msg: `${name} must be a port number`, variables: [name] }));
    process.exit(2);
  }
  return n;
};
const rate = Number(values.rate);
if (!(rate > 0 && rate <= 1000)) {
  console.error(JSON.stringify({ level: "error", code: "CONFIG_INVALID", msg: "--rate must be between 0 and 1000 sales per second" }));
  process.exit(2);
}

const own = Boolean(process.env.DATABASE_URL);
const demo = !own || values.demo;
const capture = values.capture ?? (own ? "outbox" : "wal");
if (capture !== "wal" && capture !== "outbox") {
  console.error(JSON.stringify({ level: "error", code: "CONFIG_INVALID", msg: "--capture must be wal or outbox", variables: ["RELAY_CAPTURE"] }));
  process.exit(2);
}
const origins = [
  ...values.origin,
  ...(process.env.ALLOWED_ORIGINS ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean),
];
for (const o of origins) {
  if (o === "*") continue;
  let ok = false;
  try {
    ok = new URL(o).origin === o;
  } catch {
    /* not a URL */
  }
  if (!ok) {
    console.error(
      JSON.stringify({
        level: "error",
        code: "CONFIG_INVALID",
        msg: `--origin ${o}: an origin is scheme://host[:port] with no path, e.g. http://localhost:5173`,
        variables: ["ALLOWED_ORIGINS"],
      }),
    );
    process.exit(2);
  }
}

const stack = new Stack({
  demo,
  extraOrigins: origins,
  stateDir: process.env.NOTIFIWS_STATE_DIR || undefined,
  workerPort: num("PORT", process.env.PORT, 8787),
  relayPort: num("RELAY_HTTP_PORT", process.env.RELAY_HTTP_PORT, 9464),
  pgPort: num("PG_PORT", process.env.PG_PORT, 54329),
  bridgePort: num("BRIDGE_PORT", process.env.BRIDGE_PORT, 54330),
  verbose: values.verbose,
  relayEnv: { RELAY_CAPTURE: capture },
});

let traffic: { stop(): Promise<void> } | undefined;
const supervisors: { stop(): void }[] = [];
let stopping = false;
async function shutdown(code: number) {
  if (stopping) return;
  stopping = true;
  log("info", "stopping the stack");
  supervisors.forEach((s) => s.stop());
  await traffic?.stop();
  await stack.stop();
  log("info", "stopped");
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

try {
  log("info", "starting postgres, worker and relay");
  await stack.start();
  // A crashed part is restarted with backoff; the rest of the stack keeps running.
  supervisors.push(
    supervise(
      "worker (wrangler dev)",
      () => stack.worker,
      () => stack.startWorker(),
    ),
  );
  supervisors.push(
    supervise(
      "relay",
      () => stack.relay,
      () => stack.startRelay(),
    ),
  );
  if (demo && !values["no-traffic"]) traffic = startTraffic(stack.databaseUrl, { ratePerSec: rate });
  const token = await devToken(stack.secrets);
  const ws = stack.workerUrl.replace(/^http/, "ws");
  const psql = stack.pg ? `psql "${stack.databaseUrl}"` : `psql "$DATABASE_URL"`;
  const env = `PORT=${new URL(stack.workerUrl).port}${process.env.NOTIFIWS_STATE_DIR ? ` NOTIFIWS_STATE_DIR=${process.env.NOTIFIWS_STATE_DIR}` : ""}`;
  const demoLines = demo
    ? `  Dashboard   ${stack.workerUrl}/#token=${token}

  Make an event appear:
  ${psql} -c "INSERT INTO ventas (sku, quantity, total) VALUES ('KB-01', 1, 89.00)"
  Demo traffic:    ${traffic ? `${rate} sales/s (--no-traffic to turn off)` : "off"}
`
    : `  Your database: only the notifiws schema was added (demo tables: --demo).
`;
  console.log(`
notifiws is running.

${demoLines}
  Watch one of your tables and tail it:
  ${psql} -c "SELECT notifiws.watch('public.orders', 'orders', ARRAY['id', 'status'])"
  ${env} npx notifiws tail orders

  WebSocket   ${ws}/ws/<channel>   (subprotocols: notifiws.v1, bearer.<token>)
  Origins     ${[stack.workerUrl, ...origins].join(", ")}   (add your app's: --origin http://localhost:5173)
  Stats       curl -H "Authorization: Bearer $(node -p 'require("${stack.stateDir}/secrets.json").ADMIN_TOKEN')" ${stack.workerUrl}/stats
  Relay       ${stack.relayUrl}/metrics   (capture: ${capture}${capture === "wal" ? ", a logical replication slot" : ", the outbox table"}; --capture=${capture === "wal" ? "outbox" : "wal"} for the other)
  Postgres    ${stack.databaseUrl}

  Dev token (24 h, every channel):
  ${token}

  Ctrl-C stops everything.
`);
} catch (err) {
  if (err instanceof PortInUseError) {
    console.error(JSON.stringify({ level: "error", code: "PORT_IN_USE", msg: err.message, port: err.port, variable: err.variable }));
  } else {
    console.error(JSON.stringify({ level: "error", code: "START_FAILED", msg: (err as Error).message }));
  }
  await stack.stop();
  process.exit(1);
}
