/**
 * The wire types as plain TypeScript, with no dependency, so the SDK's type
 * declarations need nothing installed. shared/protocol.ts holds the zod
 * schemas and checks at compile time that they describe exactly these types.
 */

/** enter and leave: an update moved a row into or out of a derived channel's condition (docs/protocol.md, "Operations"). */
export type Operation = "insert" | "update" | "delete" | "publish" | "enter" | "leave";

/** A change, before the channel assigns its sequence number. */
export interface ChangeEvent {
  /** Globally unique and stable across redeliveries: the dedupe key. */
  id: string;
  channel: string;
  op: Operation;
  /** Source table (`schema.table`), absent for published events. */
  table?: string | undefined;
  /** The published columns of the new row (old row for deletes); free-form for publish. */
  data: Record<string, unknown> | null;
  /** Published columns of the previous row, for updates on tables watched with include_old. */
  old?: Record<string, unknown> | null | undefined;
  /** Commit (or publish) time, epoch milliseconds. */
  committedAt: number;
  /** Id of the Postgres transaction (xid8, decimal text); absent for the publish API. */
  txid?: string | undefined;
  /**
   * The Postgres type of each column of `data` and `old` (`int8`, `numeric`,
   * `jsonb`, `text[]`…); absent for the publish API. On the wire, int8,
   * numeric, money, float and json values are text (docs/protocol.md, "Values").
   */
  types?: Record<string, string> | undefined;
}

/** An event as delivered to subscribers: the change plus its per-channel sequence number. */
export interface Envelope extends ChangeEvent {
  seq: number;
}

type Scalar = string | number | boolean | null;

export type Condition =
  | { field: string; op: "eq" | "ne"; value: Scalar }
  | { field: string; op: "lt" | "lte" | "gt" | "gte"; value: number | string }
  | { field: string; op: "in"; value: Scalar[] }
  | { field: string; op: "exists"; value: boolean };

/** Server-side filter: every present part must match. */
export interface Filter {
  table?: string | undefined;
  ops?: Operation[] | undefined;
  where?: Condition[] | undefined;
}

export type ClientMessage =
  | { type: "ping" }
  | { type: "resume"; since: number }
  | { type: "refresh"; token: string }
  /** Flow control: every event up to `seq` was processed (docs/protocol.md, "Flow control"). */
  | { type: "ack"; seq: number }
  /** Presence: this connection's metadata, shown to the channel's presence subscribers (docs/protocol.md, "Presence"). */
  | { type: "presence"; meta: Record<string, unknown> };

export type ErrorCode = "BAD_JSON" | "BAD_MESSAGE" | "UNKNOWN_TYPE" | "PRESENCE_DISABLED" | "PRESENCE_TOO_LARGE" | "PRESENCE_RATE_LIMITED";

/** A user present on a channel: their connections grouped (docs/protocol.md, "Presence"). */
export interface PresenceMember {
  /** The token's subject. */
  sub: string;
  /** The token's role, when PRESENCE_CLAIMS shows it. */
  role?: string | undefined;
  /** Other token claims PRESENCE_CLAIMS shows. */
  claims?: Record<string, string | number | boolean> | undefined;
  /** The user's open connections to the channel (across every object of the channel). */
  connections: number;
  /** Metadata the user's most recently updated connection set with a `presence` message. */
  meta?: Record<string, unknown> | undefined;
}

/** Exact totals, also when the member list is capped. */
export interface PresenceCounts {
  /** Distinct users present. */
  users: number;
  /** Their connections. */
  connections: number;
}

export type ServerMessage =
  | { type: "welcome"; channel: string; connectionId: string; headSeq: number; expiresAt: number }
  | { type: "events"; events: Envelope[] }
  | { type: "reset"; reason: "history_expired" | "ahead_of_head" | "source_gap"; headSeq: number; oldestSeq: number }
  /** A replay (connect with `since`, or `resume`) is complete: every event up to headSeq that passes the filter was sent. */
  | { type: "caught_up"; headSeq: number }
  | { type: "pong" }
  | { type: "refreshed"; expiresAt: number }
  | { type: "error"; code: ErrorCode; message: string }
  /** Presence: the whole state (replaces what the client had), then diffs. */
  | ({ type: "presence"; members: PresenceMember[] } & PresenceCounts)
  /** Presence: what changed since the previous presence frame, batched. */
  | ({ type: "presence_diff"; joins: PresenceMember[]; updates: PresenceMember[]; leaves: string[] } & PresenceCounts);
