/**
 * notifiws client SDK: subscriptions to channels for browsers and for Node
 * 22+ (global WebSocket), with no runtime dependency: message types come from
 * the shared protocol module as types only.
 *
 * - connect.ts: one subscription (reconnect, resume, heartbeat, token refresh);
 * - sync-state.ts: initial state plus live events (syncState);
 * - live-table.ts: a watched table's rows from the edge, kept equal to the database (liveTable);
 * - values.ts: row values decoded by column type;
 * - presence.ts: who is connected to a channel (applyPresence);
 * - decide.ts: every close and reconnect decision; errors.ts: the SDK's own codes.
 */
export { connect } from "./connect";
export { syncState, type LoadedState, type SyncOptions, type SyncedState } from "./sync-state";
export { liveTable, rowKey, type LiveTable, type LiveTableOptions, type Row } from "./live-table";
export type { ConnectionState, ConnectOptions, ResetInfo, Subscription, SubscriptionError } from "./types";
export { SdkErrorCode } from "./errors";
export { applyPresence, EMPTY_PRESENCE, type Presence, type PresenceMember, type PresenceState } from "./presence";
export { decodeRow, stringifyExact, type ValueOptions } from "./values";
export { fullJitter } from "../shared/backoff";
export { parseSnapshot, visibleInSnapshot, type PgSnapshot, type ParsedSnapshot } from "../shared/snapshot";
export type { ChangeEvent, Condition, Envelope, Filter, Operation, ServerMessage } from "../shared/types";
