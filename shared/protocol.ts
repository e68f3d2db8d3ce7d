/**
 * The notifiws wire protocol: the one module that defines every message.
 * The Worker, the channel Durable Object, the relay, the client SDK and the
 * tests import these schemas and types. Two hot paths write JSON text by hand
 * in exactly these shapes instead of serializing objects, so row values pass
 * through untouched: the relay's event (relay/event.ts, eventJson) and the
 * channel object's envelope and `events` frame (durable-objects/envelope.ts,
 * envelopeJson; durable-objects/sockets.ts, packFrames); the tests parse what
 * they produce with these schemas. docs/protocol.md is the human-readable
 * contract for the same shapes. It runs past 300 lines on purpose: one module
 * owns every message of the wire protocol, so no shape is defined twice.
 */
// A namespace import lets the bundler keep only what is used (`import { z }` pulls all of zod, locales included: ~450 KB minified).
import * as z from "zod";

export * from "./wire";
import type * as T from "./types";

/** True when A and B are the same type (each assignable to the other). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** Channel names: letters, digits and `_ . : -`, 1..128 chars, not starting with a separator. */
export const ChannelName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/, "channel names use letters, digits and _ . : -");

export const Operation = z.enum(["insert", "update", "delete", "publish", "enter", "leave"]);
export type Operation = z.infer<typeof Operation>;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A row of column values. Checked, never rebuilt: z.record copies keys into a
 * new object, where a column named `__proto__` would be dropped (or become
 * the prototype); the values also keep numbers the Worker holds as written
 * (shared/exact-json.ts).
 */
const Row = z.custom<Record<string, unknown>>(isObject, "expected an object of column values");

/** Each column's Postgres type (`int8`, `numeric`, `jsonb`, `text[]`…): docs/protocol.md, "Values". Checked, never rebuilt (see Row). */
const ColumnTypes = z.custom<Record<string, string>>(
  (v) => isObject(v) && Object.values(v).every((t) => typeof t === "string" && t.length <= 128),
  "expected an object of column type names",
);

/**
 * A change as produced by Postgres (through the relay) or the publish API,
 * before the channel assigns its sequence number.
 */
export const ChangeEvent = z.object({
  /** Globally unique and stable across redeliveries: the dedupe key. */
  id: z.string().min(1).max(128),
  channel: ChannelName,
  op: Operation,
  /** Source table (`schema.table`), absent for published events. */
  table: z.string().max(128).optional(),
  /** The published columns of the new row (old row for deletes); free-form for publish. */
  data: Row.nullable(),
  /** Published columns of the previous row, for updates on watched tables that ask for it. */
  old: Row.nullable().optional(),
  /** Commit (or publish) time, epoch milliseconds. */
  committedAt: z.number().int().nonnegative(),
  /**
   * Id of the Postgres transaction that produced the change (xid8, decimal
   * text: 64-bit ids do not fit a JSON number exactly). Absent for the publish
   * API. See shared/snapshot.ts for how clients use it.
   */
  txid: z
    .string()
    .regex(/^[0-9]{1,20}$/, "a decimal transaction id")
    .optional(),
  /** The Postgres type of each column of `data` and `old`; absent for the publish API. */
  types: ColumnTypes.optional(),
});
export type ChangeEvent = T.ChangeEvent;
const _changeEvent: Same<z.infer<typeof ChangeEvent>, T.ChangeEvent> = true;

/** An event as delivered to subscribers: the change plus its per-channel sequence number. */
export const Envelope = ChangeEvent.extend({
  seq: z.number().int().positive(),
});
export type Envelope = T.Envelope;
const _envelope: Same<z.infer<typeof Envelope>, T.Envelope> = true;

/** Hard ceiling on events in one ingest batch; INGEST_MAX_EVENTS may lower it. */
export const MAX_BATCH_EVENTS = 5000;

/** Body of POST /internal/events (relay -> Worker). */
export const IngestBatch = z
  .object({
    batchId: z.string().min(1).max(128),
    events: z.array(ChangeEvent).max(MAX_BATCH_EVENTS),
    /**
     * Channels whose source lost events before this batch's (a replication
     * slot Postgres invalidated): each gets a gap marker, stored ahead of the
     * batch's events, and its clients a `reset` with reason "source_gap".
     */
    gaps: z.array(ChannelName).max(MAX_BATCH_EVENTS).optional(),
  })
  .refine((b) => b.events.length > 0 || (b.gaps?.length ?? 0) > 0, { message: "a batch carries events or gaps", path: ["events"] });
export type IngestBatch = z.infer<typeof IngestBatch>;

