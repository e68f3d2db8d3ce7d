/**
 * /stats and /metrics from the channels' roll-ups (the stats store), with
 * bounded label cardinality: the busiest METRICS_TOP_CHANNELS channels by
 * events are labelled by name, every other channel is folded into
 * channel="_other". Pure functions, table-tested in test/node/metrics.test.ts.
 */
import { Histogram, renderHistogram, type HistogramData } from "../shared/histogram";
import type { ChannelHistograms, ChannelRecord, ChannelStats } from "./channel-contract";

export const OTHER_CHANNELS = "_other";

/** The billed counters, summed over a channel's objects and over channels (docs/benchmarks.md, "Cost"). */
const BILLED = ["sqlRowsRead", "sqlRowsWritten", "objectRequests", "wsMessagesIn", "alarmsSet"] as const;

/** A channel's object (ordering or fan-out) and its connections. */
export interface ObjectConnections {
  object: string;
  region: string;
  connections: number;
}

/**
 * One entry per channel, whatever the number of objects behind it: sockets,
 * roles, users, sends and SQLite rows add up over the fan-out objects; events, seqs and
 * history come from the ordering object (source ""), the one that numbers them.
 */
export function mergeChannels(entries: readonly ChannelRecord[]): (ChannelRecord & { objects: ObjectConnections[] })[] {
  const by = new Map<string, ChannelRecord[]>();
  for (const e of entries) {
    const list = by.get(e.stats.channel);
    if (list) list.push(e);
    else by.set(e.stats.channel, [e]);
  }
  return [...by.values()].map((parts) => {
    const order = parts.find((p) => !p.source) ?? parts[0]!;
    const users = new Set<string>();
    const roles: Record<string, number> = {};
    let connections = 0;
    let messagesSent = 0;
    let sendErrors = 0;
    const billed = { sqlRowsRead: 0, sqlRowsWritten: 0, objectRequests: 0, wsMessagesIn: 0, alarmsSet: 0 };
    const commit = Histogram.from(order.histograms.commitToStored);
    const batch = Histogram.from(order.histograms.batchEvents);
    for (const p of parts) {
      connections += p.stats.connections;
      messagesSent += p.stats.messagesSent;
      sendErrors += p.stats.sendErrors;
      // Every object's work is billed: fan-out objects keep copies of the events and hold sockets.
      for (const k of BILLED) billed[k] += p.stats[k] ?? 0;
      for (const [r, n] of Object.entries(p.stats.connectionsByRole)) roles[r] = (roles[r] ?? 0) + n;
      for (const u of p.users) users.add(u);
    }
    return {
      source: "",
      stats: { ...order.stats, connections, connectionsByRole: roles, uniqueUsers: users.size, messagesSent, sendErrors, ...billed },
      users: [...users],
      histograms: { commitToStored: commit.toJSON(), batchEvents: batch.toJSON() },
      objects: parts.map((p) => ({ object: p.source || "(ordering)", region: p.region ?? "", connections: p.stats.connections })),
    };
  });
}

export interface StatsReport {
  /** Per channel; `objects` lists the channel's objects when it uses the fan-out tree. */
  channels: (ChannelStats & { objects?: ObjectConnections[] })[];
  totals: {
    channels: number;
    connections: number;
    connectionsByRole: Record<string, number>;
    /** Distinct subjects across all channels (each channel reports at most 1,000). */
    uniqueUsers: number;
    events: number;
    duplicates: number;
    messagesSent: number;
    sendErrors: number;
    rowsLoads: number;
    rowsReads: number;
    sqlRowsRead: number;
    sqlRowsWritten: number;
    objectRequests: number;
    wsMessagesIn: number;
    alarmsSet: number;
    lastEventAt: number | null;
  };
}

export function statsReport(raw: readonly ChannelRecord[]): StatsReport {
  const entries = mergeChannels(raw);
  const totals: StatsReport["totals"] = {
    channels: entries.length,
    connections: 0,
    connectionsByRole: {},
    uniqueUsers: 0,
    events: 0,
    duplicates: 0,
    messagesSent: 0,
    sendErrors: 0,
    rowsLoads: 0,
    rowsReads: 0,
    sqlRowsRead: 0,
    sqlRowsWritten: 0,
    objectRequests: 0,
    wsMessagesIn: 0,
    alarmsSet: 0,
    lastEventAt: null,
  };
  const users = new Set<string>();
  for (const { stats: s, users: u } of entries) {
    totals.connections += s.connections;
    totals.events += s.events;
    totals.duplicates += s.duplicates;
    totals.messagesSent += s.messagesSent;
    totals.sendErrors += s.sendErrors;
    totals.rowsLoads += s.rowsLoads;
    totals.rowsReads += s.rowsReads;
    for (const k of BILLED) totals[k] += s[k] ?? 0;
    for (const [role, n] of Object.entries(s.connectionsByRole)) totals.connectionsByRole[role] = (totals.connectionsByRole[role] ?? 0) + n;
    for (const x of u) users.add(x);
    if (s.lastEventAt !== null && (totals.lastEventAt === null || s.lastEventAt > totals.lastEventAt)) totals.lastEventAt = s.lastEventAt;
  }
  totals.uniqueUsers = users.size;
  return { channels: entries.map((e) => (e.objects.length > 1 ? { ...e.stats, objects: e.objects } : e.stats)), totals };
}

