/**
 * One signed POST of a batch to the Worker, and what its answer means for
 * the rows behind it. The Worker's error body is parsed with the protocol's
 * schema, never matched as text.
 */
import { HttpErrorBody, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../shared/protocol";
import { sign } from "../shared/signing";
import { knownError } from "../shared/http-errors";

export const INGEST_PATH = "/internal/events";

export type PostOutcome =
  /** 2xx, or 409 BATCH_REPLAYED (an earlier attempt of this very batch was stored): delete the rows. */
  | { kind: "delivered" }
  /** 503 CHANNEL_UNAVAILABLE naming channels: every other channel of the batch was stored. */
  | { kind: "partial"; failedChannels: string[] }
  /** 413 EVENT_TOO_LARGE: these events can never be accepted; nothing of the batch was applied. */
  | { kind: "event_too_large"; eventIds: string[] }
  /** 413 for the batch as a whole: send fewer events at once. */
  | { kind: "batch_too_large" }
  /**
   * Anything else: retry the same batch after a backoff. `permanent` marks a
   * refusal that retrying alone cannot fix (bad signature, clock skew, a
   * Worker that rejects the batch's shape): it needs an operator.
   */
  | { kind: "retry"; status: number | undefined; code: string; message: string; permanent: boolean; skewSeconds?: number };

/** For answers without a notifiws code: statuses worth retrying as they are (a proxy in front of the Worker is overloaded, or the Worker is down). */
const TRANSIENT = new Set([408, 425, 429, 500, 502, 503, 504]);

export async function postBatch(opts: { workerUrl: string; secret: string; body: string; timeoutMs: number }): Promise<PostOutcome> {
  const url = new URL(INGEST_PATH, opts.workerUrl).toString();
  const ts = Math.floor(Date.now() / 1000);
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", [TIMESTAMP_HEADER]: String(ts), [SIGNATURE_HEADER]: await sign(opts.secret, ts, opts.body) },
      body: opts.body,
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    text = await res.text();
  } catch (err) {
    const e = err as Error;
    return { kind: "retry", status: undefined, code: e.name === "TimeoutError" ? "TIMEOUT" : "NETWORK", message: e.message, permanent: false };
  }
  if (res.ok) return { kind: "delivered" };
  const parsed = HttpErrorBody.safeParse(safeJson(text));
  const error = parsed.success ? parsed.data.error : undefined;
  // A notifiws answer is read by its code (shared/http-errors.ts); only an answer
  // without one (a proxy or load balancer in front of the Worker) by its status.
  const known = error ? knownError(error.code) : undefined;
  const code = error?.code ?? `HTTP_${res.status}`;
  const message = error?.message ?? text.slice(0, 300);
  switch (error?.code) {
    case "BATCH_REPLAYED":
      return { kind: "delivered" };
    case "EVENT_TOO_LARGE":
      return error.eventIds?.length ? { kind: "event_too_large", eventIds: error.eventIds } : { kind: "batch_too_large" };
    case "BATCH_TOO_LARGE":
    case "TOO_MANY_EVENTS":
    case "BODY_TOO_LARGE":
      return { kind: "batch_too_large" };
    case "CHANNEL_UNAVAILABLE":
      if (error.failedChannels?.length) return { kind: "partial", failedChannels: error.failedChannels };
  }
  if (!known && res.status === 413) return { kind: "batch_too_large" };
  const skewSeconds = code === "STALE_TIMESTAMP" && error?.serverTime !== undefined ? error.serverTime - ts : undefined;
  const permanent = known ? known.retry === "no" : !TRANSIENT.has(res.status);
  return { kind: "retry", status: res.status, code, message, permanent, ...(skewSeconds !== undefined ? { skewSeconds } : {}) };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
