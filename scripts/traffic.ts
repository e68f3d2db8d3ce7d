/**
 * Demo traffic for `npm run dev`: sales inserts and stock changes at a steady
 * rate. Each sale takes stock; when an item runs low it is restocked a little
 * later, so a low-stock alert (stock < 5) fires every few seconds.
 */
import pg from "pg";

export interface TrafficOptions {
  /** Sales per second. Default 2. */
  ratePerSec?: number;
}

export function startTraffic(databaseUrl: string, opts: TrafficOptions = {}): { stop(): Promise<void> } {
  const rate = opts.ratePerSec ?? 2;
  const client = new pg.Client({ connectionString: databaseUrl, application_name: "notifiws-demo-traffic" });
  client.on("error", () => {});
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  let stopped = false;
  const tick = async () => {
    if (busy || stopped) return;
    busy = true;
    try {
      const { rows } = await client.query<{ sku: string; stock: number; price: string }>("SELECT sku, stock, price FROM inventory ORDER BY random() LIMIT 1");
      const item = rows[0];
      if (!item) return;
      if (item.stock < 3) {
        await client.query("UPDATE inventory SET stock = stock + $2, updated_at = now() WHERE sku = $1", [item.sku, 8 + Math.floor(Math.random() * 6)]);
        return;
      }
      const qty = 1 + Math.floor(Math.random() * 3);
      await client.query("BEGIN");
      await client.query("INSERT INTO ventas (sku, quantity, total, customer_email) VALUES ($1, $2, $3, $4)", [
        item.sku,
        qty,
        (Number(item.price) * qty).toFixed(2),
        `customer${Math.floor(Math.random() * 1000)}@example.com`,
      ]);
      await client.query("UPDATE inventory SET stock = greatest(stock - $2, 0), updated_at = now() WHERE sku = $1", [item.sku, qty]);
      await client.query("COMMIT");
    } catch {
      await client.query("ROLLBACK").catch(() => undefined);
    } finally {
      busy = false;
    }
  };
  void client.connect().then(() => {
    if (!stopped) timer = setInterval(() => void tick(), 1000 / rate);
  });
  return {
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await client.end().catch(() => undefined);
    },
  };
}
