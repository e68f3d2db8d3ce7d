/**
 * GET /ws/:channel: authenticate, authorize and validate before the upgrade,
 * so rejected traffic never costs a Durable Object request.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../app";
import { channelAllowed } from "../channels";
import { ApiError } from "../errors";
import { authenticate, parseJson } from "../request";
import { ChannelName, Filter, MAX_FILTER_BYTES, SUBPROTOCOL } from "../protocol";
import { SESSION_HEADER, type SessionInit } from "../../durable-objects/channel";

export const wsRoutes = new Hono<AppEnv>();

// Lets browser apps on allowed origins ask why a handshake failed (see the 426 check below).
wsRoutes.use("/ws/*", cors({ origin: (origin, c) => (originAllowed(origin, c.var.config.ALLOWED_ORIGINS) ? origin : null), allowHeaders: ["Authorization"], allowMethods: ["GET"] }));

export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  // Non-browser clients send no Origin; browsers always do, and it cannot be forged from a page.
  if (origin === undefined) return true;
  return allowed.includes("*") || allowed.includes(origin);
}

wsRoutes.get("/ws/:channel", async (c) => {
  const config = c.var.config;
  const channel = ChannelName.safeParse(c.req.param("channel"));
  if (!channel.success) throw new ApiError(400, "BAD_CHANNEL", "channel names are 1-128 of letters, digits and _ . : -");

  if (!originAllowed(c.req.header("origin"), config.ALLOWED_ORIGINS))
    throw new ApiError(403, "ORIGIN_NOT_ALLOWED", "this origin is not in ALLOWED_ORIGINS");

  const offered = (c.req.header("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  // Browsers fail the handshake unless the server echoes one offered protocol,
  // and the token entry must never be echoed, so notifiws.v1 has to be offered.
  if (offered.length > 0 && !offered.includes(SUBPROTOCOL))
    throw new ApiError(400, "BAD_SUBPROTOCOL", `offer the "${SUBPROTOCOL}" subprotocol alongside the token`);

  const claims = await authenticate(c.req.raw, config);
  if (!channelAllowed(channel.data, claims.channels, claims.sub))
    throw new ApiError(403, "CHANNEL_FORBIDDEN", `token does not allow channel ${channel.data}`);

  // Checked after auth on purpose: a plain GET with the same credentials is
  // how clients learn why a handshake failed (browsers hide the HTTP status).
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket")
    throw new ApiError(426, "UPGRADE_REQUIRED", "credentials are valid; this endpoint only accepts WebSocket upgrades");

  let since: number | undefined;
  const sinceRaw = c.req.query("since");
  if (sinceRaw !== undefined) {
    since = Number(sinceRaw);
    if (!/^\d+$/.test(sinceRaw) || !Number.isSafeInteger(since)) throw new ApiError(400, "BAD_SINCE", "since must be a non-negative integer seq");
  }

  let filter: Filter | undefined;
  const filterRaw = c.req.query("filter");
  if (filterRaw !== undefined) {
    if (filterRaw.length > MAX_FILTER_BYTES) throw new ApiError(400, "BAD_FILTER", `filter exceeds ${MAX_FILTER_BYTES} bytes`);
    const parsed = Filter.safeParse(parseJson(filterRaw, "BAD_FILTER", "filter"));
    if (!parsed.success) throw new ApiError(400, "BAD_FILTER", `invalid filter: ${parsed.error.issues.map((i) => `${i.path.join(".") || "filter"} ${i.message}`).join("; ")}`);
    filter = parsed.data;
  }

  const init: SessionInit = {
    channel: channel.data,
    sub: claims.sub,
    role: claims.role,
    exp: claims.exp,
    filter,
    since,
    echoProtocol: offered.includes(SUBPROTOCOL) ? SUBPROTOCOL : undefined,
  };
  const headers = new Headers(c.req.raw.headers);
  headers.set(SESSION_HEADER, JSON.stringify(init));
  // Never forward the credential further than needed.
  headers.delete("authorization");
  headers.delete("sec-websocket-protocol");
  const url = new URL(c.req.url);
  url.searchParams.delete("token");
  const stub = c.env.CHANNEL.get(c.env.CHANNEL.idFromName(channel.data));
  return stub.fetch(new Request(url.toString(), { method: "GET", headers }));
});
