/** GET /stats (JSON) and GET /metrics (Prometheus text), behind the admin token. */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../env";
import { renderMetrics, statsReport } from "../metrics";
import { STATS_STORE, type ChannelRecord } from "../channel-contract";
import { ApiError } from "../errors";
import { bearerKey } from "../middleware/bearer-key";

export const statsRoutes = new Hono<AppEnv>();

const adminOnly = bearerKey({
  what: "admin token",
  missingCode: "UNAUTHORIZED",
  invalidCode: "UNAUTHORIZED",
  keys: (c) => {
    const token = c.var.config.ADMIN_TOKEN;
    if (!token) throw new ApiError("ADMIN_DISABLED", "set ADMIN_TOKEN to enable /stats and /metrics");
    return [token];
  },
});

/** Reads every channel's roll-up from the stats store: no channel object is called (or woken). */
async function channels(c: Context<AppEnv>): Promise<ChannelRecord[]> {
  return c.env.STATS.get(c.env.STATS.idFromName(STATS_STORE)).snapshot(c.var.config.STATS_RETENTION_SECONDS);
}

statsRoutes.get("/stats", adminOnly, async (c) => c.json(statsReport(await channels(c))));

statsRoutes.get("/metrics", adminOnly, async (c) =>
  c.text(renderMetrics(await channels(c), c.var.config.METRICS_TOP_CHANNELS), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
);
