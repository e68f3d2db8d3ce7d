/**
 * Sending one batch until the Worker gives an answer about its events, for
 * both sources (the outbox drain and the WAL stream). Everything that is not
 * an answer about the events (network errors, timeouts, 5xx, refusals that
 * need an operator) is retried with full-jitter backoff; the same batch id is
 * reused, so a retry of a batch the Worker stored but whose answer was lost
 * comes back 409 BATCH_REPLAYED, which counts as delivered.
 */
import { log } from "../shared/log";
import { fullJitter } from "../shared/backoff";
import type { RelayConfig } from "./config";
import type { RelayMetrics } from "./metrics";
import { postBatch, type PostOutcome } from "./post";

export interface SendHost {
  config: RelayConfig;
  metrics: RelayMetrics;
  /** A graceful stop began: finish the batch in flight, start nothing new. */
  stopping: () => boolean;
  /** A sleep that a stop cuts short. */
  sleep: (ms: number) => Promise<void>;
}

export type SendOutcome = Exclude<PostOutcome, { kind: "retry" }> | { kind: "stopped" };

export async function sendBatch(host: SendHost, batchId: string, body: string, count: number): Promise<SendOutcome> {
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) {
      host.metrics.retries++;
      await host.sleep(fullJitter(attempt, host.config.RELAY_BACKOFF_BASE_MS, host.config.RELAY_BACKOFF_MAX_MS));
    }
    if (host.stopping() && attempt > 0) return { kind: "stopped" };
    if (!host.metrics.leader) return { kind: "stopped" };
    const started = performance.now();
    const outcome = await postBatch({
      workerUrl: host.config.WORKER_URL,
      secret: host.config.INGEST_SECRET,
      body,
      timeoutMs: host.config.RELAY_POST_TIMEOUT_MS,
    });
    host.metrics.recordPost(performance.now() - started);
    if (outcome.kind === "delivered") return outcome;
    host.metrics.failures++;
    if (outcome.kind !== "retry") return outcome;
    host.metrics.recordRefusal(outcome.status, outcome.code);
    const fields = {
      batchId,
      events: count,
      attempt,
      status: outcome.status,
      code: outcome.code,
      reason: outcome.message,
      ...(outcome.skewSeconds !== undefined ? { clockSkewSeconds: outcome.skewSeconds } : {}),
    };
    if (outcome.permanent) log("error", "worker refused the batch; retrying will not help until the cause is fixed", fields);
    else log("warn", "POST to worker failed; retrying", fields);
  }
}
