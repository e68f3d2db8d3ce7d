/**
 * Gap markers: when Postgres invalidated the replication slot, the changes
 * it dropped are gone, so every watched channel must tell its clients to
 * reload (`reset`, reason "source_gap") rather than continue with a hole.
 * capture.ts records the channels in notifiws.pending_gaps before it
 * recreates the slot; this sends them to the Worker as ingest batches that
 * carry gaps and no events (IngestBatch in shared/protocol.ts), and deletes
 * each once stored, before any event from the new slot is sent.
 */
import type pg from "pg";
import { fullJitter } from "../shared/backoff";
import { log } from "../shared/log";
import { sendBatch, type SendHost } from "./send";

/** Channels per batch (well under the Worker's INGEST_MAX_EVENTS cap, which bounds gaps too). */
const GAPS_PER_BATCH = 500;

export async function sendPendingGaps(host: SendHost, client: pg.Client): Promise<void> {
  for (let attempt = 0; !host.stopping();) {
    const { rows } = await client.query<{ channel: string; gap_id: string }>(
      "SELECT channel, gap_id::text FROM notifiws.pending_gaps ORDER BY gap_id, channel LIMIT $1",
      [GAPS_PER_BATCH],
    );
    if (rows.length === 0) return;
    const batchId = rows[0]!.gap_id;
    const channels = rows.filter((r) => r.gap_id === batchId).map((r) => r.channel);
    const outcome = await sendBatch(host, batchId, JSON.stringify({ batchId, events: [], gaps: channels }), channels.length);
    if (outcome.kind === "stopped") return;
    const failed = outcome.kind === "partial" ? new Set(outcome.failedChannels) : new Set<string>();
    if (outcome.kind !== "delivered" && outcome.kind !== "partial") {
      // A batch of channel names cannot be too large for the Worker's caps; anything else is retried.
      log("error", "the Worker refused gap markers; retrying", { outcome: outcome.kind, channels: channels.length });
      channels.forEach((c) => failed.add(c));
    }
    const done = channels.filter((c) => !failed.has(c));
    if (done.length > 0) {
      await client.query("DELETE FROM notifiws.pending_gaps WHERE gap_id = $1::uuid AND channel = ANY($2::text[])", [batchId, done]);
      log("warn", "channels reset after the replication slot lost changes: their clients reload", { channels: done.length, gapId: batchId });
    }
    if (failed.size > 0) await host.sleep(fullJitter(++attempt, host.config.RELAY_BACKOFF_BASE_MS, host.config.RELAY_BACKOFF_MAX_MS));
  }
}
