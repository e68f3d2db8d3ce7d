/**
 * What an object does that Cloudflare bills beyond SQLite rows (sql.ts):
 * requests (every fetch, RPC call and alarm an object handles is one; every
 * stub call a caller makes is one), incoming WebSocket messages (billed as
 * requests at 20:1) and setAlarm calls (each a row written). Counted since
 * the object started and reported with its stats (rollup.ts), so /metrics
 * shows what a workload costs (docs/benchmarks.md, "Cost").
 */
export interface Meter {
  /** fetch, RPC calls and alarms this object handled. */
  requests: number;
  /** WebSocket messages received from clients. */
  wsMessagesIn: number;
  /** setAlarm calls. */
  alarmsSet: number;
}

export const newMeter = (): Meter => ({ requests: 0, wsMessagesIn: 0, alarmsSet: 0 });
