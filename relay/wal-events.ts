/**
 * One event as WAL capture reads it: the logical message that
 * notifiws.wal_message() writes (db/functions/capture.sql) decoded into the
 * batch JSON the Worker ingests, and where it goes when it cannot be sent
 * now: the outbox (a channel the edge refuses, in order: relay/drain.ts
 * delivers it) or notifiws.dead_letter (an event the edge can never accept).
 */
import type pg from "pg";
import { log } from "../shared/log";
import { formatIssues } from "../shared/zod";
import { batchBody, EventHeader, eventJson } from "./event";
import { sendBatch, type SendHost } from "./send";

/** One decoded event, ready to send, with what the outbox would hold if it has to be spilled. */
export interface WalEvent {
  id: string;
  channel: string;
  json: string;
  bytes: number;
  row: { op: string; table: string; data: string | null; old: string | null; types: string | null; txid: string; committedAt: number };
}

/** The stream in order: events, and the end of each transaction that carried some. */
export type Item = { kind: "event"; event: WalEvent } | { kind: "commit"; endLsn: bigint };

/** How many items from the front make the next batch: whole items up to the caps (a transaction may span batches). */
export function batchSpan(items: readonly Item[], maxEvents: number, maxBytes: number): number {
  let take = 0;
  let events = 0;
  let bytes = 0;
  for (const item of items) {
    if (item.kind === "event") {
      if (events > 0 && (events + 1 > maxEvents || bytes + item.event.bytes > maxBytes)) break;
      events++;
      bytes += item.event.bytes;
    }
    take++;
  }
  return take;
}

/** The prefix notifiws.message_prefix() returns (db/functions/capture.sql). */
export const MESSAGE_PREFIX = "notifiws";

/** Reads one message of notifiws.wal_message(): a JSON header line, then the row, old row and types as jsonb text. */
export function decodeMessage(content: string, commitTime: number): WalEvent | { error: string } {
  const lines = content.split("\n");
  if (lines.length !== 4) return { error: `expected 4 lines, got ${lines.length}` };
  let header: unknown;
  try {
    header = JSON.parse(lines[0]!);
  } catch {
    return { error: "the header line is not JSON" };
  }
  const parsed = EventHeader.safeParse({ ...(header as object), committedAt: commitTime });
  if (!parsed.success) return { error: formatIssues(parsed.error.issues, { root: "event" }) };
  const h = parsed.data;
  const values = { data: lines[1] === "null" ? null : lines[1]!, old: lines[2] === "" ? null : lines[2]!, types: lines[3] === "null" ? null : lines[3]! };
  const json = eventJson(h, values);
  return {
    id: h.id,
    channel: h.channel,
    json,
    bytes: Buffer.byteLength(json, "utf8") + 1,
    row: { op: h.op, table: h.table ?? "", ...values, txid: h.txid ?? "0", committedAt: commitTime },
  };
}

/** Writes events to the outbox exactly as the outbox mode would have (same event ids), in the given order. */
export async function spill(client: pg.Client, events: WalEvent[]): Promise<void> {
  await client.query(
    `INSERT INTO notifiws.outbox (event_id, channel, op, table_name, data, old_data, types, txid, committed_at)
     SELECT u1, u2, u3, u4, u5, u6, u7, u8, u9
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::jsonb[], $8::xid8[], $9::timestamptz[])
            WITH ORDINALITY AS t(u1, u2, u3, u4, u5, u6, u7, u8, u9, n)
      ORDER BY n`,
    columns(events),
  );
}

/** Events the Worker can never accept, kept with the reason (id 0: they never had an outbox row). */
export async function walDeadLetter(client: pg.Client, events: WalEvent[], reason: string, host: SendHost): Promise<void> {
  await client.query(
    `INSERT INTO notifiws.dead_letter (id, event_id, channel, op, table_name, data, old_data, types, txid, committed_at, created_at, reason, failed_at)
     SELECT 0, u1, u2, u3, u4, u5, u6, u7, u8, u9, now(), $10::text, now()
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::jsonb[], $8::xid8[], $9::timestamptz[]) AS t(u1, u2, u3, u4, u5, u6, u7, u8, u9)`,
    [...columns(events), reason],
  );
  host.metrics.deadLettered += events.length;
  log("error", "events moved to notifiws.dead_letter", { count: events.length, eventIds: events.slice(0, 20).map((e) => e.id), reason });
}

function columns(events: WalEvent[]): unknown[] {
  return [
    events.map((e) => e.id),
    events.map((e) => e.channel),
    events.map((e) => e.row.op),
    events.map((e) => e.row.table),
    events.map((e) => e.row.data),
    events.map((e) => e.row.old),
    events.map((e) => e.row.types),
    events.map((e) => e.row.txid),
    events.map((e) => new Date(e.row.committedAt).toISOString()),
  ];
}

/** What became of events sent to the Worker. */
export type WalSendResult =
  | { kind: "stopped" }
  /** A 413 for the batch as a whole: take at most `cap` events next time. */
  | { kind: "smaller"; cap: number }
  | {
      kind: "done";
      stored: WalEvent[];
      /** Events of channels the edge could not store now: they go to the outbox, in order. */
      refusedChannels: WalEvent[];
      /** Events the edge can never accept. */
      deadLetters: { events: WalEvent[]; reason: string }[];
    };

/** Sends events until the Worker answered about each of them (send.ts retries everything else). */
export async function sendWalEvents(host: SendHost, events: WalEvent[]): Promise<WalSendResult> {
  let toSend = events;
  const deadLetters: { events: WalEvent[]; reason: string }[] = [];
  while (toSend.length > 0) {
    const batchId = crypto.randomUUID();
    const outcome = await sendBatch(
      host,
      batchId,
      batchBody(
        batchId,
        toSend.map((e) => e.json),
      ),
      toSend.length,
    );
    if (outcome.kind === "stopped") return outcome;
    if (outcome.kind === "delivered") return { kind: "done", stored: toSend, refusedChannels: [], deadLetters };
    if (outcome.kind === "partial") {
      // Every other channel was stored.
      const failed = new Set(outcome.failedChannels);
      return { kind: "done", stored: toSend.filter((e) => !failed.has(e.channel)), refusedChannels: toSend.filter((e) => failed.has(e.channel)), deadLetters };
    }
    if (outcome.kind === "event_too_large") {
      const ids = new Set(outcome.eventIds);
      const refused = toSend.filter((e) => ids.has(e.id));
      if (refused.length > 0) {
        deadLetters.push({ events: refused, reason: "EVENT_TOO_LARGE: the Worker refuses events over MAX_EVENT_BYTES" });
        toSend = toSend.filter((e) => !ids.has(e.id)); // nothing of the batch was applied: send the rest
        continue;
      }
    }
    // A 413 for the batch as a whole: send fewer; a lone refused event is dead-lettered.
    if (toSend.length > 1) return { kind: "smaller", cap: Math.max(1, Math.floor(toSend.length / 2)) };
    deadLetters.push({ events: toSend, reason: "the Worker refused the event as too large (413)" });
    toSend = [];
  }
  return { kind: "done", stored: [], refusedChannels: [], deadLetters };
}
