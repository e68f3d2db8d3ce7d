/** Relay configuration from the environment, validated with zod at start. */
// A namespace import lets the bundler keep only what is used (`import { z }` pulls all of zod, locales included: ~450 KB minified).
import * as z from "zod";
import { describeIssues, intVar as int, LogLevel, pickVars, PostgresUrl } from "../shared/zod";

export const RelayConfigShape = z.object({
  /** Direct (not pooled) Postgres connection string: the leader lock, LISTEN and replication need a session. Required. */
  DATABASE_URL: PostgresUrl,
  /**
   * Where the trigger functions hand events to the relay (docs/database.md, "Choosing a capture mode"):
   * `outbox` (a row per event in notifiws.outbox; works on any Postgres 13+) or `wal` (a logical message
   * read from a replication slot; needs wal_level = logical, Postgres 14+ and a role with REPLICATION).
   * The leader switches the database to this mode when it takes over. Default outbox.
   */
  RELAY_CAPTURE: z.enum(["outbox", "wal"]).default("outbox"),
  /** Name of the logical replication slot and of its publication (wal mode). Default notifiws. */
  RELAY_SLOT: z
    .string()
    .regex(/^[a-z0-9_]{1,63}$/, "must be 1-63 characters of a-z, 0-9 and _ (a replication slot name)")
    .default("notifiws"),
  /**
   * wal mode: how often the relay asks the walsender for its position (a keepalive), so a slot whose
   * watched tables are quiet still moves past the WAL other tables write, ms. Default 10000.
   */
  RELAY_SLOT_STATUS_MS: int(10_000, 50, 600_000),
  /** wal mode: decoded bytes waiting for the Worker before the relay stops reading the slot (Postgres keeps the WAL meanwhile). Default 32 MiB. */
  RELAY_WAL_BUFFER_BYTES: int(32 * 1024 * 1024, 1024 * 1024, 1024 * 1024 * 1024),
  /** Base URL of the notifiws Worker; batches go to `${WORKER_URL}/internal/events`. Required. */
  WORKER_URL: z.url(),
  /** HMAC secret shared with the Worker's INGEST_SECRETS (>= 32 chars). Required. */
  INGEST_SECRET: z.string().min(32, "must be at least 32 characters"),
  /** Max events per batch (keep <= the Worker's INGEST_MAX_EVENTS). Default 1000. */
  RELAY_BATCH_MAX_EVENTS: int(1000, 1, 5000),
  /** Max JSON bytes per batch. Default 1 MiB. */
  RELAY_BATCH_MAX_BYTES: int(1024 * 1024, 1024, 32 * 1024 * 1024),
  /** How long to wait after a wake-up to coalesce more rows into one batch, ms. Default 2. */
  RELAY_COALESCE_MS: int(2, 0, 10_000),
  /**
   * outbox mode: how often an idle relay looks for new rows, ms; while rows flow it drains without pause.
   * Polling replaces a NOTIFY per transaction, whose commit lock serialises writers (docs/database.md).
   * 10 ms costs the database about 100 index probes a second and keeps commit-to-Worker p50 under 20 ms.
   * Default 10. A database set to notifiws.wakeup = 'notify' can use a long safety poll (5000) instead.
   */
  RELAY_POLL_MS: int(10, 1, 600_000),
  /** Timeout of one POST to the Worker, ms. Default 10000. */
  RELAY_POST_TIMEOUT_MS: int(10_000, 100, 300_000),
  /**
   * How often the leader stamps its heartbeat (which doubles as the liveness check of its
   * connection), and how often a standby looks at it, ms. Default 2000.
   */
  RELAY_HEARTBEAT_MS: int(2000, 50, 60_000),
  /**
   * A standby terminates the leader's session when its heartbeat has not moved for this long, ms.
   * Must exceed RELAY_STATEMENT_TIMEOUT_MS + 2 × RELAY_HEARTBEAT_MS (a healthy leader's heartbeat can
   * wait behind one statement). Default 10000: delivery resumes within about 15 s of a leader freezing.
   */
  RELAY_TAKEOVER_MS: int(10_000, 200, 600_000),
  /** Server-side statement_timeout of the relay's session; a client-side deadline 1 s later destroys the socket. Default 5000. */
  RELAY_STATEMENT_TIMEOUT_MS: int(5000, 100, 600_000),
  /** How often a standby retries the leader lock, ms. Default 1000. */
  RELAY_STANDBY_POLL_MS: int(1000, 50, 60_000),
  /** Backoff base and cap (full jitter), ms. Defaults 100 and 10000. */
  RELAY_BACKOFF_BASE_MS: int(100, 1, 60_000),
  RELAY_BACKOFF_MAX_MS: int(10_000, 1, 600_000),
  /** Advisory lock key that elects the single draining relay. Default 7354002. */
  RELAY_LOCK_KEY: int(7_354_002, 1, 2 ** 31 - 1),
  /** Port for /healthz and /metrics; 0 picks a free one. Default 9464. */
  RELAY_HTTP_PORT: int(9464, 0, 65_535),
  /** Bind address for /healthz and /metrics. Default 127.0.0.1 (the container image sets 0.0.0.0). */
  RELAY_HTTP_HOST: z.string().min(1).default("127.0.0.1"),
  /** 1 serves GET /stats: exact p50/p99 of the recent POST latencies as JSON (load tests; /metrics has histograms). Default 0. */
  RELAY_STATS_ENDPOINT: z.enum(["0", "1"]).default("0"),
  /** debug | info | warn | error. Default info. */
  LOG_LEVEL: LogLevel.default("info"),
});
export const RelayConfigSchema = RelayConfigShape.check((ctx) => {
  const c = ctx.value;
  if (c.RELAY_TAKEOVER_MS <= c.RELAY_STATEMENT_TIMEOUT_MS + 2 * c.RELAY_HEARTBEAT_MS)
    ctx.issues.push({
      code: "custom",
      path: ["RELAY_TAKEOVER_MS"],
      message: "must exceed RELAY_STATEMENT_TIMEOUT_MS + 2 × RELAY_HEARTBEAT_MS, or a healthy leader could be replaced",
      input: c.RELAY_TAKEOVER_MS,
    });
});
export type RelayConfig = z.infer<typeof RelayConfigShape>;

export type ParseResult = { ok: true; config: RelayConfig } | { ok: false; variables: string[]; message: string };

/** Parses the environment; on failure names every bad variable (never its value). */
export function parseRelayConfig(env: Record<string, string | undefined>): ParseResult {
  const raw = pickVars(RelayConfigShape.shape, env);
  const parsed = RelayConfigSchema.safeParse(raw);
  if (parsed.success) return { ok: true, config: parsed.data };
  const { variables, details } = describeIssues(parsed.error.issues);
  return { ok: false, variables, message: `invalid relay configuration: ${details}` };
}
