/**
 * GET /api/demo/state: the dashboard's aggregates (sales today, revenue per
 * minute) and their snapshot, read from Postgres with
 * @neondatabase/serverless (WebSocket transport): the kind of state that is
 * not a table and stays with syncState. Its tables (inventory, the low-stock
 * list) come from the product's rows route. Needs a client token that
 * allows `sales`.
 */
import { Client, neonConfig } from "@neondatabase/serverless";
import { Hono } from "hono";
import type { AppEnv } from "../env";
import { channelAllowed } from "../../shared/channels";
import { ApiError } from "../errors";
import { clientAuth } from "../middleware/client-auth";
import type { PgSnapshot } from "../../shared/snapshot";
import type { DemoState } from "../../shared/demo";
import { useProxy } from "../../shared/neon";

export const demoRoutes = new Hono<AppEnv>();

demoRoutes.get("/api/demo/state", clientAuth(), async (c) => {
  const config = c.var.config;
  const claims = c.var.claims;
  if (!channelAllowed("sales", claims.channels, claims.sub)) throw new ApiError("CHANNEL_FORBIDDEN", "the dashboard's totals need the sales channel");
  if (!config.DASHBOARD_DATABASE_URL) throw new ApiError("DASHBOARD_DISABLED", "set DASHBOARD_DATABASE_URL to serve the demo state");

  useProxy(neonConfig, config.NEON_WS_PROXY);
  const client = new Client({ connectionString: config.DASHBOARD_DATABASE_URL });
  client.on("error", () => {}); // the socket's loss after end() (durable-objects/table-read.ts)
  try {
    await client.connect();
    // One snapshot for every number and for notifiws.snapshot(): under READ
    // COMMITTED each statement would see a different database.
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const totals = await client.query(
      `SELECT count(*) FILTER (WHERE created_at >= date_trunc('day', now()))::int AS sales,
              coalesce(sum(total) FILTER (WHERE created_at >= date_trunc('day', now())), 0)::float8 AS revenue
         FROM ventas`,
    );
    const perMinute = await client.query(
      `SELECT date_trunc('minute', created_at) AS minute, sum(total)::float8 AS revenue, count(*)::int AS sales
         FROM ventas WHERE created_at >= now() - interval '30 minutes' GROUP BY 1 ORDER BY 1`,
    );
    const snapshot = await client.query(`SELECT notifiws.snapshot() AS s`);
    await client.query("COMMIT");
    const t = totals.rows[0] as { sales: number; revenue: number };
    return c.json({
      salesToday: t.sales,
      revenueToday: t.revenue,
      perMinute: perMinute.rows as DemoState["perMinute"],
      snapshot: (snapshot.rows[0] as { s: PgSnapshot }).s,
    } satisfies DemoState);
  } catch (err) {
    throw new ApiError("DATABASE_UNAVAILABLE", `could not read the demo state: ${(err as Error).message}`);
  } finally {
    c.executionCtx.waitUntil(client.end().catch(() => undefined));
  }
});
