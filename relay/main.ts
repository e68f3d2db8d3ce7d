/**
 * Relay entry point: `npm run relay`. Exit codes: 0 after a graceful stop,
 * 2 on bad configuration (every bad variable is named on stderr).
 */
import { log, setLogLevel } from "../shared/log";
import { parseRelayConfig } from "./config";
import { startHttp } from "./metrics";
import { Relay } from "./relay";

const parsed = parseRelayConfig(process.env);
if (!parsed.ok) {
  console.error(JSON.stringify({ level: "error", code: "CONFIG_INVALID", msg: parsed.message, variables: parsed.variables }));
  process.exit(2);
}
const config = parsed.config;
setLogLevel(config.LOG_LEVEL);

const relay = new Relay(config);
const http = await startHttp(relay.metrics, () => relay.backlog(), config.RELAY_HTTP_HOST, config.RELAY_HTTP_PORT, {
  stats: config.RELAY_STATS_ENDPOINT === "1",
}).catch((err: NodeJS.ErrnoException) => {
  const msg = err.code === "EADDRINUSE" ? `port ${config.RELAY_HTTP_PORT} is in use; set RELAY_HTTP_PORT to another port` : err.message;
  console.error(JSON.stringify({ level: "error", code: "HTTP_LISTEN_FAILED", msg }));
  process.exit(1);
});
const addr = http.address();
log("info", "relay started", {
  http: typeof addr === "object" && addr ? `${addr.address}:${addr.port}` : String(addr),
  worker: new URL(config.WORKER_URL).origin,
});
relay.start();

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log("info", "stopping", { signal });
  await relay.stop();
  http.close();
  log("info", "stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
