/**
 * Writing rows at a target rate: 10 ms ticks, several rows per statement (and
 * transaction) at high rates, at most 4 statements in flight. Shared by the
 * row writer (bench/writer.ts) and W4 per capture mode (bench/capture-latency.ts).
 */
export async function paced(rate: number, seconds: number, insert: (rows: number) => Promise<void>): Promise<void> {
  const total = Math.round(rate * seconds);
  const perTick = rate / 100;
  const started = performance.now();
  let sent = 0;
  const inflight = new Set<Promise<void>>();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 10 + 1) * perTick));
    const n = due - sent;
    if (n > 0) {
      sent += n;
      const p: Promise<void> = insert(n).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= 4) await Promise.race(inflight);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.all(inflight);
}