/** The label each channel gets: its name for the `top` busiest by events (ties by name), else `_other`. */
export function channelLabels(stats: readonly Pick<ChannelStats, "channel" | "events">[], top: number): Map<string, string> {
  const ranked = [...stats].sort((a, b) => b.events - a.events || a.channel.localeCompare(b.channel));
  return new Map(ranked.map((s, i) => [s.channel, i < top ? s.channel : OTHER_CHANNELS]));
}

/** Prometheus text exposition format 0.0.4. */
export function renderMetrics(raw: readonly ChannelRecord[], top: number): string {
  const entries = mergeChannels(raw);
  const labels = channelLabels(
    entries.map((e) => e.stats),
    top,
  );
  const groups = new Map<string, ChannelRecord[]>();
  for (const e of entries) {
    const label = labels.get(e.stats.channel)!;
    const list = groups.get(label);
    if (list) list.push(e);
    else groups.set(label, [e]);
  }
  const sum = (es: ChannelRecord[], pick: (s: ChannelStats) => number) => es.reduce((n, e) => n + pick(e.stats), 0);
  const gauges: [name: string, type: "gauge" | "counter", help: string, pick: (s: ChannelStats) => number][] = [
    ["notifiws_connections", "gauge", "Open WebSocket connections", (s) => s.connections],
    ["notifiws_unique_users", "gauge", "Distinct token subjects connected (summed over folded channels)", (s) => s.uniqueUsers],
    ["notifiws_events_total", "counter", "Events accepted (after dedupe)", (s) => s.events],
    ["notifiws_duplicates_total", "counter", "Events dropped as duplicates", (s) => s.duplicates],
    ["notifiws_messages_sent_total", "counter", "WebSocket frames sent", (s) => s.messagesSent],
    ["notifiws_send_errors_total", "counter", "Failed sends (socket closed with 1011)", (s) => s.sendErrors],
    ["notifiws_history_events", "gauge", "Events retained for resume", (s) => s.historySize],
    ["notifiws_rows_loads_total", "counter", "Loads of a live table's rows answered (since each object started)", (s) => s.rowsLoads],
    ["notifiws_rows_reads_total", "counter", "Database reads for those loads (the rest were collapsed)", (s) => s.rowsReads],
    ["notifiws_sqlite_rows_read_total", "counter", "SQLite rows the channel's objects read, billed (since each object started)", (s) => s.sqlRowsRead ?? 0],
    [
      "notifiws_sqlite_rows_written_total",
      "counter",
      "SQLite rows the channel's objects wrote, deletes included, billed (since each object started)",
      (s) => s.sqlRowsWritten ?? 0,
    ],
    [
      "notifiws_object_requests_total",
      "counter",
      "Requests the channel's objects handled: fetch, RPC calls, alarms, billed (since each object started)",
      (s) => s.objectRequests ?? 0,
    ],
    [
      "notifiws_ws_messages_in_total",
      "counter",
      "WebSocket messages received from clients, billed as requests at 20:1 (since each object started)",
      (s) => s.wsMessagesIn ?? 0,
    ],
    ["notifiws_alarms_set_total", "counter", "setAlarm calls, each billed as a row written (since each object started)", (s) => s.alarmsSet ?? 0],
  ];
  const lines: string[] = [];
  for (const [name, type, help, pick] of gauges) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [label, es] of groups) lines.push(`${name}{channel="${escape(label)}"} ${sum(es, pick)}`);
  }
  lines.push("# HELP notifiws_connections_by_role Open connections by the token's role claim", "# TYPE notifiws_connections_by_role gauge");
  for (const [label, es] of groups) {
    const roles: Record<string, number> = {};
    for (const e of es) for (const [r, n] of Object.entries(e.stats.connectionsByRole)) roles[r] = (roles[r] ?? 0) + n;
    for (const [r, n] of Object.entries(roles)) lines.push(`notifiws_connections_by_role{channel="${escape(label)}",role="${escape(r)}"} ${n}`);
  }
  const merged = (pick: (h: ChannelHistograms) => HistogramData) =>
    [...groups].map(([label, es]) => {
      const h = Histogram.from(pick(es[0]!.histograms));
      for (const e of es.slice(1)) h.add(pick(e.histograms));
      return { labels: { channel: label }, data: h.toJSON() };
    });
  lines.push(
    renderHistogram(
      "notifiws_commit_to_stored_seconds",
      "Commit in Postgres (or publish) to stored at the edge, per event",
      merged((h) => h.commitToStored),
    ),
  );
  lines.push(
    renderHistogram(
      "notifiws_batch_events",
      "Events per stored batch (one fan-out each)",
      merged((h) => h.batchEvents),
    ),
  );
  lines.push("# HELP notifiws_channels Channels with stats", "# TYPE notifiws_channels gauge", `notifiws_channels ${entries.length}`);
  return lines.join("\n") + "\n";
}

const escape = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
