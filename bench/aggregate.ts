/**
 * Figures over repeated runs (bench/run.ts): each figure is the median of its
 * runs with the min–max, and each notifiws/peer ratio is taken within a run
 * (both systems measured on the same machine state) before its median and
 * spread are taken, so drift between runs does not pass for a difference.
 */

export interface Spread {
  median: number;
  min: number;
  max: number;
  /** Runs with a finite value. */
  n: number;
}

/** Median and range of the finite values (NaN figures when there are none). */
export function spread(values: readonly (number | undefined)[]): Spread {
  const v = values.filter((x): x is number => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length };
}

/** Per-run ratios a/b (runs where both are finite and b is not 0), then their spread. */
export function ratioSpread(a: readonly (number | undefined)[], b: readonly (number | undefined)[]): Spread {
  return spread(a.map((x, i) => (typeof x === "number" && typeof b[i] === "number" && b[i] !== 0 ? x / b[i]! : undefined)));
}

export type Verdict = "behind" | "ahead" | "within the spread" | "not measured";

/**
 * Where notifiws stands on one figure against one peer: behind (or ahead)
 * only when every run says so, i.e. the whole range of the per-run ratio is
 * on one side of 1; anything else is within the machine's spread.
 */
export function verdict(r: Spread, higherIsBetter = false): Verdict {
  if (r.n === 0) return "not measured";
  const [lo, hi] = higherIsBetter ? [1 / r.max, 1 / r.min] : [r.min, r.max];
  if (lo > 1) return "behind";
  if (hi < 1) return "ahead";
  return "within the spread";
}

/** "12.3 (10.1–15.0)" for a figure, "1.05x (0.91–1.20x)" for a ratio; "–" when not measured. */
export function formatSpread(s: Spread, opts: { digits?: number; suffix?: string } = {}): string {
  if (s.n === 0) return "–";
  const f = (v: number) => v.toFixed(opts.digits ?? (Math.abs(v) >= 100 ? 0 : 1));
  const x = opts.suffix ?? "";
  return s.n === 1 ? f(s.median) + x : `${f(s.median)}${x} (${f(s.min)}–${f(s.max)}${x})`;
}

/** The order systems run in during run `i`: rotated, so each takes every position across runs. */
export function rotate<T>(items: readonly T[], i: number): T[] {
  if (items.length === 0) return [];
  const k = i % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
