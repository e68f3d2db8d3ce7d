/**
 * `npm run dev`: Postgres (embedded unless DATABASE_URL), migrations and the
 * demo schema, the Worker under wrangler dev, the relay, and demo traffic.
 *
 * Flags: --no-traffic (no demo writes), --rate=N (sales per second, default 2).
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
    rate: { type: "string", default: "2" },
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

const stack = new Stack({
  stateDir: process.env.NOTIFIWS_STATE_DIR || undefined,
  workerPort: num("PORT", process.env.PORT, 8787),
  relayPort: num("RELAY_HTTP_PORT", process.env.RELAY_HTTP_PORT, 9464),
  pgPort: num("PG_PORT", process.env.PG_PORT, 54329),
  bridgePort: num("BRIDGE_PORT", process.env.BRIDGE_PORT, 54330),
  verbose: values.verbose,
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
  if (!values["no-traffic"]) traffic = startTraffic(stack.databaseUrl, { ratePerSec: rate });
  const token = await devToken(stack.secrets);
  const ws = stack.workerUrl.replace(/^http/, "ws");
  const psql = stack.pg ? `psql "${stack.databaseUrl}"` : `psql "$DATABASE_URL"`;
  console.log(`
notifiws is running.

  Dashboard   ${stack.workerUrl}/#token=${token}
  WebSocket   ${ws}/ws/sales   (subprotocols: notifiws.v1, bearer.<token>)
  Stats       curl -H "Authorization: Bearer $(node -p 'require(".notifiws/secrets.json").ADMIN_TOKEN')" ${stack.workerUrl}/stats
  Relay       ${stack.relayUrl}/metrics
  Postgres    ${stack.databaseUrl}

  Dev token (24 h, every channel):
  ${token}

  Make an event appear:
  ${psql} -c "INSERT INTO ventas (sku, quantity, total) VALUES ('KB-01', 1, 89.00)"

  Tail a channel:  npm run tail -- sales
  Demo traffic:    ${traffic ? `${rate} sales/s (--no-traffic to turn off)` : "off"}
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
