/**
 * One signed POST of a batch to the Worker, and what its answer means for
 * the rows behind it. The Worker's error body is parsed with the protocol's
 * schema, never matched as text.
 */
import { createHmac } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { HttpErrorBody, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../shared/protocol";
import { signatureInput, SIGNATURE_VERSION } from "../shared/signing";
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
  const url = new URL(INGEST_PATH, opts.workerUrl);
  const ts = Math.floor(Date.now() / 1000);
  let res: { status: number; ok: boolean };
  let text: string;
  try {
    ({ res, text } = await request(
      url,
      opts.body,
      { [TIMESTAMP_HEADER]: String(ts), [SIGNATURE_HEADER]: signBatch(opts.secret, ts, opts.body) },
      opts.timeoutMs,
    ));
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

/**
 * The relay's signature: the same `v1=` HMAC as shared/signing.ts (which the
 * Worker verifies with WebCrypto), computed with node:crypto, which costs
 * microseconds where WebCrypto's async dispatch cost a third of a
 * millisecond per batch (measured with --cpu-prof at 2,000 events/s).
 */
export function signBatch(secret: string, timestamp: number, body: string): string {
  return `${SIGNATURE_VERSION}${createHmac("sha256", secret).update(signatureInput(timestamp, body)).digest("hex")}`;
}

/** Keep-alive connections to the Worker: one TLS handshake, not one per batch. */
const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/**
 * One POST with node:http(s). fetch() (undici with WHATWG streams) cost
 * about 2 ms of CPU per batch here, the relay's largest cost; this is a
 * fraction of that. Rejects with a TimeoutError after `timeoutMs`.
 */
function request(url: URL, body: string, headers: Record<string, string>, timeoutMs: number): Promise<{ res: { status: number; ok: boolean }; text: string }> {
  const secure = url.protocol === "https:";
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(
      url,
      {
        method: "POST",
        agent: secure ? agents.https : agents.http,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          resolve({ res: { status, ok: status >= 200 && status < 300 }, text: Buffer.concat(chunks).toString("utf8") });
        });
        res.on("error", fail);
      },
    );
    const timer = setTimeout(() => {
      const e = new Error(`no answer within ${timeoutMs} ms`);
      e.name = "TimeoutError";
      req.destroy(e);
    }, timeoutMs);
    function fail(err: Error) {
      clearTimeout(timer);
      reject(err);
    }
    req.on("error", fail);
    req.end(body);
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
