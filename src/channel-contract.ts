/**
 * The contract between the Worker's routes and the channel Durable Object:
 * what a connection carries into the object, and what the object reports.
 * Both sides import it; neither imports the other.
 */
import { z } from "zod";
import { ChannelName, Filter } from "../shared/protocol";
import type { HistogramData } from "../shared/histogram";

/** What the Worker forwards after it has authenticated and authorized a connection. */
export const SessionInit = z.object({
  channel: ChannelName,
  sub: z.string(),
  role: z.string().optional(),
  exp: z.number().int(),
  filter: Filter.optional(),
  since: z.number().int().nonnegative().optional(),
  echoProtocol: z.string().optional(),
  /** Set when the channel uses the fan-out tree: this connection lands on a fan-out object. */
  fanout: z
    .object({
      /** This fan-out object's name (idFromName). */
      name: z.string(),
      region: z.string(),
      /** Sockets this object takes before it answers FANOUT_FULL. */
      capacity: z.number().int().positive(),
    })
    .optional(),
});
export type SessionInit = z.infer<typeof SessionInit>;
export const SESSION_HEADER = "x-notifiws-session";

export interface ChannelStats {
  channel: string;
  connections: number;
  /** Open connections by the token's `role` claim ("none" without one). */
  connectionsByRole: Record<string, number>;
  /** Distinct token subjects among the open connections. */
  uniqueUsers: number;
  headSeq: number;
  events: number;
  duplicates: number;
  messagesSent: number;
  sendErrors: number;
  lastEventAt: number | null;
  historySize: number;
}

/** A range of a channel's stored events, from the ordering object to a fan-out object. */
export interface EventRange {
  /** Envelopes as stored (JSON text), in seq order. */
  bodies: string[];
  seqs: number[];
  headSeq: number;
  /** Oldest retained seq (headSeq + 1 when the history is empty). */
  oldestSeq: number;
}

/**
 * One event on its way from the Worker to its channel's object: serialized
 * once by the Worker (exactly: numbers kept as written stay so), with the
 * fields the object needs without parsing it.
 */
export interface IngestEvent {
  id: string;
  channel: string;
  committedAt: number;
  /** The ChangeEvent as JSON text. */
  json: string;
}

export interface IngestOutcome {
  accepted: number;
  duplicates: number;
  headSeq: number;
  /** This object already applied a batch with this id (nothing was done). */
  replayed: boolean;
}

/**
 * Per-channel histograms. (No in-object duration histograms: inside a Durable
 * Object the clock advances only across I/O, so the synchronous store and
 * fan-out would always measure zero. The relay's POST latency is the ingest
 * round trip.)
 */
export interface ChannelHistograms {
  /** Commit in Postgres (or publish) to stored in the channel object, per event, seconds. */
  commitToStored: HistogramData;
  /** Events per stored batch (each batch is one fan-out to every socket). */
  batchEvents: HistogramData;
}

/**
 * What a channel object reports to the control object, at most every
 * STATS_ROLLUP_MS while it is active, so /stats and /metrics never wake a
 * channel. Histograms are the observations since the previous report.
 */
export interface ChannelRollup {
  stats: ChannelStats;
  /** "" for the channel's ordering object; the fan-out object's name otherwise. */
  source: string;
  /** A fan-out object's region. */
  region?: string;
  /** Distinct subjects (at most MAX_ROLLUP_USERS), for unique users across channels. */
  users: string[];
  histograms: ChannelHistograms;
  at: number;
}

/** Subjects reported per channel; beyond it uniqueUsers in the totals is a lower bound. */
export const MAX_ROLLUP_USERS = 1000;
