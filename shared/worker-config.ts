/**
 * The Worker's configuration (its routes and its Durable Objects read the
 * same variables), validated with zod on first use. Every problem is
 * reported at once, naming the variables (never their values).
 */
// A namespace import lets the bundler keep only what is used (`import { z }` pulls all of zod, locales included: ~450 KB minified).
import * as z from "zod";
import { DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_CEILING } from "./limits";
import { describeIssues, intVar as int, LogLevel, pickVars } from "./zod";

/** A comma-separated list; `fallback` when the variable is unset (an empty value is an empty list). */
const list = (fallback = "") =>
  z
    .string()
    .optional()
    .transform((s) =>
      (s ?? fallback)
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean),
    );
const csv = list();

/** Claims a presence member never shows: the token's mechanics, its grants, and `sub` (always shown as the member's id). */
const HIDDEN_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "jti", "sub", "channels", "presence"];

export const ConfigSchema = z.object({
  /** HS256 secret for client JWTs (>= 32 chars). One of JWT_SECRET / JWT_JWKS_URL is required. */
  JWT_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  /** JWKS URL for RS256/ES256 client JWTs; fetched once and cached across requests. */
  JWT_JWKS_URL: z.url().optional(),
  /** Expected `iss` claim; not checked when unset. */
  JWT_ISSUER: z.string().min(1).optional(),
  /** Expected `aud` claim; not checked when unset. */
  JWT_AUDIENCE: z.string().min(1).optional(),
  /** Comma-separated HMAC secrets for relay ingest (first signs, all verify). Required, each >= 32 chars. */
  INGEST_SECRETS: csv.pipe(
    z
      .array(z.string().min(32, "each secret must be at least 32 characters"))
      .min(1, "at least one secret is required")
      .max(2, "at most two secrets (current, previous)"),
  ),
  /** Comma-separated browser origins allowed to open sockets; `*` allows any. Default: none (only non-browser clients without Origin). */
  ALLOWED_ORIGINS: csv,
  /** Bearer token for /stats and /metrics. Unset: those routes answer 503. */
  ADMIN_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  /**
   * Comma-separated publish API keys as lowercase hex SHA-256 hashes, each optionally limited to
   * channel patterns: `<hash>` publishes anywhere, `<hash>=orders.*|alerts` only to matching
   * channels (same pattern rules as token claims). Unset: publishing is off.
   */
  PUBLISH_KEY_HASHES: csv.pipe(
    z.array(
      z
        .string()
        .regex(/^[0-9a-f]{64}(=[A-Za-z0-9_*][A-Za-z0-9_.:*-]*(\|[A-Za-z0-9_*][A-Za-z0-9_.:*-]*)*)?$/, "must be hex SHA-256 hashes, optionally =pattern|pattern")
        .transform((entry) => {
          const [hash, patterns] = entry.split("=") as [string, string | undefined];
          return { hash, channels: patterns === undefined ? ["*"] : patterns.split("|") };
        }),
    ),
  ),
  /** Events kept per channel for resume. Default 1000. */
  HISTORY_MAX_EVENTS: int(1000, 1, 1_000_000),
  /** Max age of retained events, seconds. Default 86400 (1 day). */
  HISTORY_MAX_AGE_SECONDS: int(86_400, 1, 30 * 86_400),
  /** How long event ids are remembered for dedupe, seconds. Default 86400. */
  DEDUPE_WINDOW_SECONDS: int(86_400, 60, 30 * 86_400),
  /** Max size of one client->server WebSocket message, bytes. Default 4096. */
  MAX_CLIENT_MESSAGE_BYTES: int(4096, 64, 1_048_576),
  /** Sustained client messages per second per connection. Default 10. */
  CLIENT_RATE_PER_SEC: z.coerce.number().positive().max(10_000).default(10),
  /** Burst allowance for client messages. Default 20. */
  CLIENT_RATE_BURST: int(20, 1, 100_000),
  /** Max events in one ingest batch. Default 1000. */
  INGEST_MAX_EVENTS: int(1000, 1, 5000),
  /** Max ingest body size, bytes. Default 4 MiB. */
  INGEST_MAX_BYTES: int(4 * 1024 * 1024, 1024, 32 * 1024 * 1024),
  /**
   * Max size of one event as stored (its JSON in UTF-8 bytes). Larger events are refused
   * with 413 EVENT_TOO_LARGE naming their ids. Default 1,000,000; at most 1,900,000 because a
   * Durable Object SQLite row is capped at 2 MB in production (local workerd does not enforce it).
   */
  MAX_EVENT_BYTES: int(DEFAULT_MAX_EVENT_BYTES, 1024, MAX_EVENT_BYTES_CEILING),
  /** Max publish API body, bytes. Default 256 KiB. */
  PUBLISH_MAX_BYTES: int(256 * 1024, 1024, MAX_EVENT_BYTES_CEILING),
  /**
   * Channel patterns (same rules as token claims) whose sockets are held by fan-out objects near
   * their clients instead of the channel's own object; the channel's object keeps the order and the
   * history and hands every batch to them. Default: none (one object per channel).
   */
  FANOUT_CHANNELS: csv,
  /**
   * Sockets one channel object holds before it answers 503 CHANNEL_FULL (clients retry with backoff;
   * use FANOUT_CHANNELS for more). Default 30000, under the platform's 32,768 hibernatable sockets per object.
   */
  MAX_SOCKETS_PER_OBJECT: int(30_000, 1, 32_768),
  /** Sockets per fan-out object before another one in the same region is used. Default 10000 (the platform allows 32,768). */
  FANOUT_OBJECT_CAPACITY: int(10_000, 1, 32_768),
  /** How often an active channel reports its stats to the stats store, ms (0: on every change). Default 5000. */
  STATS_ROLLUP_MS: int(5000, 0, 600_000),
  /** A channel with no connections and no events for this long is dropped from /stats. Default 604800 (7 days). */
  STATS_RETENTION_SECONDS: int(7 * 86_400, 60, 365 * 86_400),
  /** /metrics labels the busiest channels (by events) by name and folds the rest into channel="_other". Default 20. */
  METRICS_TOP_CHANNELS: int(20, 1, 1000),
  /**
   * Flow control (docs/protocol.md, "Flow control"; durable-objects/flow.ts): bytes a socket that
   * acknowledges may leave unacknowledged for longer than FLOW_GRACE_MS before it is closed with 4009.
   * Default 1 MiB.
   */
  FLOW_SOCKET_BYTES: int(1024 * 1024, 16 * 1024, 64 * 1024 * 1024),
  /**
   * The same, summed over one object's sockets: past it the slowest are closed first. Default 32 MiB,
   * a quarter of the 128 MB an isolate has in production.
   */
  FLOW_OBJECT_BYTES: int(32 * 1024 * 1024, 64 * 1024, 96 * 1024 * 1024),
  /** How long sent bytes may stay unacknowledged before they count against the budgets, ms. Default 5000. */
  FLOW_GRACE_MS: int(5000, 0, 600_000),
  /**
   * Presence (docs/protocol.md, "Presence"): channel patterns (same rules as token claims) whose
   * connections are listed to the channel's presence subscribers. Default: none.
   */
  PRESENCE_CHANNELS: csv,
  /**
   * Token claims a presence member shows besides its `sub`: `role` and any other string, number or
   * boolean claim (each value at most 128 bytes). Default `role`; empty: only `sub`. Registered
   * claims (exp, iat, nbf, iss, aud, jti), `channels` and `presence` are never shown.
   */
  PRESENCE_CLAIMS: list("role").pipe(
    z.array(
      z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, "claim names are letters, digits and _")
        .refine((c) => !HIDDEN_CLAIMS.includes(c), "exp, iat, nbf, iss, aud, jti, sub, channels and presence cannot be listed"),
    ),
  ),
  /** Members a presence state lists (the first to arrive); counts are always exact. Default 100. */
  PRESENCE_MAX_MEMBERS: int(100, 1, 1000),
  /** Bytes (UTF-8 JSON) of one connection's presence metadata. Default 512. */
  PRESENCE_META_BYTES: int(512, 2, 4096),
  /** Presence metadata updates per second per connection (burst 5); more get a PRESENCE_RATE_LIMITED error frame. Default 1. */
  PRESENCE_UPDATES_PER_SEC: z.coerce.number().positive().max(100).default(1),
  /** Presence changes are gathered this long before one diff goes out, ms. Default 250. */
  PRESENCE_BATCH_MS: int(250, 0, 5000),
  /** A user whose last connection closed stays listed this long, so a quick reconnect shows no leave and join, ms. Default 5000. */
  PRESENCE_GRACE_MS: int(5000, 0, 60_000),
  /** Max outgoing frame size before a batch is split, bytes. Default 512 KiB (Workers cap messages at 1 MiB). */
  MAX_FRAME_BYTES: int(512 * 1024, 1024, 1_000_000),
  /** Postgres URL the demo dashboard reads its initial state from (@neondatabase/serverless). Unset: /api/demo/state answers 503. */
  DASHBOARD_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional(),
  /**
   * Postgres URL the rows route (GET /v1/channels/:channel/rows) reads watched tables from, through
   * @neondatabase/serverless: a read-only role with SELECT on the published columns (docs/live-tables.md).
   * Unset: the route answers 503 ROWS_DISABLED.
   */
  ROWS_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional(),
  /** Rows one load may return; a channel with more answers 422 TABLE_TOO_LARGE. Default 10000. */
  ROWS_MAX_ROWS: int(10_000, 1, 100_000),
  /**
   * Bytes of row JSON one load may return (UTF-8); more answers 422 TABLE_TOO_LARGE. Default 4 MiB:
   * the channel's object keeps the latest load in memory to share it (128 MB per isolate in production).
   */
  ROWS_MAX_BYTES: int(4 * 1024 * 1024, 1024, 16 * 1024 * 1024),
  /**
   * How long the channel's object serves its latest load to new loads, seconds, while its history
   * still holds every event since (0: only loads that arrive while a read runs share it). Default 30.
   */
  ROWS_SHARE_SECONDS: int(30, 0, 3600),
  /** Local development only: `host:port/path` of a WebSocket-to-TCP bridge for the Neon driver. Unset: Neon's own endpoint. */
  NEON_WS_PROXY: z.string().min(1).optional(),
  /** Log level: debug | info | warn | error. Default info. */
  LOG_LEVEL: LogLevel.default("info"),
});

