/**
 * Protocol constants with no dependency (no zod), so the browser/Node client
 * SDK can import them without pulling the schemas in. shared/protocol.ts
 * re-exports everything here.
 */

/** Protocol name offered and echoed in Sec-WebSocket-Protocol. */
export const SUBPROTOCOL = "notifiws.v1";
/** Prefix of the subprotocol entry that carries the bearer token (browsers cannot set headers on WebSockets). */
export const BEARER_PROTOCOL_PREFIX = "bearer.";

/**
 * Heartbeat frames. The Durable Object answers PING_FRAME with PONG_FRAME via
 * setWebSocketAutoResponse, which matches the request byte for byte, so
 * clients must send exactly this string.
 */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

// ---------------------------------------------------------------------------
// Close codes
// ---------------------------------------------------------------------------

/** WebSocket close codes used by notifiws (4000-4999 are application codes per RFC 6455 §7.4.2). */
export const CloseCode = {
  /** Server shutting the connection down normally. */
  NORMAL: 1000,
  /** A client message exceeded MAX_CLIENT_MESSAGE_BYTES. */
  MESSAGE_TOO_BIG: 1009,
  /** The server failed to send to this socket or hit an unexpected error. */
  INTERNAL_ERROR: 1011,
  /** The token expired and was not refreshed in time. Reconnect with a new token. */
  TOKEN_EXPIRED: 4001,
  /** A refresh token was invalid or not for this subject/channel. Do not retry with the same token. */
  FORBIDDEN: 4003,
  /** The client sent messages faster than the per-connection rate limit. */
  RATE_LIMITED: 4008,
  /**
   * The client (connected with `ack=1`) left more than its flow-control budget of events
   * unacknowledged for longer than the grace period. Reconnect and resume from the last seq.
   */
  SLOW_CONSUMER: 4009,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Close codes after which a client should not reconnect without new credentials. */
export const PERMANENT_CLOSE_CODES: readonly number[] = [CloseCode.FORBIDDEN];

// ---------------------------------------------------------------------------
// Relay signing headers
// ---------------------------------------------------------------------------

/** Unix seconds at signing time. */
export const TIMESTAMP_HEADER = "x-notifiws-timestamp";
/** `v1=<hex hmac-sha256(secret, timestamp + "." + body)>`. */
export const SIGNATURE_HEADER = "x-notifiws-signature";
/** Accepted clock skew for signed ingest requests. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;
