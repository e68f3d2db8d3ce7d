/**
 * WAL capture: the relay reads the logical messages the compiled trigger
 * functions write in 'wal' mode (notifiws.wal_message(), db/functions/capture.sql)
 * from a logical replication slot (pgoutput with `messages true`), in commit
 * order, and POSTs them in signed batches. The slot's confirmed position
 * moves only past transactions whose every event the Worker stored, spilled
 * to the outbox or dead-lettered, so a crash anywhere replays from there and
 * the Worker dedupes by event id.
 *
 * pg-logical-replication holds the replication connection and parses
 * pgoutput. Its acknowledgements are not used: it confirms what was
 * received (not what the Worker stored), and it confirms LSN + 1, which can
 * skip a transaction whose commit record starts exactly where the previous
 * one ended (decoding skips commits that start before the confirmed
 * position). The standby status update is written here, as Postgres's own
 * apply worker writes it (protocol-replication.html, "Standby status update").
 *
 * A channel the edge fails to store is spilled to notifiws.outbox, and its
 * later events follow it there while it has rows, so the outbox drain
 * delivers them in order with its per-channel backoff (relay/drain.ts) and
 * the slot keeps moving for every other channel.
 */
import type pg from "pg";
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from "pg-logical-replication";
import { errorFields, log } from "../shared/log";
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
type Item = { kind: "event"; event: WalEvent } | { kind: "commit"; endLsn: bigint };

export interface WalHost extends SendHost {
  /** The leader's (non-replication) connection, for spilling and dead-lettering. */
  client: () => pg.Client | undefined;
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** The outbox drain should look now (events were spilled). */
  kickOutbox: () => void;
}

/** What pg-logical-replication keeps private: the connection whose stream is paused, destroyed and written to. */
interface ReplicationInternals {
  _connection?: { stream?: { pause(): void; resume(): void; destroy(): void }; sendCopyFromChunk(b: Buffer): void } | null;
}

const POSTGRES_EPOCH_MS = 946_684_800_000;
/** A status update at least this often, so the server sees the consumer alive (wal_sender_timeout defaults to 60 s). */
const STATUS_EVERY_MS = 10_000;

export class WalStream {
  /** Everything before this LSN is handled: the slot may forget it. */
  confirmed = 0n;
  /** Channels that have rows in the outbox: their events go there too, behind them. */
  spilled = new Set<string>();
  private readonly items: Item[] = [];
  private bytes = 0;
  private tx: { commitTime: number; events: WalEvent[] } | undefined;
  private service: LogicalReplicationService | undefined;
  private paused = false;
  private delivering: Promise<void> | undefined;
  private failure: ((err: Error) => void) | undefined;
  private eventCap: number;
  private lastStatus = 0;
  private reportedFlush = -1n;
  /** When the oldest event not yet handled was committed (ms), for /metrics. */
  oldestPendingAt: number | undefined;

  constructor(
    private readonly host: WalHost,
    private readonly slot: string,
  ) {
    this.eventCap = host.config.RELAY_BATCH_MAX_EVENTS;
  }

