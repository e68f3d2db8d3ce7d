/**
 * POST /api/channels/:channel/publish: for backends that are not Postgres.
 * API keys are configured as SHA-256 hashes, so the Worker never stores them.
 */
import { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import type { AppEnv } from "../app";
import { deliver, DeliveryError } from "../deliver";
import { parseJson } from "../request";
import { ApiError, errorBody } from "../errors";
import { ChannelName, PublishRequest, type ChangeEvent } from "../protocol";
import { channelAllowed } from "../channels";
import { SEQ_FIELD_BYTES, utf8Length } from "../limits";

export const publishRoutes = new Hono<AppEnv>();

async function sha256Hex(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

publishRoutes.post(
  "/api/channels/:channel/publish",
  bearerAuth<AppEnv>({
    verifyToken: async (token, c) => {
      const keys = c.var.config.PUBLISH_KEY_HASHES;
      if (keys.length === 0) return false;
      const hash = await sha256Hex(token);
      const key = keys.find((k) => k.hash === hash);
      if (!key) return false;
      // A key limited to channel patterns is valid, but not for this channel: 403, not 401.
      const channel = c.req.param("channel") ?? "";
      if (!channelAllowed(channel, key.channels, undefined))
        throw new ApiError(403, "KEY_FORBIDDEN_CHANNEL", `this publish key may not publish to ${channel.slice(0, 128)}`);
      return true;
    },
    noAuthenticationHeader: { message: errorBody("KEY_MISSING", "send the publish API key as Authorization: Bearer <key>") },
    invalidAuthenticationHeader: { message: errorBody("KEY_MISSING", "send the publish API key as Authorization: Bearer <key>") },
    invalidToken: { message: errorBody("KEY_INVALID", "publish API key is not valid") },
  }),
  async (c) => {
    const channel = ChannelName.safeParse(c.req.param("channel"));
    if (!channel.success) throw new ApiError(400, "BAD_CHANNEL", "channel names are 1-128 of letters, digits and _ . : -");
    const body = await c.req.text();
    const max = c.var.config.PUBLISH_MAX_BYTES;
    if (utf8Length(body) > max) throw new ApiError(413, "BODY_TOO_LARGE", `body exceeds PUBLISH_MAX_BYTES (${max} bytes)`);
    const json = parseJson(body);
    const parsed = PublishRequest.safeParse(json);
    if (!parsed.success) throw new ApiError(400, "INVALID_EVENT", `invalid event: ${parsed.error.issues.map((i) => `${i.path.join(".") || "body"} ${i.message}`).join("; ")}`);
    const event: ChangeEvent = {
      id: parsed.data.id ?? crypto.randomUUID(),
      channel: channel.data,
      op: "publish",
      table: parsed.data.table,
      data: parsed.data.data,
      committedAt: Date.now(),
    };
    const eventBytes = utf8Length(JSON.stringify(event)) + SEQ_FIELD_BYTES;
    if (eventBytes > c.var.config.MAX_EVENT_BYTES)
      throw new ApiError(413, "EVENT_TOO_LARGE", `event ${event.id} exceeds MAX_EVENT_BYTES (${c.var.config.MAX_EVENT_BYTES} bytes)`, { eventIds: [event.id] });
    try {
      const result = await deliver(c.env, [event]);
      return c.json({ id: event.id, duplicate: result.duplicates > 0, headSeq: result.channels[channel.data]?.headSeq ?? 0 });
    } catch (err) {
      if (err instanceof DeliveryError) throw new ApiError(503, "CHANNEL_UNAVAILABLE", `${err.message}; retry with the same id`);
      throw err;
    }
  },
);
