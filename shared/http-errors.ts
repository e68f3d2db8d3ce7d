/**
 * Every HTTP error notifiws answers, in one table: its status and whether
 * sending the same request again can succeed. The Worker's onError, the
 * Durable Objects' own refusals and the relay's reading of the Worker's
 * answers all use it, so an error keeps one shape from where it is raised to
 * where it is acted on (docs/protocol.md, "HTTP errors").
 */
import type { HttpErrorCode } from "./protocol";

/**
 * `later`: the same request may succeed after a wait (capacity, a storage
 * hiccup, an outage); `no`: it cannot until something changes (the request,
 * a credential, the configuration).
 */
export type Retry = "later" | "no";

export const HTTP_ERRORS = {
  BAD_CHANNEL: { status: 400, retry: "no" },
  BAD_SINCE: { status: 400, retry: "no" },
  BAD_FILTER: { status: 400, retry: "no" },
  BAD_SUBPROTOCOL: { status: 400, retry: "no" },
  BAD_JSON: { status: 400, retry: "no" },
  BAD_REQUEST: { status: 400, retry: "no" },
  INVALID_BATCH: { status: 400, retry: "no" },
  INVALID_EVENT: { status: 400, retry: "no" },
  SESSION_TOO_LARGE: { status: 400, retry: "no" },
  TOKEN_MISSING: { status: 401, retry: "no" },
  TOKEN_INVALID: { status: 401, retry: "no" },
  TOKEN_EXPIRED: { status: 401, retry: "no" },
  BAD_SIGNATURE: { status: 401, retry: "no" },
  STALE_TIMESTAMP: { status: 401, retry: "no" },
  KEY_MISSING: { status: 401, retry: "no" },
  KEY_INVALID: { status: 401, retry: "no" },
  UNAUTHORIZED: { status: 401, retry: "no" },
  ORIGIN_NOT_ALLOWED: { status: 403, retry: "no" },
  CHANNEL_FORBIDDEN: { status: 403, retry: "no" },
  KEY_FORBIDDEN_CHANNEL: { status: 403, retry: "no" },
  NOT_FOUND: { status: 404, retry: "no" },
  BATCH_REPLAYED: { status: 409, retry: "no" },
  BATCH_TOO_LARGE: { status: 413, retry: "no" },
  TOO_MANY_EVENTS: { status: 413, retry: "no" },
  EVENT_TOO_LARGE: { status: 413, retry: "no" },
  BODY_TOO_LARGE: { status: 413, retry: "no" },
  UPGRADE_REQUIRED: { status: 426, retry: "no" },
  CONFIG_INVALID: { status: 500, retry: "no" },
  INTERNAL: { status: 500, retry: "later" },
  /** An HTTP error raised by a library with no code of ours; answered with that error's own status. */
  HTTP_ERROR: { status: 500, retry: "no" },
  CHANNEL_UNAVAILABLE: { status: 503, retry: "later" },
  ADMIN_DISABLED: { status: 503, retry: "no" },
  DASHBOARD_DISABLED: { status: 503, retry: "no" },
  DATABASE_UNAVAILABLE: { status: 503, retry: "later" },
  FANOUT_FULL: { status: 503, retry: "later" },
  CHANNEL_FULL: { status: 503, retry: "later" },
  ROWS_DISABLED: { status: 503, retry: "no" },
  CHANNEL_NOT_A_TABLE: { status: 404, retry: "no" },
  TABLE_HAS_NO_KEY: { status: 409, retry: "no" },
  TABLE_TOO_LARGE: { status: 422, retry: "no" },
  ROWS_MISCONFIGURED: { status: 503, retry: "no" },
  PRESENCE_DISABLED: { status: 400, retry: "no" },
  PRESENCE_FORBIDDEN: { status: 403, retry: "no" },
} as const satisfies Record<HttpErrorCode, { status: number; retry: Retry }>;

export type HttpErrorStatus = (typeof HTTP_ERRORS)[HttpErrorCode]["status"];

/** The known entry for a code read off the wire (codes added later are unknown here). */
export function knownError(code: string): { status: number; retry: Retry } | undefined {
  return Object.hasOwn(HTTP_ERRORS, code) ? HTTP_ERRORS[code as HttpErrorCode] : undefined;
}

export const errorBody = (code: HttpErrorCode, message: string, details?: Record<string, unknown>) => ({ error: { ...details, code, message } });

/** The error as a Response, for code outside Hono (the Durable Objects). */
export const errorResponse = (code: HttpErrorCode, message: string, details?: Record<string, unknown>) =>
  Response.json(errorBody(code, message, details), { status: HTTP_ERRORS[code].status });

/** Reads the code of an error Response from notifiws (undefined for any other body). */
export async function errorCodeOf(res: Response): Promise<string | undefined> {
  const body = (await res
    .clone()
    .json()
    .catch(() => undefined)) as { error?: { code?: unknown } } | undefined;
  return typeof body?.error?.code === "string" ? body.error.code : undefined;
}
