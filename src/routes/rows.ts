/**
 * GET /v1/channels/:channel/rows: a live table's initial rows, read at the
 * edge (docs/live-tables.md). The same token and channel rules as the
 * WebSocket; the channel's ordering object answers (durable-objects/rows.ts),
 * so loads that arrive together cost the database one read. The body is
 * `{ rows, types, key, table, snapshot, fromSeq }` as Postgres and the object
 * wrote it: the Worker passes it on without parsing it.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../env";
import { channelAllowed } from "../../shared/channels";
import { ApiError } from "../errors";
import { channelParam } from "../middleware/channel-param";
import { clientAuth } from "../middleware/client-auth";
import { originAllowed } from "./ws";

export const rowsRoutes = new Hono<AppEnv>();

/** Response header: `read` (this load read the database), `joined` (a read already running), `shared` (the object's latest read). */
export const ROWS_SOURCE_HEADER = "notifiws-rows-source";

// Browser apps fetch rows from their own origin with the token in Authorization.
rowsRoutes.use(
  "/v1/channels/*",
  cors({
    origin: (origin, c) => (originAllowed(origin, c.var.config.ALLOWED_ORIGINS) ? origin : "*"),
    allowHeaders: ["Authorization"],
    allowMethods: ["GET"],
    exposeHeaders: [ROWS_SOURCE_HEADER],
  }),
);

rowsRoutes.get("/v1/channels/:channel/rows", channelParam(), clientAuth(), async (c) => {
  const config = c.var.config;
  const channel = c.var.channel;
  if (!originAllowed(c.req.header("origin"), config.ALLOWED_ORIGINS)) throw new ApiError("ORIGIN_NOT_ALLOWED", "this origin is not in ALLOWED_ORIGINS");
  const claims = c.var.claims;
  if (!channelAllowed(channel, claims.channels, claims.sub)) throw new ApiError("CHANNEL_FORBIDDEN", `token does not allow channel ${channel}`);
  if (!config.ROWS_DATABASE_URL) throw new ApiError("ROWS_DISABLED", "set ROWS_DATABASE_URL to serve GET /v1/channels/:channel/rows");

  let answer;
  try {
    answer = await c.env.CHANNEL.get(c.env.CHANNEL.idFromName(channel)).loadRows(channel);
  } catch (err) {
    throw new ApiError("DATABASE_UNAVAILABLE", `could not read the rows of ${channel}: ${(err as Error).message}`);
  }
  if (!answer.ok) throw new ApiError(answer.code, answer.message);
  return c.body(answer.body, 200, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "private, no-store",
    [ROWS_SOURCE_HEADER]: answer.source,
  });
});