/** Body of POST /api/channels/:channel/publish. */
export const PublishRequest = z.object({
  id: z.string().min(1).max(128).optional(),
  data: Row,
  table: z.string().max(128).optional(),
});
export type PublishRequest = z.infer<typeof PublishRequest>;

// ---------------------------------------------------------------------------
// Server-side filters
// ---------------------------------------------------------------------------

const Scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const Condition = z.discriminatedUnion("op", [
  z.object({
    /** Column of `data` (dot path for nested JSON, e.g. `meta.region`). */
    field: z.string().min(1).max(128),
    op: z.enum(["eq", "ne"]),
    value: Scalar,
  }),
  z.object({ field: z.string().min(1).max(128), op: z.enum(["lt", "lte", "gt", "gte"]), value: z.union([z.number(), z.string()]) }),
  z.object({ field: z.string().min(1).max(128), op: z.literal("in"), value: z.array(Scalar).min(1).max(100) }),
  z.object({ field: z.string().min(1).max(128), op: z.literal("exists"), value: z.boolean().default(true) }),
]);
export type Condition = T.Condition;
const _condition: Same<z.infer<typeof Condition>, T.Condition> = true;

/**
 * Per-connection filter. Every present part must match (AND). Evaluated by
 * `matchesFilter` without eval; kept small because it lives in the socket's
 * hibernation attachment (ATTACHMENT_MAX_BYTES, shared/limits.ts).
 */
export const Filter = z
  .object({
    table: z.string().max(128).optional(),
    ops: z.array(Operation).min(1).optional(),
    where: z.array(Condition).max(16).optional(),
  })
  .strict();
export type Filter = T.Filter;
const _filter: Same<z.infer<typeof Filter>, T.Filter> = true;

/** Max serialized filter size (bytes of JSON). */
export const MAX_FILTER_BYTES = 1024;

// ---------------------------------------------------------------------------
// Client -> server messages
// ---------------------------------------------------------------------------

export const ClientMessage = z.discriminatedUnion("type", [
  /** Heartbeat. Normally answered by auto-response without waking the object; see PING_FRAME. */
  z.object({ type: z.literal("ping") }),
  /** Replay every event after `since`, then continue live. */
  z.object({ type: z.literal("resume"), since: z.number().int().nonnegative() }),
  /** Extend the connection with a fresh token for the same subject. */
  z.object({ type: z.literal("refresh"), token: z.string().min(1).max(8192) }),
  /** Flow control: every event up to `seq` was processed (connections opened with `ack=1`; docs/protocol.md). */
  z.object({ type: z.literal("ack"), seq: z.number().int().nonnegative() }),
  /** Presence: this connection's metadata (connections opened with `presence=1`; docs/protocol.md, "Presence"). */
  z.object({ type: z.literal("presence"), meta: Row }),
]);
export type ClientMessage = T.ClientMessage;
const _clientMessage: Same<z.infer<typeof ClientMessage>, T.ClientMessage> = true;

// ---------------------------------------------------------------------------
// Server -> client messages
// ---------------------------------------------------------------------------

