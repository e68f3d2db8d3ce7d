/**
 * GET /ws/:channel: authenticate, authorize and validate before the upgrade,
 * so rejected traffic never costs a Durable Object request.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";
import { channelAllowed } from "../../shared/channels";
import { ApiError } from "../errors";
import { errorCodeOf } from "../../shared/http-errors";
import { parseJson } from "../request";
import { Filter, MAX_FILTER_BYTES, SUBPROTOCOL } from "../../shared/protocol";
import { CONNECT_HEADER, type ConnectRequest } from "../channel-contract";
import { channelParam } from "../middleware/channel-param";
import { clientAuth } from "../middleware/client-auth";
import { offeredProtocols } from "../auth";
import { fanoutName, firstCandidate, markFull, MAX_FANOUT_OBJECTS, placement, usesFanout } from "../fanout";
import { formatIssues } from "../../shared/zod";
import { shownClaims } from "../presence-claims";
import { utf8Length } from "../../shared/limits";

export const wsRoutes = new Hono<AppEnv>();

// Lets browser apps ask why a handshake failed (browsers hide a refused
// handshake's status; see the 426 check below). An allowed origin reads every
// answer; any other origin may read its refusal too (otherwise an app on a
// new origin would show "reconnecting" forever), and that is all it can read:
// the origin is checked before the token, so such a request never gets past
// 403 ORIGIN_NOT_ALLOWED. No cookies are involved, so `*` exposes nothing more.
const diagnosticsCors = cors({
  origin: (origin, c) => (originAllowed(origin, c.var.config.ALLOWED_ORIGINS) ? origin : "*"),
  allowHeaders: ["Authorization"],
  allowMethods: ["GET"],
});
// A WebSocket handshake is not subject to CORS (browsers never expose its
// answer), and adding headers to the object's 101 response copies it: the
// handshake skips it (docs/benchmarks.md, "Connect").
wsRoutes.use("/ws/*", (c, next) => (c.req.header("upgrade")?.toLowerCase() === "websocket" ? next() : diagnosticsCors(c, next)));

export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  // Non-browser clients send no Origin; browsers always do, and it cannot be forged from a page.
  if (origin === undefined) return true;
  return allowed.includes("*") || allowed.includes(origin);
}

/** Browser origin first (403), then the subprotocol offer (400): both are cheap and need no token. */
const originAndSubprotocol = createMiddleware<AppEnv>(async (c, next) => {
  if (!originAllowed(c.req.header("origin"), c.var.config.ALLOWED_ORIGINS)) throw new ApiError("ORIGIN_NOT_ALLOWED", "this origin is not in ALLOWED_ORIGINS");
  // Browsers fail the handshake unless the server echoes one offered protocol,
  // and the token entry must never be echoed, so notifiws.v1 has to be offered.
  const offered = offeredProtocols(c.req.header("sec-websocket-protocol"));
  if (offered.length > 0 && !offered.includes(SUBPROTOCOL)) throw new ApiError("BAD_SUBPROTOCOL", `offer the "${SUBPROTOCOL}" subprotocol alongside the token`);
  await next();
});

