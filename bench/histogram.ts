/** Fixed-bucket latency histogram: 0.1 ms buckets up to 60 s, constant memory. */
export class Histogram {
  private readonly buckets = new Uint32Array(600_001);
  count = 0;
  add(ms: number): void {
    const i = Math.min(this.buckets.length - 1, Math.max(0, Math.round(ms * 10)));
    this.buckets[i]!++;
    this.count++;
  }
  /** Non-empty buckets as [index, count] pairs: small enough for IPC, mergeable across processes. */
  toSparse(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < this.buckets.length; i++) if (this.buckets[i]) out.push([i, this.buckets[i]!]);
    return out;
  }
  merge(sparse: [number, number][]): this {
    for (const [i, n] of sparse) {
      this.buckets[i]! += n;
      this.count += n;
    }
    return this;
  }
  percentiles(qs: number[]): number[] {
    return qs.map((q) => {
      if (this.count === 0) return NaN;
      const target = Math.ceil(q * this.count);
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += this.buckets[i]!;
        if (acc >= target) return i / 10;
      }
      return NaN;
    });
  }
}

export function percentile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}
