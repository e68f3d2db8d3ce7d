import { describe, expect, it } from "vitest";
import { COUNT_BUCKETS, Histogram, renderHistogram } from "../../shared/histogram";
import { channelLabels, OTHER_CHANNELS, renderMetrics, statsReport } from "../../src/metrics";
import type { ChannelRecord } from "../../src/channel-contract";

describe("Histogram", () => {
  it("counts each value into the first bucket whose bound is not below it", () => {
    const h = new Histogram([0.01, 0.1, 1]);
    for (const v of [0.001, 0.01, 0.05, 0.1, 0.5, 3]) h.observe(v);
    expect(h.counts).toEqual([2, 2, 1, 1]);
    expect(h.count).toBe(6);
    expect(h.sum).toBeCloseTo(3.661);
    expect(h.quantile(0.5)).toBe(0.1);
    expect(h.quantile(1)).toBe(Infinity);
  });

  it("renders cumulative buckets, +Inf, _sum and _count", () => {
    const h = new Histogram([0.01, 0.1]);
    [0.005, 0.05, 0.05, 2].forEach((v) => h.observe(v));
    expect(renderHistogram("x_seconds", "help", [{ labels: { channel: 'a"b' }, data: h }]).split("\n")).toEqual([
      "# HELP x_seconds help",
      "# TYPE x_seconds histogram",
      'x_seconds_bucket{channel="a\\"b",le="0.01"} 1',
      'x_seconds_bucket{channel="a\\"b",le="0.1"} 3',
      'x_seconds_bucket{channel="a\\"b",le="+Inf"} 4',
      'x_seconds_sum{channel="a\\"b"} 2.105',
      'x_seconds_count{channel="a\\"b"} 4',
    ]);
  });

  it("adds histograms with the same bounds and refuses others", () => {
    const a = new Histogram([1]);
    a.observe(0.5);
    const b = Histogram.from(a.toJSON());
    b.add(a);
    expect(b.counts).toEqual([2, 0]);
    expect(() => b.add(new Histogram([2]))).toThrow(/bounds differ/);
  });
});

const entry = (channel: string, events: number, extra: Partial<ChannelRecord["stats"]> = {}, users: string[] = []): ChannelRecord => {
  const lat = new Histogram();
  lat.observe(0.02);
  const size = new Histogram(COUNT_BUCKETS);
  size.observe(events);
  return {
    source: "",
    stats: {
      channel,
      connections: 1,
      connectionsByRole: { none: 1 },
      uniqueUsers: users.length,
      headSeq: events,
      events,
      duplicates: 0,
      messagesSent: events,
      sendErrors: 0,
      lastEventAt: 5,
      historySize: events,
      rowsLoads: 0,
      rowsReads: 0,
      sqlRowsRead: 0,
      sqlRowsWritten: 0,
      ...extra,
    },
    users,
    histograms: { commitToStored: lat.toJSON(), batchEvents: size.toJSON() },
  };
};

describe("channelLabels: bounded label cardinality", () => {
  it.each([
    [1, { a: "a", b: OTHER_CHANNELS, c: OTHER_CHANNELS }],
    [2, { a: "a", b: "b", c: OTHER_CHANNELS }], // b and c tie on events: by name
    [5, { a: "a", b: "b", c: "c" }],
  ])("top %i", (top, expected) => {
    const labels = channelLabels(
      [
        { channel: "c", events: 5 },
        { channel: "a", events: 9 },
        { channel: "b", events: 5 },
      ],
      top,
    );
    expect(Object.fromEntries(labels)).toEqual(expected);
  });
});

describe("renderMetrics and statsReport", () => {
  const entries = [entry("busy", 100, { connectionsByRole: { admin: 1 } }, ["u1", "u2"]), entry("quiet1", 1, {}, ["u2"]), entry("quiet2", 2, {}, ["u3"])];
  it("folds the channels beyond the top into _other, summing gauges and merging histograms", () => {
    const text = renderMetrics(entries, 1);
    expect(text).toContain('notifiws_events_total{channel="busy"} 100');
    expect(text).toContain('notifiws_events_total{channel="_other"} 3');
    expect(text).not.toContain("quiet1");
    expect(text).toContain('notifiws_commit_to_stored_seconds_count{channel="_other"} 2');
    expect(text).toContain('notifiws_connections_by_role{channel="busy",role="admin"} 1');
    expect(text).toContain('notifiws_connections_by_role{channel="_other",role="none"} 2');
  });
  it("totals unique users across channels, not per channel", () => {
    const r = statsReport(entries);
    expect(r.totals).toMatchObject({ channels: 3, connections: 3, uniqueUsers: 3, events: 103, connectionsByRole: { admin: 1, none: 2 } });
  });
});