  /**
   * Streams until stopped or, with `until`, until everything before that LSN
   * is handled (draining a slot that is being retired). Rejects when the
   * stream fails; the caller's session starts over.
   */
  async run(opts: { until?: bigint } = {}): Promise<void> {
    const cfg = this.host.config;
    const service = new LogicalReplicationService(
      {
        connectionString: cfg.DATABASE_URL,
        application_name: "notifiws-relay-wal",
        keepAlive: true,
        keepAliveInitialDelayMillis: 10_000,
        connectionTimeoutMillis: 10_000,
      },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service = service;
    let done!: () => void;
    const finished = new Promise<void>((resolve, reject) => {
      done = resolve;
      this.failure = reject;
    });
    service.on("data", (lsn: string, msg: Pgoutput.Message) => {
      try {
        this.onMessage(msg);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    service.on("heartbeat", (lsn: string, _ts: number, reply: boolean) => this.onKeepalive(parseLsn(lsn), reply));
    service.on("error", (err: Error) => this.fail(err));
    const timer = setInterval(() => {
      if (opts.until !== undefined && this.items.length === 0 && !this.tx && this.confirmed >= opts.until) done();
      // While retiring, ask for keepalives: they carry the position the walsender has read up to.
      else this.status(opts.until !== undefined);
    }, 200);
    try {
      const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [this.slot], messages: true });
      const subscribed = service.subscribe(plugin, this.slot, "0/0").then(
        () => this.fail(new Error("the replication stream ended")),
        (err: Error) => this.fail(err),
      );
      void subscribed;
      await finished;
    } finally {
      clearInterval(timer);
      this.failure = undefined;
      this.close();
      await this.delivering?.catch(() => undefined);
    }
  }

  /** Ends the stream without waiting for the server (stop, or the session failed). */
  close(): void {
    const service = this.service;
    if (!service) return;
    this.service = undefined;
    internals(service)._connection?.stream?.destroy();
    service.removeAllListeners();
    // Its client's late errors (the socket was destroyed on purpose) are re-emitted on the service: keep a listener.
    service.on("error", () => undefined);
    void service.stop().catch(() => undefined);
    this.fail(new Error("stopped"));
  }

  /** Bytes decoded but not yet handled. */
  get pendingBytes(): number {
    return this.bytes;
  }

  /** Events decoded but not yet handled, and whether a transaction is being received. */
  get pendingEvents(): number {
    return this.items.reduce((n, i) => n + (i.kind === "event" ? 1 : 0), this.tx?.events.length ?? 0);
  }

  private fail(err: Error): void {
    const f = this.failure;
    this.failure = undefined;
    f?.(err);
  }

  private onMessage(msg: Pgoutput.Message): void {
    switch (msg.tag) {
      case "begin":
        this.tx = { commitTime: Number((msg.commitTime as bigint) / 1000n), events: [] };
        return;
      case "message": {
        if (!this.tx || !msg.transactional || msg.prefix !== MESSAGE_PREFIX) return;
        const event = decodeMessage(Buffer.from(msg.content).toString("utf8"), this.tx.commitTime);
        if ("error" in event) {
          log("error", "a logical message with the notifiws prefix could not be read; skipped", { reason: event.error, lsn: msg.messageLsn });
          return;
        }
        this.tx.events.push(event);
        return;
      }
      case "commit": {
        const tx = this.tx;
        this.tx = undefined;
        const endLsn = parseLsn(msg.commitEndLsn ?? "0/0");
        if (!tx || tx.events.length === 0) {
          // A transaction without events (Postgres before 15 sends empty ones): nothing to wait for.
          if (this.items.length === 0) this.confirmed = maxLsn(this.confirmed, endLsn);
          return;
        }
        this.oldestPendingAt ??= tx.commitTime;
        for (const event of tx.events) {
          this.items.push({ kind: "event", event });
          this.bytes += event.bytes;
        }
        this.items.push({ kind: "commit", endLsn });
        // Backpressure: stop reading while too much waits; the walsender then waits on TCP and the slot keeps the WAL.
        if (this.bytes > this.host.config.RELAY_WAL_BUFFER_BYTES && !this.paused) {
          this.paused = true;
          internals(this.service)._connection?.stream?.pause();
        }
        this.deliver();
        return;
      }
      default:
        return; // relations, types, origins: the publication has no tables, so no row changes arrive
    }
  }

  /** A keepalive carries the position the walsender has read to: with nothing pending, all before it is handled. */
  private onKeepalive(lsn: bigint, reply: boolean): void {
    if (this.items.length === 0 && !this.tx) this.confirmed = maxLsn(this.confirmed, lsn);
    if (reply) this.status(false, true);
  }

  /** Sends a standby status update when the position moved, every STATUS_EVERY_MS, or when asked. */
  private status(requestReply: boolean, force = false): void {
    const conn = internals(this.service)._connection;
    if (!conn) return;
    const now = Date.now();
    if (!force && !requestReply && this.confirmed === this.reportedFlush && now - this.lastStatus < STATUS_EVERY_MS) return;
    this.lastStatus = now;
    this.reportedFlush = this.confirmed;
    conn.sendCopyFromChunk(standbyStatus(this.confirmed, now, requestReply));
  }

  private deliver(): void {
    this.delivering ??= this.deliverLoop().finally(() => {
      this.delivering = undefined;
      if (this.items.length > 0 && this.service) this.deliver();
    });
  }

  private async deliverLoop(): Promise<void> {
    try {
      while (this.items.length > 0 && this.service && !this.host.stopping()) {
        if (this.host.config.RELAY_COALESCE_MS > 0) await this.host.sleep(this.host.config.RELAY_COALESCE_MS);
        await this.host.exclusive(() => this.deliverOnce());
      }
    } catch (err) {
      log("warn", "WAL delivery failed; the stream starts over from the slot's confirmed position", errorFields(err));
      this.fail(err as Error);
    }
  }

  /** Handles the oldest events: sends, spills or dead-letters each, then confirms the transactions they complete. */
  private async deliverOnce(): Promise<void> {
    const client = this.host.client();
    if (!client) throw new Error("no leader connection");
    // Take whole items from the front up to the batch caps (a transaction may span batches).
    let take = 0;
    let events = 0;
    let bytes = 0;
    for (const item of this.items) {
      if (item.kind === "event") {
        if (events > 0 && (events + 1 > this.eventCap || bytes + item.event.bytes > this.host.config.RELAY_BATCH_MAX_BYTES)) break;
        events++;
        bytes += item.event.bytes;
      }
      take++;
    }
    const taken = this.items.slice(0, take).flatMap((i) => (i.kind === "event" ? [i.event] : []));
    const toSpill = taken.filter((e) => this.spilled.has(e.channel));
    let toSend = taken.filter((e) => !this.spilled.has(e.channel));
    const deadLetter: { events: WalEvent[]; reason: string }[] = [];
    while (toSend.length > 0) {
      const batchId = crypto.randomUUID();
      const outcome = await sendBatch(
        this.host,
        batchId,
        batchBody(
          batchId,
          toSend.map((e) => e.json),
        ),
        toSend.length,
      );
      if (outcome.kind === "stopped") return;
      if (outcome.kind === "delivered") {
        this.eventCap = Math.min(this.host.config.RELAY_BATCH_MAX_EVENTS, this.eventCap * 2);
        break;
      }
      if (outcome.kind === "partial") {
        // Every other channel was stored; the failing ones go to the outbox, in order, with their own backoff.
        const failed = new Set(outcome.failedChannels);
        toSpill.push(...toSend.filter((e) => failed.has(e.channel)));
        break;
      }
      if (outcome.kind === "event_too_large") {
        const ids = new Set(outcome.eventIds);
        const refused = toSend.filter((e) => ids.has(e.id));
        if (refused.length > 0) {
          deadLetter.push({ events: refused, reason: "EVENT_TOO_LARGE: the Worker refuses events over MAX_EVENT_BYTES" });
          toSend = toSend.filter((e) => !ids.has(e.id)); // nothing of the batch was applied: send the rest
          continue;
        }
      }
      // A 413 for the batch as a whole: send fewer; a lone refused event is dead-lettered.
      if (toSend.length === 1) {
        deadLetter.push({ events: toSend, reason: "the Worker refused the event as too large (413)" });
        break;
      }
      this.eventCap = Math.max(1, Math.floor(toSend.length / 2));
      return; // the caps apply on the next pass
    }
    if (toSpill.length > 0) {
      toSpill.sort((a, b) => taken.indexOf(a) - taken.indexOf(b));
      await spill(client, toSpill);
      for (const e of toSpill) this.spilled.add(e.channel);
      this.host.kickOutbox();
    }
    for (const d of deadLetter) await walDeadLetter(client, d.events, d.reason, this.host);
    // Everything taken is handled: forget it, and confirm the last transaction it completed.
    const sent = taken.length - toSpill.length - deadLetter.reduce((n, d) => n + d.events.length, 0);
    for (const item of this.items.splice(0, take)) {
      if (item.kind === "commit") this.confirmed = maxLsn(this.confirmed, item.endLsn);
      else this.bytes -= item.event.bytes;
    }
    const now = Date.now();
    for (const e of taken) this.host.metrics.commitToAck.observe(Math.max(0, now - e.row.committedAt) / 1000);
    this.host.metrics.recordDelivered(sent);
    const next = this.items.find((i) => i.kind === "event");
    this.oldestPendingAt = next?.kind === "event" ? next.event.row.committedAt : undefined;
    if (this.paused && this.bytes < this.host.config.RELAY_WAL_BUFFER_BYTES / 2) {
      this.paused = false;
      internals(this.service)._connection?.stream?.resume();
    }
    this.status(false);
  }
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
async function spill(client: pg.Client, events: WalEvent[]): Promise<void> {
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
async function walDeadLetter(client: pg.Client, events: WalEvent[], reason: string, host: SendHost): Promise<void> {
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

function internals(service: LogicalReplicationService | undefined): ReplicationInternals {
  return (service ?? {}) as ReplicationInternals;
}

/** "16/B374D848" → the 64-bit position. */
export function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

function maxLsn(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** A standby status update ('r'): written, flushed and applied positions (all the confirmed one), the clock, and whether to reply. */
export function standbyStatus(confirmed: bigint, nowMs: number, requestReply: boolean): Buffer {
  const b = Buffer.alloc(34);
  b.write("r", 0, "latin1");
  b.writeBigUInt64BE(confirmed, 1);
  b.writeBigUInt64BE(confirmed, 9);
  b.writeBigUInt64BE(confirmed, 17);
  b.writeBigInt64BE(BigInt(nowMs - POSTGRES_EPOCH_MS) * 1000n, 25);
  b.writeUInt8(requestReply ? 1 : 0, 33);
  return b;
}
