/**
 * `npm run bench:parse`: what exact parsing (shared/exact-json.ts)
 * costs against JSON.parse on 100-event frames like the ones clients receive
 * (int8 ids and numerics as text, timestamps, types), and on a frame with a
 * published number a float cannot hold (the slow path).
 */
import { parseJsonExact } from "../shared/exact-json";

const event = (i: number, extra: Record<string, unknown> = {}) => ({
  seq: i,
  id: crypto.randomUUID(),
  channel: "sales",
  op: "insert",
  table: "public.ventas",
  data: { id: String(1000 + i), sku: "KB-01", quantity: 2, total: "89.00", created_at: "2026-11-30T10:16:27.905745+00:00", ...extra },
  committedAt: 1795425131148,
  txid: "48213",
  types: { id: "int8", sku: "text", quantity: "int4", total: "numeric", created_at: "timestamptz" },
});
const frames = {
  "table rows": JSON.stringify({ type: "events", events: Array.from({ length: 100 }, (_, i) => event(i)) }),
  "with a big published number": JSON.stringify({ type: "events", events: Array.from({ length: 100 }, (_, i) => event(i)) }).replace(
    '"quantity":2',
    '"quantity":12345678901234567890',
  ),
};
const parsers = {
  "JSON.parse": (t: string) => JSON.parse(t),
  "parseJsonExact raw (Worker)": (t: string) => parseJsonExact(t, "raw"),
  "parseJsonExact value (SDK)": (t: string) => parseJsonExact(t, "value"),
};
const N = 2000;
for (const [frameName, frame] of Object.entries(frames))
  for (const [name, parse] of Object.entries(parsers)) {
    for (let i = 0; i < 200; i++) parse(frame);
    const t0 = performance.now();
    for (let i = 0; i < N; i++) parse(frame);
    const perEventUs = ((performance.now() - t0) / N / 100) * 1000;
    console.log(JSON.stringify({ frame: frameName, parser: name, bytes: frame.length, perEventUs: Number(perEventUs.toFixed(2)) }));
  }
