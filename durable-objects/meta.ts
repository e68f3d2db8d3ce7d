/**
 * An object's identity and counters as the `meta` table holds them: the
 * channel it serves, the fan-out identity of a tree object, and the
 * counters row (written by event-store.ts at most every COUNTERS_WRITE_MS).
 */
import type { ChannelStats } from "../src/channel-contract";
import type { CountedSql } from "./sql";

export type Counters = Pick<ChannelStats, "headSeq" | "events" | "duplicates" | "messagesSent" | "sendErrors" | "lastEventAt">;

/** What makes an object a fan-out object of the tree (stored, so it survives eviction). */
export interface FanoutIdentity {
  name: string;
  region: string;
  capacity: number;
}

export interface Meta {
  channel: string | undefined;
  fanout: FanoutIdentity | undefined;
  counters: Counters;
  /** The first seq the history served when the counters were written (1: none written). */
  floor: number;
}

export function readMeta(db: CountedSql): Meta {
  const meta = new Map<string, unknown>();
  for (const row of db.exec<{ k: string; v: SqlStorageValue }>("SELECT k, v FROM meta")) meta.set(row.k, row.v);
  const fanout = typeof meta.get("fanout") === "string" ? (JSON.parse(meta.get("fanout") as string) as FanoutIdentity) : undefined;
  const num = (k: string) => Number(meta.get(k) ?? 0);
  // One row since schema 2 (a row per counter before: five more rows written per batch).
  const packed = typeof meta.get("counters") === "string" ? (JSON.parse(meta.get("counters") as string) as Counters & { floor?: number }) : undefined;
  const { floor, ...counters } = packed ?? {
    headSeq: num("headSeq"),
    events: num("events"),
    duplicates: num("duplicates"),
    messagesSent: num("messagesSent"),
    sendErrors: num("sendErrors"),
    lastEventAt: meta.has("lastEventAt") ? num("lastEventAt") : null,
  };
  return { channel: (meta.get("channel") as string | undefined) ?? undefined, fanout, counters, floor: floor ?? 1 };
}
