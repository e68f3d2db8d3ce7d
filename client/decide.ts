/**
 * Every close and reconnect decision of a subscription, as pure functions
 * (table-tested in test/node/sdk-decide.test.ts).
 */
import { CloseCode } from "../shared/wire";
import type { Answer } from "./ask-why";
import { SdkErrorCode } from "./errors";

export type CloseDecision =
  /** The user closed the subscription, or the server refused it for good. */
  | { action: "stop"; permanent?: { code: string; message: string } }
  /** Closed before `welcome`: browsers hide the handshake status, so ask over plain HTTP why. */
  | { action: "diagnose" }
  /** The token expired: reconnect at once with a fresh one. */
  | { action: "reconnect-now" }
  /** Anything else (network loss, deploys, 1011): reconnect after a jittered backoff, resuming from the last seq. */
  | { action: "backoff" };

export function afterClose(e: { code: number; reason: string; welcomed: boolean; closedByUser: boolean }): CloseDecision {
  if (e.closedByUser) return { action: "stop" };
  if (e.code === CloseCode.FORBIDDEN) return { action: "stop", permanent: { code: "FORBIDDEN", message: e.reason || "refused" } };
  if (!e.welcomed) return { action: "diagnose" };
  if (e.code === CloseCode.TOKEN_EXPIRED) return { action: "reconnect-now" };
  return { action: "backoff" };
}

/**
 * What a refused handshake means. 401 with a token source that can mint a new
 * token is worth one more try; 400/401/403 otherwise are permanent; anything
 * else (5xx, a network error) is retried.
 */
export function afterRefusal(e: { status: number | undefined; canRefreshToken: boolean; refusalsBefore: number }): "stop" | "retry" {
  if (e.status === 401) return e.canRefreshToken && e.refusalsBefore < 1 ? "retry" : "stop";
  if (e.status === 400 || e.status === 403) return "stop";
  return "retry";
}

/**
 * What a refused rows load (GET /v1/channels/:channel/rows) means: 401 with a
 * token source that can mint a new token is worth one more try; 503
 * ROWS_DISABLED and ROWS_MISCONFIGURED wait for a configuration change, as do the other 4xx (a
 * channel that is not a table, one over the cap); other 5xx are retried.
 */
export function afterLoadRefusal(e: { status: number; code: string; canRefreshToken: boolean; refusalsBefore: number }): "stop" | "retry" {
  if (e.status === 401) return e.canRefreshToken && e.refusalsBefore < 1 ? "retry" : "stop";
  if (e.code === "ROWS_DISABLED" || e.code === "ROWS_MISCONFIGURED") return "stop";
  if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) return "stop";
  return "retry";
}

/**
 * What the answer to "why did the handshake fail?" (ask-why.ts) means: the
 * error to report, if any, and what to do. Unreachable or not refused: back
 * off and retry; 5xx: report and retry; a refusal: afterRefusal decides.
 */
export function afterDiagnosis(
  why: Answer,
  e: { base: string; canRefreshToken: boolean; refusalsBefore: number },
): { error?: { status?: number; code: string; message: string; permanent: boolean }; action: "stop" | "backoff"; refused: boolean } {
  if (why.kind === "unreachable")
    return {
      error: { code: SdkErrorCode.UNREACHABLE, message: `could not reach ${e.base}: ${why.message}`, permanent: false },
      action: "backoff",
      refused: false,
    };
  if (why.kind !== "answered" || why.status < 400) return { action: "backoff", refused: false };
  const { status } = why;
  if (status >= 500)
    return {
      error: { status, code: why.code ?? SdkErrorCode.SERVER_ERROR, message: why.message ?? `HTTP ${status}`, permanent: false },
      action: "backoff",
      refused: false,
    };
  const verdict = afterRefusal({ status, canRefreshToken: e.canRefreshToken, refusalsBefore: e.refusalsBefore });
  return {
    error: { status, code: why.code ?? `HTTP_${status}`, message: why.message ?? "refused", permanent: verdict === "stop" },
    action: verdict === "stop" ? "stop" : "backoff",
    refused: true,
  };
}
