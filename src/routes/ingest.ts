/**
 * POST /internal/events: signed event batches from the relay. Everything is
 * validated before anything is applied; 200 means every channel object
 * stored its events, so the relay may delete them from the outbox.
 */
import { Hono } from "hono";
import type { AppEnv } from "../env";
import { deliver, DeliveryError, ReplayError, serializeEvent } from "../deliver";
import { parseJson } from "../request";
import { ApiError } from "../errors";
import { IngestBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, type IngestResult } from "../../shared/protocol";
import { verify } from "../../shared/signing";
import { formatIssues } from "../../shared/zod";

export const ingestRoutes = new Hono<AppEnv>();

ingestRoutes.post("/internal/events", async (c) => {
  const config = c.var.config;
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > config.INGEST_MAX_BYTES) throw new ApiError("BATCH_TOO_LARGE", `body exceeds ${config.INGEST_MAX_BYTES} bytes`);
  const raw = await c.req.arrayBuffer();
  if (raw.byteLength > config.INGEST_MAX_BYTES) throw new ApiError("BATCH_TOO_LARGE", `body exceeds ${config.INGEST_MAX_BYTES} bytes`);
  const body = new TextDecoder().decode(raw);

  const sig = await verify(config.INGEST_SECRETS, c.req.header(TIMESTAMP_HEADER), c.req.header(SIGNATURE_HEADER), body);
  if (!sig.ok) throw new ApiError(sig.code, sig.message, sig.code === "STALE_TIMESTAMP" ? { serverTime: Math.floor(Date.now() / 1000) } : undefined);

  const json = parseJson(body);
  const parsed = IngestBatch.safeParse(json);
  if (!parsed.success) {
    throw new ApiError("INVALID_BATCH", `invalid batch: ${formatIssues(parsed.error.issues, { max: 3 })}`);
  }
  const batch = parsed.data;
  if (batch.events.length > config.INGEST_MAX_EVENTS) throw new ApiError("TOO_MANY_EVENTS", `a batch may carry at most ${config.INGEST_MAX_EVENTS} events`);

  // Checked before anything is applied, so a refused batch leaves no trace and
  // the sender can move exactly these events aside and resend the rest.
  const events = batch.events.map((e) => serializeEvent(e));
  const oversize = events.filter((ev) => ev.storedBytes > config.MAX_EVENT_BYTES).map((ev) => ev.id);
  if (oversize.length > 0)
    throw new ApiError("EVENT_TOO_LARGE", `event(s) ${oversize.slice(0, 5).join(", ")} exceed MAX_EVENT_BYTES (${config.MAX_EVENT_BYTES} bytes)`, {
      eventIds: oversize,
    });

  try {
    const result = await deliver(c.env, events, batch.batchId, batch.gaps);
    return c.json({ batchId: batch.batchId, ...result } satisfies IngestResult);
  } catch (err) {
    if (err instanceof ReplayError) throw new ApiError("BATCH_REPLAYED", err.message);
    if (err instanceof DeliveryError)
      throw new ApiError("CHANNEL_UNAVAILABLE", `${err.message}; resend only the failed channels' events`, {
        failedChannels: err.failedChannels,
        channels: err.stored,
      });
    throw err;
  }
});
