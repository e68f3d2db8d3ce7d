/**
 * Error codes the SDK reports on its own. Codes from the server pass through
 * unchanged (HTTP codes of a refused handshake, `error` frame codes; see
 * docs/protocol.md).
 */
export const SdkErrorCode = {
  /** getToken() threw or rejected; retried with backoff. */
  TOKEN_UNAVAILABLE: "TOKEN_UNAVAILABLE",
  /** The WebSocket constructor threw (bad URL, blocked scheme); retried with backoff. */
  CONNECT_FAILED: "CONNECT_FAILED",
  /** onEvent or onReset threw; the event stream continues. */
  HANDLER_FAILED: "HANDLER_FAILED",
  /** The Worker could not be reached (DNS, refused connection, TLS): retried with backoff. */
  UNREACHABLE: "UNREACHABLE",
  /** The Worker answered a handshake with 5xx; retried with backoff. */
  SERVER_ERROR: "SERVER_ERROR",
  /** syncState's load() failed (useSyncedState reports it as `error`); retried with backoff. */
  LOAD_FAILED: "LOAD_FAILED",
  /** The server closed with 4003: the token may not read this channel any more. Permanent. */
  FORBIDDEN: "FORBIDDEN",
} as const;
export type SdkErrorCode = (typeof SdkErrorCode)[keyof typeof SdkErrorCode];
