/**
 * A channel's stats roll-up: the latency histograms gathered since the last
 * report, and when the next report is due. The channel object reports at most
 * every STATS_ROLLUP_MS while something changes, so /stats reads the control
 * object only and never wakes a hibernated channel.
 */
import { COUNT_BUCKETS, Histogram } from "../shared/histogram";
import { MAX_ROLLUP_USERS, type ChannelHistograms, type ChannelRollup } from "../src/channel-contract";
import type { EventStore } from "./event-store";
import type { Sockets } from "./sockets";

export class Rollup {
  commitToStored = new Histogram();
  batchEvents = new Histogram(COUNT_BUCKETS);
  /** Something changed since the last report. */
  dirty = false;
  private lastReportAt = 0;

  /** When the next report is due (now or later), or undefined when nothing changed. */
  dueAt(intervalMs: number): number | undefined {
    return this.dirty ? this.lastReportAt + intervalMs : undefined;
  }

  /** Hands over the histograms for a report and starts new ones. */
  take(now: number): ChannelHistograms {
    const taken = { commitToStored: this.commitToStored.toJSON(), batchEvents: this.batchEvents.toJSON() };
    this.commitToStored = new Histogram();
    this.batchEvents = new Histogram(COUNT_BUCKETS);
    this.dirty = false;
    this.lastReportAt = now;
    return taken;
  }

  /** The report of this object now: counters, connections, and the histograms gathered since the last one. */
  report(store: EventStore, sockets: Sockets, at: number): ChannelRollup {
    const { connections, connectionsByRole, users } = sockets.census();
    const c = store.counters;
    const f = store.fanout;
    return {
      source: f?.name ?? "",
      ...(f ? { region: f.region } : {}),
      stats: {
        channel: store.channel ?? "",
        connections,
        connectionsByRole,
        uniqueUsers: users.size,
        ...c,
        historySize: Math.max(0, c.headSeq - store.oldestSeq() + 1),
      },
      users: [...users].slice(0, MAX_ROLLUP_USERS),
      histograms: { commitToStored: this.commitToStored.toJSON(), batchEvents: this.batchEvents.toJSON() },
      at,
    };
  }

  /** A report that failed: its observations go back, to be sent with the next one. */
  giveBack(h: ChannelHistograms): void {
    this.commitToStored.add(h.commitToStored);
    this.batchEvents.add(h.batchEvents);
    this.dirty = true;
  }
}
