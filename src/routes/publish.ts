/**
 * POST /api/channels/:channel/publish: for backends that are not Postgres.
 * API keys are configured as SHA-256 hashes, so the Worker never stores them.
 */
import { Hono } from "hono";
import type { AppEnv } from "../env";
import { deliver, DeliveryError, serializeEvent } from "../deliver";
import { parseJson } from "../request";
import { ApiError } from "../errors";
import { PublishRequest, type ChangeEvent } from "../../shared/protocol";
import { channelAllowed } from "../../shared/channels";
import { utf8Length } from "../../shared/limits";
import { formatIssues } from "../../shared/zod";
import { bearerKey } from "../middleware/bearer-key";
import { channelParam } from "../middleware/channel-param";

export const publishRoutes = new Hono<AppEnv>();

const publishKey = bearerKey({
  what: "publish API key",
  missingCode: "KEY_MISSING",
  invalidCode: "KEY_INVALID",
  keys: (c) => c.var.config.PUBLISH_KEY_HASHES.map((k) => k.hash),
  hashed: true,
});

publishRoutes.post("/api/channels/:channel/publish", publishKey, channelParam(), async (c) => {
  const channel = c.var.channel;
  // A key limited to channel patterns is valid, but not for this channel: 403, not 401.
  const key = c.var.config.PUBLISH_KEY_HASHES[c.var.keyIndex]!;
  if (!channelAllowed(channel, key.channels, undefined)) throw new ApiError("KEY_FORBIDDEN_CHANNEL", `this publish key may not publish to ${channel}`);
  const body = await c.req.text();
  const max = c.var.config.PUBLISH_MAX_BYTES;
  if (utf8Length(body) > max) throw new ApiError("BODY_TOO_LARGE", `body exceeds PUBLISH_MAX_BYTES (${max} bytes)`);
  const json = parseJson(body);
  const parsed = PublishRequest.safeParse(json);
  if (!parsed.success) throw new ApiError("INVALID_EVENT", `invalid event: ${formatIssues(parsed.error.issues)}`);
  const event: ChangeEvent = {
    id: parsed.data.id ?? crypto.randomUUID(),
    channel,
    op: "publish",
    table: parsed.data.table,
    data: parsed.data.data,
    committedAt: Date.now(),
  };
  // An id the caller chose may come again with a new commit time (a retry): kept for the whole dedupe window.
  const serialized = serializeEvent(event, parsed.data.id !== undefined);
  if (serialized.storedBytes > c.var.config.MAX_EVENT_BYTES)
    throw new ApiError("EVENT_TOO_LARGE", `event ${event.id} exceeds MAX_EVENT_BYTES (${c.var.config.MAX_EVENT_BYTES} bytes)`, { eventIds: [event.id] });
  try {
    const result = await deliver(c.env, [serialized]);
    return c.json({ id: event.id, duplicate: result.duplicates > 0, headSeq: result.channels[channel]?.headSeq ?? 0 });
  } catch (err) {
    if (err instanceof DeliveryError) throw new ApiError("CHANNEL_UNAVAILABLE", `${err.message}; retry with the same id`);
    throw err;
  }
});
