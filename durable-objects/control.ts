/**
 * The control object: the stats of every channel, as the channel objects
 * report them (durable-objects/rollup.ts), so /stats and /metrics read one
 * object and never wake a channel. It keeps each channel's latest counters and
 * its cumulative histograms, and forgets a channel that has had no
 * connections and no events for STATS_RETENTION_SECONDS.
 *
 * One object: channels report at most every STATS_ROLLUP_MS (5 s) while
 * active, so it takes about 5,000 active channels to reach the ~1,000
 * requests/s an object serves (documented in docs/metrics.md).
 */
import { DurableObject } from "cloudflare:workers";
import { Histogram } from "../shared/histogram";
import type { ChannelHistograms, ChannelRollup, ChannelStats } from "../src/channel-contract";
import type { Env } from "../src/env";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rollups (
  channel TEXT PRIMARY KEY,
  stats TEXT NOT NULL,
  users TEXT NOT NULL,
  hist TEXT NOT NULL,
  connections INTEGER NOT NULL,
  active_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rollups_idle ON rollups(connections, active_at);
DROP TABLE IF EXISTS channels;
`;

/** What /stats and /metrics read for one channel. */
export interface StoredChannel {
  stats: ChannelStats;
  users: string[];
  /** Cumulative since the channel was first seen. */
  histograms: ChannelHistograms;
}

export class ControlObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
  }

  async report(r: ChannelRollup): Promise<void> {
    const prev = this.sql
      .exec<{ hist: string; stats: string; active_at: number }>("SELECT hist, stats, active_at FROM rollups WHERE channel = ?", r.stats.channel)
      .toArray()[0];
    const hist = prev ? (JSON.parse(prev.hist) as ChannelHistograms) : undefined;
    const merged = {
      commitToStored: add(hist?.commitToStored, r.histograms.commitToStored),
      batchEvents: add(hist?.batchEvents, r.histograms.batchEvents),
    };
    const prevEvents = prev ? (JSON.parse(prev.stats) as ChannelStats).events : -1;
    const active = r.stats.connections > 0 || r.stats.events !== prevEvents;
    this.sql.exec(
      `INSERT INTO rollups (channel, stats, users, hist, connections, active_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (channel) DO UPDATE SET stats = excluded.stats, users = excluded.users, hist = excluded.hist,
         connections = excluded.connections, active_at = excluded.active_at`,
      r.stats.channel,
      JSON.stringify(r.stats),
      JSON.stringify(r.users),
      JSON.stringify(merged),
      r.stats.connections,
      active ? r.at : (prev?.active_at ?? r.at),
    );
  }

  /** Every channel still worth reporting; idle ones past the retention period are forgotten first. */
  async snapshot(retentionSeconds: number): Promise<StoredChannel[]> {
    this.sql.exec("DELETE FROM rollups WHERE connections = 0 AND active_at < ?", Date.now() - retentionSeconds * 1000);
    return this.sql
      .exec<{ stats: string; users: string; hist: string }>("SELECT stats, users, hist FROM rollups ORDER BY channel")
      .toArray()
      .map((row) => ({ stats: JSON.parse(row.stats), users: JSON.parse(row.users), histograms: JSON.parse(row.hist) }));
  }
}

function add(base: ChannelHistograms[keyof ChannelHistograms] | undefined, delta: ChannelHistograms[keyof ChannelHistograms]) {
  const h = Histogram.from(delta);
  if (base) h.add(base);
  return h.toJSON();
}
