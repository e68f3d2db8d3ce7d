/**
 * A channel object's stats: the counters and connections of the moment, and
 * the latency histograms gathered since the last report. The object reports
 * them to the stats store (stats-store.ts) at most every STATS_ROLLUP_MS while
 * something changes, by its alarm when the change falls between two reports,
 * so /stats reads the stats store only and never wakes a hibernated channel.
 */
import { COUNT_BUCKETS, Histogram } from "../shared/histogram";
import { errorFields, log } from "../shared/log";
import { MAX_ROLLUP_USERS, STATS_STORE, type ChannelHistograms, type ChannelRollup, type ChannelStats } from "../src/channel-contract";
import type { ChannelParts } from "./parts";

const sqlUsage = (u: { rowsRead: number; rowsWritten: number }) => ({ sqlRowsRead: u.rowsRead, sqlRowsWritten: u.rowsWritten });

export class Rollup {
  commitToStored = new Histogram();
  batchEvents = new Histogram(COUNT_BUCKETS);
  /** Something changed since the last report. */
  dirty = false;
  private lastReportAt = 0;

  constructor(private readonly host: ChannelParts) {}

  /** When the next report is due (now or later), or undefined when nothing changed. */
  dueAt(): number | undefined {
    return this.dirty ? this.lastReportAt + this.host.config().STATS_ROLLUP_MS : undefined;
  }

  /** Something changed: report now if the last report is old enough, else make sure the alarm will. */
  noteChange(): void {
    this.dirty = true;
    const due = this.dueAt()!;
    if (due <= Date.now()) void this.report();
    else void this.host.armAlarm(due).catch((err) => log("warn", "could not arm the stats alarm", { ...this.host.where(), ...errorFields(err) }));
  }

  /** Sends the report to the stats store; a failed report is folded into the next one. */
  async report(): Promise<void> {
    if (!this.host.store.channel) return;
    // Counters written while ingesting are at most COUNTERS_WRITE_MS old; sends since then are written here.
    this.host.store.persistCounters();
    const r = this.build(Date.now());
    this.commitToStored = new Histogram();
    this.batchEvents = new Histogram(COUNT_BUCKETS);
    this.dirty = false;
    this.lastReportAt = r.at;
    try {
      await this.host.env.STATS.get(this.host.env.STATS.idFromName(STATS_STORE)).report(r);
    } catch (err) {
      this.giveBack(r.histograms);
      log("warn", "stats report failed; will retry", { ...this.host.where(), ...errorFields(err) });
    }
  }

  /** The object's stats as it would report them now. */
  now(): ChannelStats {
    return this.build(Date.now()).stats;
  }

  private build(at: number): ChannelRollup {
    const { store, sockets } = this.host;
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
        rowsLoads: this.host.rows.loads,
        rowsReads: this.host.rows.reads,
        ...sqlUsage(this.host.store.usage()),
        objectRequests: this.host.meter.requests,
        wsMessagesIn: this.host.meter.wsMessagesIn,
        alarmsSet: this.host.meter.alarmsSet,
      },
      users: [...users].slice(0, MAX_ROLLUP_USERS),
      histograms: { commitToStored: this.commitToStored.toJSON(), batchEvents: this.batchEvents.toJSON() },
      at,
    };
  }

  /** A report that failed: its observations go back, to be sent with the next one. */
  private giveBack(h: ChannelHistograms): void {
    this.commitToStored.add(h.commitToStored);
    this.batchEvents.add(h.batchEvents);
    this.dirty = true;
  }
}
