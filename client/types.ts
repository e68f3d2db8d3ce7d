/** The SDK's public types (the wire types are shared/types.ts). */
import type { Envelope, Filter } from "../shared/types";
import type { ValueOptions } from "./values";
import type { Presence, PresenceState } from "./presence";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface ResetInfo {
  reason: "history_expired" | "ahead_of_head" | "source_gap";
  headSeq: number;
  oldestSeq: number;
}

export interface SubscriptionError {
  /** HTTP status of a refused handshake (401/403/400), or undefined for protocol errors. */
  status?: number;
  /** Stable code: TOKEN_INVALID, CHANNEL_FORBIDDEN, FORBIDDEN (close 4003), BAD_JSON, … */
  code: string;
  message: string;
  /** True when the subscription gave up (closed) because of this error. */
  permanent: boolean;
}

export interface ConnectOptions {
  /** Base URL of the notifiws Worker (http(s):// or ws(s)://). */
  url: string;
  channel: string;
  /** A fixed token. Use getToken instead when tokens expire. */
  token?: string;
  /** Called for the first token and before each refresh/reconnect. */
  getToken?: () => string | Promise<string>;
  /** Resume after this seq (the last one your application processed). Default: live only. */
  since?: number;
  /** Server-side filter (see docs/protocol.md). */
  filter?: Filter;
  onEvent?: (event: Envelope) => void;
  /** Events were missed (history window passed): refetch state. Events continue after it resolves. */
  onReset?: (info: ResetInfo) => void | Promise<void>;
  onStateChange?: (state: ConnectionState) => void;
  onError?: (error: SubscriptionError) => void;
  /** Backoff base in ms. Default 500. */
  backoffBaseMs?: number;
  /** Backoff cap in ms. Default 30000. */
  backoffMaxMs?: number;
  /** Heartbeat interval in ms. Default 25000. */
  heartbeatMs?: number;
  /** A connection with no frame for this long after a ping is dead. Default 10000. */
  heartbeatTimeoutMs?: number;
  /** Refresh the token this many seconds before it expires (needs getToken). Default 60. */
  refreshBeforeSeconds?: number;
  /**
   * Flow control: acknowledge after this many events (docs/protocol.md, "Flow control"). Default 500.
   * Each ack is a message to the channel's object (billed as 1/20 of a request): keep them rare.
   */
  ackEveryEvents?: number;
  /** ...or this long after the first unacknowledged event, ms (well under FLOW_GRACE_MS, 5 s by default). Default 1000. */
  ackEveryMs?: number;
  /**
   * Subscribe to the channel's presence (a channel in PRESENCE_CHANNELS; docs/protocol.md, "Presence"):
   * `subscription.presence` lists who is connected. Default false.
   */
  presence?: boolean;
  /** Called after every presence change (also `subscription.presence.onChange`). */
  onPresence?: (state: PresenceState) => void;
  /** WebSocket implementation. Default globalThis.WebSocket. */
  WebSocket?: typeof WebSocket;
  /** fetch implementation for diagnosing refused handshakes. Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** How row values are decoded from the wire (client/values.ts; docs/protocol.md, "Values"). Default: exact, int8 and numeric as strings. */
  values?: ValueOptions;
}

export interface Subscription {
  readonly state: ConnectionState;
  /** Last seq delivered to onEvent (or the resume point). */
  readonly lastSeq: number;
  /** now − committedAt of the last event, ms (undefined before the first event). */
  readonly lagMs: number | undefined;
  /** Handshakes attempted so far (1 + reconnects). */
  readonly attempts: number;
  /** Who is connected to the channel (with `presence: true`; empty otherwise). */
  readonly presence: Presence;
  /**
   * This connection's presence metadata (at most PRESENCE_META_BYTES as JSON, about one update a
   * second); kept and sent again after every reconnect. Needs `presence: true`.
   */
  setPresence(meta: Record<string, unknown>): void;
  /** Stops for good. */
  close(): void;
}
