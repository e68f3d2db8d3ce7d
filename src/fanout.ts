/**
 * Where a connection lands when its channel uses the fan-out tree
 * (FANOUT_CHANNELS): a fan-out object in the client's region (from the
 * request's `cf` data, created there with a location hint), the first one of
 * that region with room. Pure rules here; the route does the calls.
 */
import { channelAllowed } from "../shared/channels";

/** Cloudflare continent codes → Durable Object location hints. */
const HINTS: Record<string, DurableObjectLocationHint> = {
  NA: "enam",
  SA: "sam",
  EU: "weur",
  AF: "afr",
  AS: "apac",
  OC: "oc",
  AN: "oc",
};

export interface Placement {
  region: string;
  hint: DurableObjectLocationHint | undefined;
}

/** The region of a request: its continent, or "local" without `cf` data (wrangler dev, tests). */
export function placement(cf: { continent?: unknown } | undefined): Placement {
  const continent = typeof cf?.continent === "string" ? cf.continent : undefined;
  if (!continent || !HINTS[continent]) return { region: "local", hint: undefined };
  return { region: continent.toLowerCase(), hint: HINTS[continent] };
}

export function usesFanout(channel: string, patterns: readonly string[]): boolean {
  return patterns.length > 0 && channelAllowed(channel, patterns, undefined);
}

/** The name of the index-th fan-out object of a channel in a region. */
export const fanoutName = (channel: string, region: string, index: number) => `${channel}|fanout|${region}|${index}`;

/** Most objects a connection tries in one region before giving up (32 × capacity sockets). */
export const MAX_FANOUT_OBJECTS = 32;

/**
 * The first object that may have room, per channel and region, learned from
 * FANOUT_FULL answers in this isolate, so a connect storm does not knock on
 * every full object first.
 */
const firstFree = new Map<string, number>();
export const firstCandidate = (channel: string, region: string) => firstFree.get(`${channel}|${region}`) ?? 0;
export function markFull(channel: string, region: string, index: number): void {
  const key = `${channel}|${region}`;
  if ((firstFree.get(key) ?? 0) <= index) firstFree.set(key, index + 1);
}