wsRoutes.get("/ws/:channel", channelParam(), originAndSubprotocol, clientAuth(), async (c) => {
  const config = c.var.config;
  const channel = c.var.channel;
  const claims = c.var.claims;
  if (!channelAllowed(channel, claims.channels, claims.sub)) throw new ApiError("CHANNEL_FORBIDDEN", `token does not allow channel ${channel}`);

  // Checked after auth on purpose: a plain GET with the same credentials is
  // how clients learn why a handshake failed (browsers hide the HTTP status).
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket")
    throw new ApiError("UPGRADE_REQUIRED", "credentials are valid; this endpoint only accepts WebSocket upgrades");

  let since: number | undefined;
  const sinceRaw = c.req.query("since");
  if (sinceRaw !== undefined) {
    since = Number(sinceRaw);
    if (!/^\d+$/.test(sinceRaw) || !Number.isSafeInteger(since)) throw new ApiError("BAD_SINCE", "since must be a non-negative integer seq");
  }

  let filter: Filter | undefined;
  const filterRaw = c.req.query("filter");
  if (filterRaw !== undefined) {
    if (utf8Length(filterRaw) > MAX_FILTER_BYTES) throw new ApiError("BAD_FILTER", `filter exceeds ${MAX_FILTER_BYTES} bytes (UTF-8)`);
    // A number a float cannot hold becomes its decimal text, which the filter compares exactly.
    const parsed = Filter.safeParse(parseJson(filterRaw, "BAD_FILTER", "filter", "text"));
    if (!parsed.success) throw new ApiError("BAD_FILTER", `invalid filter: ${formatIssues(parsed.error.issues, { root: "filter" })}`);
    filter = parsed.data;
  }

  const ackRaw = c.req.query("ack");
  if (ackRaw !== undefined && ackRaw !== "1" && ackRaw !== "0") throw new ApiError("BAD_REQUEST", "ack must be 1 (the client acknowledges events) or 0");

  const presenceRaw = c.req.query("presence");
  if (presenceRaw !== undefined && presenceRaw !== "1" && presenceRaw !== "0")
    throw new ApiError("BAD_REQUEST", "presence must be 1 (subscribe to presence) or 0");
  const presenceChannel = channelAllowed(channel, config.PRESENCE_CHANNELS, undefined);
  if (presenceRaw === "1" && !presenceChannel) throw new ApiError("PRESENCE_DISABLED", `channel ${channel} has no presence (PRESENCE_CHANNELS)`);
  if (presenceRaw === "1" && claims.presence === false)
    throw new ApiError("PRESENCE_FORBIDDEN", "this token may not subscribe to presence (claim presence: false)");

  const offered = offeredProtocols(c.req.header("sec-websocket-protocol"));
  const connect: ConnectRequest = {
    channel,
    sub: claims.sub,
    role: claims.role,
    exp: claims.exp,
    filter,
    since,
    ack: ackRaw === "1" || undefined,
    echoProtocol: offered.includes(SUBPROTOCOL) ? SUBPROTOCOL : undefined,
    presence: presenceRaw === "1" || undefined,
    shown: presenceChannel ? shownClaims(claims, config.PRESENCE_CLAIMS) : undefined,
  };
  const headers = new Headers(c.req.raw.headers);
  // Never forward the credential further than needed.
  headers.delete("authorization");
  headers.delete("sec-websocket-protocol");
  const url = new URL(c.req.url);
  url.searchParams.delete("token");
  if (!usesFanout(channel, config.FANOUT_CHANNELS)) {
    headers.set(CONNECT_HEADER, JSON.stringify(connect));
    return c.env.CHANNEL.get(c.env.CHANNEL.idFromName(channel)).fetch(new Request(url.toString(), { method: "GET", headers }));
  }
  // The fan-out tree: the first object of the client's region with room.
  const where = placement(c.req.raw.cf as { continent?: unknown } | undefined);
  const start = firstCandidate(channel, where.region);
  for (let index = start; index < start + MAX_FANOUT_OBJECTS; index++) {
    const name = fanoutName(channel, where.region, index);
    headers.set(
      CONNECT_HEADER,
      JSON.stringify({ ...connect, fanout: { name, region: where.region, capacity: config.FANOUT_OBJECT_CAPACITY } } satisfies ConnectRequest),
    );
    const stub = c.env.CHANNEL.get(c.env.CHANNEL.idFromName(name), where.hint ? { locationHint: where.hint } : undefined);
    const res = await stub.fetch(new Request(url.toString(), { method: "GET", headers }));
    // Only a full object sends the client on to the next one; any other answer is the client's.
    if (res.status === 101 || (await errorCodeOf(res)) !== "FANOUT_FULL") return res;
    markFull(channel, where.region, index);
  }
  throw new ApiError("FANOUT_FULL", `every fan-out object of ${channel} in ${where.region} is full; retry later`);
});
