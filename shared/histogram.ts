/**
 * Fixed-bucket histograms in the Prometheus model (cumulative `_bucket`
 * series, `_sum`, `_count`), mergeable so that deltas from many Durable
 * Objects (or many batches) add up. No dependency: the Worker, the objects
 * and the relay share it.
 */

/** Latency buckets in seconds: 1 ms to 10 s. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Batch-size buckets (events). */
export const COUNT_BUCKETS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

/** A histogram as data: `counts[i]` observations at or below `bounds[i]`, the last one above every bound. */
export interface HistogramData {
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram implements HistogramData {
  counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS_SECONDS) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  static from(data: HistogramData): Histogram {
    const h = new Histogram(data.bounds);
    h.add(data);
    return h;
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** Adds another histogram with the same bounds. */
  add(other: HistogramData): void {
    if (other.bounds.length !== this.bounds.length || other.bounds.some((b, i) => b !== this.bounds[i])) throw new Error("histogram bounds differ");
    other.counts.forEach((n, i) => (this.counts[i]! += n));
    this.sum += other.sum;
    this.count += other.count;
  }

  /** The upper bound of the bucket holding quantile q (Prometheus's histogram_quantile without interpolation). */
  quantile(q: number): number | undefined {
    if (this.count === 0) return undefined;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return i < this.bounds.length ? this.bounds[i] : Infinity;
    }
    return Infinity;
  }

  toJSON(): HistogramData {
    return { bounds: [...this.bounds], counts: [...this.counts], sum: this.sum, count: this.count };
  }
}

const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const labelText = (labels: Record<string, string>, extra?: [string, string]) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

/** One histogram metric in Prometheus text format 0.0.4, one series per label set. */
export function renderHistogram(name: string, help: string, series: { labels: Record<string, string>; data: HistogramData }[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
  for (const { labels, data } of series) {
    let cumulative = 0;
    data.bounds.forEach((b, i) => {
      cumulative += data.counts[i]!;
      lines.push(`${name}_bucket${labelText(labels, ["le", String(b)])} ${cumulative}`);
    });
    lines.push(`${name}_bucket${labelText(labels, ["le", "+Inf"])} ${data.count}`);
    lines.push(`${name}_sum${labelText(labels)} ${data.sum}`);
    lines.push(`${name}_count${labelText(labels)} ${data.count}`);
  }
  return lines.join("\n");
}