export type Config = z.infer<typeof ConfigSchema>;

export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  constructor(
    readonly variables: string[],
    details: string,
  ) {
    super(`invalid configuration: ${details}`);
  }
}

/**
 * The largest presence frame the settings allow: every listed member with the
 * largest `sub` (256 bytes), role (64), shown claims (a 64-byte name and a
 * 128-byte value each) and metadata, plus a leave per member (a diff lists
 * joins and updates among the listed members, and leaves). Frames are sent
 * whole, and the platform caps a WebSocket message at 1 MiB.
 */
export function presenceFrameBytes(c: Pick<Config, "PRESENCE_MAX_MEMBERS" | "PRESENCE_META_BYTES" | "PRESENCE_CLAIMS">): number {
  const member = 100 + 256 + 64 + c.PRESENCE_CLAIMS.length * 200 + c.PRESENCE_META_BYTES;
  return 200 + c.PRESENCE_MAX_MEMBERS * (member + 260);
}

const cache = new WeakMap<object, Config>();

/** Parses (once per env object) or throws ConfigError naming every bad variable. */
export function loadConfig(env: object): Config {
  const hit = cache.get(env);
  if (hit) return hit;
  const raw = pickVars(ConfigSchema.shape, env as Record<string, unknown>);
  const parsed = ConfigSchema.safeParse(raw);
  const issues: z.core.$ZodIssue[] = parsed.success ? [] : [...parsed.error.issues];
  // Checked outside the schema so it is reported together with every other problem.
  if (raw.JWT_SECRET === undefined && raw.JWT_JWKS_URL === undefined)
    issues.push({ code: "custom", path: ["JWT_SECRET"], message: "set JWT_SECRET or JWT_JWKS_URL", input: undefined });
  if (parsed.success && presenceFrameBytes(parsed.data) > parsed.data.MAX_FRAME_BYTES)
    issues.push({
      code: "custom",
      path: ["PRESENCE_MAX_MEMBERS"],
      message: `a presence frame could reach ${presenceFrameBytes(parsed.data)} bytes, over MAX_FRAME_BYTES (${parsed.data.MAX_FRAME_BYTES}); lower it or PRESENCE_META_BYTES`,
      input: undefined,
    });
  if (!parsed.success || issues.length > 0) {
    const { variables, details } = describeIssues(issues);
    throw new ConfigError(variables, details);
  }
  cache.set(env, parsed.data);
  return parsed.data;
}
