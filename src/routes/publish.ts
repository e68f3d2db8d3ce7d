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

export const publishRoutes = new Hono<AppEnv>();

async function sha256Hex(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Max publish body, bytes. */
const MAX_PUBLISH_BYTES = 256 * 1024;

publishRoutes.post(
  "/api/channels/:channel/publish",
  bearerAuth<AppEnv>({
    verifyToken: async (token, c) => {
      const hashes = c.var.config.PUBLISH_KEY_HASHES;
      return hashes.length > 0 && hashes.includes(await sha256Hex(token));
    },
    noAuthenticationHeader: { message: errorBody("KEY_MISSING", "send the publish API key as Authorization: Bearer <key>") },
    invalidAuthenticationHeader: { message: errorBody("KEY_MISSING", "send the publish API key as Authorization: Bearer <key>") },
    invalidToken: { message: errorBody("KEY_INVALID", "publish API key is not valid") },
  }),
  async (c) => {
    const channel = ChannelName.safeParse(c.req.param("channel"));
    if (!channel.success) throw new ApiError(400, "BAD_CHANNEL", "channel names are 1-128 of letters, digits and _ . : -");
    const body = await c.req.text();
    if (body.length > MAX_PUBLISH_BYTES) throw new ApiError(413, "BODY_TOO_LARGE", `body exceeds ${MAX_PUBLISH_BYTES} bytes`);
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
    try {
      const result = await deliver(c.env, [event]);
      return c.json({ id: event.id, duplicate: result.duplicates > 0, headSeq: result.channels[channel.data]?.headSeq ?? 0 });
    } catch (err) {
      if (err instanceof DeliveryError) throw new ApiError(503, "CHANNEL_UNAVAILABLE", `${err.message}; retry with the same id`);
      throw err;
    }
  },
);
