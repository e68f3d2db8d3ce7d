/**
 * The bench's own arithmetic, which every published figure rests on: merging
 * latency histograms across load-generator processes, and reading a V8 CPU
 * profile (module of a bundle line, code group, time per sample with gaps),
 * and figures over repeated runs (median, range, per-run ratios, verdicts).
 */
import { describe, expect, it } from "vitest";
import { Histogram } from "../../bench/histogram";
import { groupOf, moduleIndex, summarize } from "../../bench/profile";
import { formatSpread, ratioSpread, rotate, spread, verdict } from "../../bench/aggregate";

describe("histograms merged across processes", () => {
  it("give the same percentiles as one histogram of every value", () => {
    const values = Array.from({ length: 1000 }, (_, i) => (i * 37) % 997);
    const whole = new Histogram();
    const parts = [new Histogram(), new Histogram(), new Histogram()];
    values.forEach((v, i) => {
      whole.add(v);
      parts[i % 3]!.add(v);
    });
    const merged = new Histogram();
    for (const p of parts) merged.merge(p.toSparse());
    expect(merged.count).toBe(1000);
    expect(merged.percentiles([0.5, 0.95, 0.99])).toEqual(whole.percentiles([0.5, 0.95, 0.99]));
  });
});

describe("reading a CPU profile", () => {
  const bundle = ["// shared/log.ts", "a", "b", "// node_modules/jose/dist/webapi/jwt/verify.js", "c", "// durable-objects/sockets.ts", "d"].join("\n");
  const at = moduleIndex(bundle);
  it.each([
    [0, "shared/log.ts"],
    [2, "shared/log.ts"],
    [4, "node_modules/jose/dist/webapi/jwt/verify.js"],
    [6, "durable-objects/sockets.ts"],
  ])("line %i of the bundle belongs to %s", (line, module) => {
    expect(at(line)).toBe(module);
  });
  it("a line before the first module marker belongs to none", () => {
    expect(moduleIndex("x\n// src/app.ts\ny")(0)).toBeUndefined();
  });

  const frame = (functionName: string, url = "") => ({ functionName, url, scriptId: "1", lineNumber: 0 });
  it.each([
    [frame("(idle)"), undefined, "(idle)"],
    [frame("(garbage collector)"), undefined, "(garbage collector)"],
    [frame("fetch"), undefined, "(native: runtime built-ins)"],
    [frame("verify"), "node_modules/jose/dist/webapi/jwt/verify.js", "jose"],
    [frame("x"), "node_modules/@cloudflare/workers-shared/index.js", "@cloudflare/workers-shared"],
    [frame("sendRaw"), "durable-objects/sockets.ts", "durable-objects/sockets.ts"],
    [frame("onRequest", "file:///work/bench/partyserver/index.ts"), undefined, "bench/partyserver/index.ts"],
  ])("groups %j (module %s) as %s", (f, module, group) => {
    expect(groupOf(f, module)).toBe(group);
  });

  it("charges each sample its time up to the cap, counts the rest as time outside V8, and leaves idle out of busy", () => {
    const nodes = [
      { id: 1, callFrame: frame("(root)") },
      { id: 2, callFrame: frame("work", "durable-objects/sockets.ts") },
      { id: 3, callFrame: frame("(idle)") },
    ];
    // Samples: work, work (then a 10 ms gap), idle, work. Interval 200 µs, so the cap is 800 µs.
    const summary = summarize({ nodes, startTime: 0, endTime: 11_000, samples: [2, 2, 3, 2], timeDeltas: [0, 200, 10_000, 300] }, { intervalUs: 200 });
    expect(summary.busyMs).toBe(1); // 200 µs + 800 µs (capped) of `work`; the idle 300 µs is not busy
    expect(summary.gapMs).toBe(9.2); // 10,000 − 800 µs
    expect(summary.groups).toEqual([{ group: "durable-objects/sockets.ts", ms: 1, share: 100 }]);
    expect(summary.top[0]).toMatchObject({ fn: "work", ms: 1, share: 100 });
  });
});

describe("figures over repeated runs", () => {
  it.each([
    [[3, 1, 2], { median: 2, min: 1, max: 3, n: 3 }],
    [[4, 1, 3, 2], { median: 2.5, min: 1, max: 4, n: 4 }],
    [[5, undefined, NaN, 7], { median: 6, min: 5, max: 7, n: 2 }],
    [[], { median: NaN, min: NaN, max: NaN, n: 0 }],
  ])("spread of %j", (values, expected) => {
    expect(spread(values)).toEqual(expected);
  });

  it("takes ratios within each run, so a drift shared by both systems cancels", () => {
    // The machine slows down run after run; notifiws is 1.1x the peer in each.
    const peer = [100, 200, 400];
    const ours = [110, 220, 440];
    const r = ratioSpread(ours, peer);
    expect(r.median).toBeCloseTo(1.1);
    expect(r.max - r.min).toBeCloseTo(0);
    // The medians taken apart would say the same here, but not their ranges: 110–440 against 100–400 overlap.
    expect(spread(ours).min).toBeLessThan(spread(peer).max);
  });

  it.each([
    [[1.2, 1.1, 1.3], false, "behind"],
    [[0.8, 0.9, 0.95], false, "ahead"],
    [[0.9, 1.2, 1.1], false, "within the spread"],
    [[0.8, 0.9, 0.95], true, "behind"], // deliveries/s: a lower ratio is worse
    [[1.2, 1.1, 1.3], true, "ahead"],
    [[], false, "not measured"],
  ] as const)("verdict of ratios %j (higher is better: %s) is %s", (ratios, higher, expected) => {
    expect(verdict(spread([...ratios]), higher)).toBe(expected);
  });

  it("formats a figure with its range and rotates the order of systems", () => {
    expect(formatSpread(spread([182, 150, 210]))).toBe("182 (150–210)");
    expect(formatSpread(spread([1.05, 0.91, 1.2]), { digits: 2, suffix: "x" })).toBe("1.05x (0.91–1.20x)");
    expect(formatSpread(spread([]))).toBe("–");
    expect([0, 1, 2, 3].map((i) => rotate(["a", "b", "c"], i).join(""))).toEqual(["abc", "bca", "cab", "abc"]);
  });
});
