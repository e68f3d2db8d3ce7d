/**
 * Hands events to their channels' objects, grouped by channel in arrival
 * order. Succeeds only when every object stored its events.
 */
import type { Env } from "./env";
import type { ChangeEvent, IngestResult } from "./protocol";
import { errorFields, log } from "./log";

export class DeliveryError extends Error {
  constructor(readonly failedChannels: string[]) {
    super(`channel objects unavailable: ${failedChannels.join(", ")}`);
  }
}

export async function deliver(env: Env, events: ChangeEvent[]): Promise<Omit<IngestResult, "batchId">> {
  const groups = new Map<string, ChangeEvent[]>();
  for (const ev of events) {
    const g = groups.get(ev.channel);
    if (g) g.push(ev);
    else groups.set(ev.channel, [ev]);
  }
  const entries = [...groups];
  const results = await Promise.allSettled(
    entries.map(([channel, evs]) => env.CHANNEL.get(env.CHANNEL.idFromName(channel)).ingest(channel, evs)),
  );
  const failed: string[] = [];
  const channels: IngestResult["channels"] = {};
  let accepted = 0;
  let duplicates = 0;
  results.forEach((r, i) => {
    const channel = entries[i]![0];
    if (r.status === "fulfilled") {
      accepted += r.value.accepted;
      duplicates += r.value.duplicates;
      channels[channel] = { headSeq: r.value.headSeq };
    } else {
      failed.push(channel);
      log("error", "channel ingest failed", { channel, ...errorFields(r.reason) });
    }
  });
  if (failed.length > 0) throw new DeliveryError(failed);
  return { accepted, duplicates, channels };
}
