/**
 * Hands events to their channels' objects, grouped by channel in arrival
 * order. Succeeds only when every object stored its events.
 */
import type { Env } from "./env";
import type { ChangeEvent, IngestResult } from "../shared/protocol";
import { errorFields, log } from "../shared/log";
import { storedJsonBytes } from "../shared/limits";
import type { IngestEvent } from "./channel-contract";

/**
 * Some channels' objects did not store their events. Each object stores its
 * part atomically, so `stored` channels are done and only `failedChannels`
 * need to be sent again.
 */
export class DeliveryError extends Error {
  constructor(
    readonly failedChannels: string[],
    readonly stored: IngestResult["channels"],
  ) {
    super(`channel objects unavailable: ${failedChannels.join(", ")}`);
  }
}

export class ReplayError extends Error {}

/** Serializes a validated event once; its size and text go on to the object as they are (`keyed`: IngestEvent). */
export function serializeEvent(event: ChangeEvent, keyed = false): IngestEvent & { storedBytes: number } {
  const json = JSON.stringify(event);
  return { id: event.id, channel: event.channel, committedAt: event.committedAt, json, storedBytes: storedJsonBytes(json), ...(keyed ? { keyed } : {}) };
}

/**
 * `batchId` enables replay protection: when every channel object reports it
 * already applied this batch, ReplayError is thrown (nothing was done).
 */
export async function deliver(env: Env, serialized: IngestEvent[], batchId?: string, gaps: readonly string[] = []): Promise<Omit<IngestResult, "batchId">> {
  const groups = new Map<string, IngestEvent[]>();
  // A channel with a gap gets its marker ahead of its events, in the same object call.
  for (const channel of gaps) groups.set(channel, []);
  // Only what the contract names crosses to the object.
  const events = serialized.map(({ id, channel, committedAt, json, keyed }) => ({ id, channel, committedAt, json, ...(keyed ? { keyed } : {}) }));
  for (const ev of events) {
    const g = groups.get(ev.channel);
    if (g) g.push(ev);
    else groups.set(ev.channel, [ev]);
  }
  const entries = [...groups];
  const gapped = new Set(gaps);
  const results = await Promise.allSettled(
    entries.map(([channel, evs]) => env.CHANNEL.get(env.CHANNEL.idFromName(channel)).ingest(channel, evs, batchId, gapped.has(channel))),
  );
  const failed: string[] = [];
  const channels: IngestResult["channels"] = {};
  let accepted = 0;
  let duplicates = 0;
  let replays = 0;
  results.forEach((r, i) => {
    const channel = entries[i]![0];
    if (r.status === "fulfilled") {
      if (r.value.replayed) replays++;
      accepted += r.value.accepted;
      duplicates += r.value.duplicates;
      channels[channel] = { headSeq: r.value.headSeq };
    } else {
      failed.push(channel);
      log("error", "channel ingest failed", { channel, ...errorFields(r.reason) });
    }
  });
  if (failed.length > 0) throw new DeliveryError(failed, channels);
  if (replays === entries.length) throw new ReplayError(`batch ${batchId} was already applied`);
  return { accepted, duplicates, channels };
}
