/**
 * `notifiws/server`: for app backends (Node 20+, Workers, Deno). Mint client
 * tokens with channel claims, and publish events from code that is not
 * Postgres through the publish API.
 */
import { fullJitter } from "../shared/backoff";
import { stringifyExact } from "../shared/exact-json";

export { mintToken, type MintTokenOptions } from "../shared/token";

export interface PublisherOptions {
  /** Base URL of the notifiws Worker. */
  url: string;
  /** A publish API key (its SHA-256 is in the Worker's PUBLISH_KEY_HASHES). */
  key: string;
  /** Timeout of one attempt, ms. Default 10000. */
  timeoutMs?: number;
  /** Attempts in all for a network error, a timeout, 429 or 5xx. Default 5. */
  attempts?: number;
  /** Backoff base and cap between attempts (full jitter), ms. Defaults 200 and 5000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  fetch?: typeof fetch;
}

export interface PublishInput {
  /** Idempotency key: the same id is delivered once (a UUID is generated when absent, and reused across retries). */
  id?: string;
  /** Any JSON value per key; a bigint is sent as an exact JSON number. */
  data: Record<string, unknown>;
  table?: string;
}

export interface PublishResult {
  id: string;
  /** This id was already published (a retry of an earlier success). */
  duplicate: boolean;
  /** The channel's seq after this publish. */
  headSeq: number;
}

/** A refusal: `code` is the Worker's error code (KEY_INVALID, KEY_FORBIDDEN_CHANNEL, EVENT_TOO_LARGE…) or NETWORK/TIMEOUT. */
export class PublishError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "PublishError";
  }
}

const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

export function createPublisher(options: PublisherOptions) {
  if (!options.url || !options.key) throw new TypeError("createPublisher needs url and key");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const attempts = Math.max(1, options.attempts ?? 5);
  return {
    /** Publishes one event to `channel`; retries what is worth retrying with the same id, so it is delivered once. */
    async publish(channel: string, input: PublishInput): Promise<PublishResult> {
      // bigint values go out as exact JSON numbers; the Worker keeps every number's digits (docs/protocol.md, "Values").
      const body = stringifyExact({ ...input, id: input.id ?? crypto.randomUUID() });
      const url = new URL(`/api/channels/${encodeURIComponent(channel)}/publish`, options.url).toString();
      let last: PublishError = new PublishError("NETWORK", "not sent");
      for (let attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0) await new Promise((r) => setTimeout(r, fullJitter(attempt, options.backoffBaseMs ?? 200, options.backoffMaxMs ?? 5000)));
        try {
          const res = await doFetch(url, {
            method: "POST",
            headers: { authorization: `Bearer ${options.key}`, "content-type": "application/json" },
            body,
            signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
          });
          const json = (await res.json().catch(() => ({}))) as PublishResult & { error?: { code?: string; message?: string } };
          if (res.ok) return { id: json.id, duplicate: json.duplicate, headSeq: json.headSeq };
          last = new PublishError(json.error?.code ?? `HTTP_${res.status}`, json.error?.message ?? res.statusText, res.status);
          if (!RETRYABLE.has(res.status)) throw last;
        } catch (err) {
          if (err instanceof PublishError && err.status !== undefined && !RETRYABLE.has(err.status)) throw err;
          if (!(err instanceof PublishError)) {
            const e = err as Error;
            last = new PublishError(e.name === "TimeoutError" ? "TIMEOUT" : "NETWORK", e.message);
          }
        }
      }
      throw last;
    },
  };
}
