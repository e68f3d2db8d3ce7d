/**
 * The stats store: one Durable Object holding the stats of every channel, as
 * the channel objects report them (durable-objects/rollup.ts), so /stats and
 * /metrics read one object and never wake a channel. It keeps each channel's latest counters and
 * its cumulative histograms, and forgets a channel that has had no
 * connections and no events for STATS_RETENTION_SECONDS.
 *
 * One object: channels report at most every STATS_ROLLUP_MS (5 s) while
 * active, so it takes about 5,000 active channels to reach the ~1,000
 * requests/s an object serves (documented in docs/metrics.md).
 */
import { DurableObject } from "cloudflare:workers";
import { Histogram } from "../shared/histogram";
import { applySchema } from "./schema";
import type { ChannelHistograms, ChannelRecord, ChannelRollup, ChannelStats, Env } from "../src/channel-contract";

/** Schema steps (durable-objects/schema.ts): append, never edit. */
const SCHEMA_STEPS = [
  // 1: per-object roll-ups; drops the tables of the first stats design.
  `DROP TABLE IF EXISTS rollups;
   DROP TABLE IF EXISTS channels;
   CREATE TABLE IF NOT EXISTS channel_rollups (
     channel TEXT NOT NULL,
     -- "" for the channel's ordering object, a fan-out object's name otherwise
     source TEXT NOT NULL,
     region TEXT,
     stats TEXT NOT NULL,
     users TEXT NOT NULL,
     hist TEXT NOT NULL,
     connections INTEGER NOT NULL,
     active_at INTEGER NOT NULL,
     PRIMARY KEY (channel, source)
   );
   CREATE INDEX IF NOT EXISTS channel_rollups_idle ON channel_rollups(connections, active_at);`,
];

export class StatsObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applySchema(this.sql, SCHEMA_STEPS);
  }

  async report(r: ChannelRollup): Promise<void> {
    const prev = this.sql
      .exec<{ hist: string; stats: string; active_at: number }>(
        "SELECT hist, stats, active_at FROM channel_rollups WHERE channel = ? AND source = ?",
        r.stats.channel,
        r.source,
      )
      .toArray()[0];
    const hist = prev ? (JSON.parse(prev.hist) as ChannelHistograms) : undefined;
    const merged = {
      commitToStored: add(hist?.commitToStored, r.histograms.commitToStored),
      batchEvents: add(hist?.batchEvents, r.histograms.batchEvents),
    };
    const prevEvents = prev ? (JSON.parse(prev.stats) as ChannelStats).events : -1;
    const active = r.stats.connections > 0 || r.stats.events !== prevEvents;
    this.sql.exec(
      `INSERT INTO channel_rollups (channel, source, region, stats, users, hist, connections, active_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (channel, source) DO UPDATE SET stats = excluded.stats, users = excluded.users, hist = excluded.hist,
         connections = excluded.connections, active_at = excluded.active_at`,
      r.stats.channel,
      r.source,
      r.region ?? null,
      JSON.stringify(r.stats),
      JSON.stringify(r.users),
      JSON.stringify(merged),
      r.stats.connections,
      active ? r.at : (prev?.active_at ?? r.at),
    );
  }

  /** Every channel still worth reporting; idle ones past the retention period are forgotten first. */
  async snapshot(retentionSeconds: number): Promise<ChannelRecord[]> {
    this.sql.exec("DELETE FROM channel_rollups WHERE connections = 0 AND active_at < ?", Date.now() - retentionSeconds * 1000);
    return this.sql
      .exec<{ source: string; region: string | null; stats: string; users: string; hist: string }>(
        "SELECT source, region, stats, users, hist FROM channel_rollups ORDER BY channel, source",
      )
      .toArray()
      .map((row) => ({
        source: row.source,
        ...(row.region !== null ? { region: row.region } : {}),
        stats: JSON.parse(row.stats),
        users: JSON.parse(row.users),
        histograms: JSON.parse(row.hist),
      }));
  }
}

function add(base: ChannelHistograms[keyof ChannelHistograms] | undefined, delta: ChannelHistograms[keyof ChannelHistograms]) {
  const h = Histogram.from(delta);
  if (base) h.add(base);
  return h.toJSON();
}