/** Codes of `error` frames: a client message was refused; the connection stays open. */
export const ErrorCode = z.enum(["BAD_JSON", "BAD_MESSAGE", "UNKNOWN_TYPE", "PRESENCE_DISABLED", "PRESENCE_TOO_LARGE", "PRESENCE_RATE_LIMITED"]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const PresenceMember = z.object({
  sub: z.string(),
  role: z.string().optional(),
  claims: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  connections: z.number().int().nonnegative(),
  meta: Row.optional(),
});
const _presenceMember: Same<z.infer<typeof PresenceMember>, T.PresenceMember> = true;

export const PresenceCounts = z.object({ users: z.number().int().nonnegative(), connections: z.number().int().nonnegative() });

export const ServerMessage = z.discriminatedUnion("type", [
  /** First frame on every connection. */
  z.object({
    type: z.literal("welcome"),
    channel: ChannelName,
    connectionId: z.string(),
    /** Highest seq assigned on this channel so far (0 if none). */
    headSeq: z.number().int().nonnegative(),
    /** Token expiry, epoch seconds. */
    expiresAt: z.number().int(),
  }),
  /** One or more events, in seq order. */
  z.object({ type: z.literal("events"), events: z.array(Envelope).min(1) }),
  /**
   * Events were missed: the requested resume point is outside the retained
   * history, or (source_gap) the source lost events, sent live or on resume.
   * Refetch state, then continue; live events follow from headSeq + 1.
   */
  z.object({
    type: z.literal("reset"),
    reason: z.enum(["history_expired", "ahead_of_head", "source_gap"]),
    headSeq: z.number().int().nonnegative(),
    oldestSeq: z.number().int().nonnegative(),
  }),
  /** A replay (connect with `since`, or `resume`) is complete: every event up to headSeq that passes the filter was sent; what follows is live. */
  z.object({ type: z.literal("caught_up"), headSeq: z.number().int().nonnegative() }),
  z.object({ type: z.literal("pong") }),
  z.object({ type: z.literal("refreshed"), expiresAt: z.number().int() }),
  /** A recoverable problem with a client message; the connection stays open. */
  z.object({ type: z.literal("error"), code: ErrorCode, message: z.string() }),
  /** Presence: the whole state; it replaces what the client had. */
  z.object({ type: z.literal("presence"), members: z.array(PresenceMember), ...PresenceCounts.shape }),
  /** Presence: changes since the previous presence frame. */
  z.object({
    type: z.literal("presence_diff"),
    joins: z.array(PresenceMember),
    updates: z.array(PresenceMember),
    leaves: z.array(z.string()),
    ...PresenceCounts.shape,
  }),
]);
export type ServerMessage = T.ServerMessage;
const _serverMessage: Same<z.infer<typeof ServerMessage>, T.ServerMessage> = true;

// ---------------------------------------------------------------------------
// HTTP errors
// ---------------------------------------------------------------------------

/** Every `code` an HTTP error body can carry (docs/protocol.md, "HTTP errors"). */
export const HttpErrorCode = z.enum([
  "BAD_CHANNEL",
  "BAD_SINCE",
  "BAD_FILTER",
  "BAD_SUBPROTOCOL",
  "BAD_JSON",
  "BAD_REQUEST",
  "INVALID_BATCH",
  "INVALID_EVENT",
  "SESSION_TOO_LARGE",
  "TOKEN_MISSING",
  "TOKEN_INVALID",
  "TOKEN_EXPIRED",
  "BAD_SIGNATURE",
  "STALE_TIMESTAMP",
  "KEY_MISSING",
  "KEY_INVALID",
  "UNAUTHORIZED",
  "ORIGIN_NOT_ALLOWED",
  "CHANNEL_FORBIDDEN",
  "KEY_FORBIDDEN_CHANNEL",
  "NOT_FOUND",
  "BATCH_REPLAYED",
  "BATCH_TOO_LARGE",
  "TOO_MANY_EVENTS",
  "EVENT_TOO_LARGE",
  "BODY_TOO_LARGE",
  "UPGRADE_REQUIRED",
  "CONFIG_INVALID",
  "INTERNAL",
  "HTTP_ERROR",
  "CHANNEL_UNAVAILABLE",
  "ADMIN_DISABLED",
  "DASHBOARD_DISABLED",
  "DATABASE_UNAVAILABLE",
  "FANOUT_FULL",
  "CHANNEL_FULL",
  "ROWS_DISABLED",
  "CHANNEL_NOT_A_TABLE",
  "TABLE_HAS_NO_KEY",
  "TABLE_TOO_LARGE",
  "ROWS_MISCONFIGURED",
  "PRESENCE_DISABLED",
  "PRESENCE_FORBIDDEN",
]);
export type HttpErrorCode = z.infer<typeof HttpErrorCode>;

export const HttpErrorBody = z.object({
  error: z.object({
    /** One of HttpErrorCode; kept a string here so clients accept codes added later. */
    code: z.string(),
    message: z.string(),
    /** EVENT_TOO_LARGE: the ids of the events over MAX_EVENT_BYTES (nothing of the batch was applied). */
    eventIds: z.array(z.string()).optional(),
    /** CHANNEL_UNAVAILABLE: channels whose objects did not store their events; retry only these. */
    failedChannels: z.array(z.string()).optional(),
    /** CHANNEL_UNAVAILABLE: channels of the batch that were stored, with their heads. */
    channels: z.record(z.string(), z.object({ headSeq: z.number().int().nonnegative() })).optional(),
    /** STALE_TIMESTAMP: the Worker's clock, epoch seconds, so the sender can log its skew. */
    serverTime: z.number().int().optional(),
  }),
});
export type HttpErrorBody = z.infer<typeof HttpErrorBody>;

/** Reply of POST /internal/events on success. */
export const IngestResult = z.object({
  batchId: z.string(),
  accepted: z.number().int().nonnegative(),
  duplicates: z.number().int().nonnegative(),
  channels: z.record(z.string(), z.object({ headSeq: z.number().int().nonnegative() })),
});
export type IngestResult = z.infer<typeof IngestResult>;
