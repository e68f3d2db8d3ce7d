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
 * pgoutput. Its acknowledgements are not used: it confirms what was received
 * (not what the Worker stored), and LSN + 1, which can skip a transaction
 * whose commit record starts where the previous one ended. The standby
 * status update is written here, as Postgres's apply worker writes it
 * (protocol-replication.html, "Standby status update"). A channel the edge
 * fails to store is spilled to notifiws.outbox, its later events behind it,
 * so the outbox drain delivers them in order with its per-channel backoff
 * (relay/drain.ts) and the slot keeps moving for every other channel.
 */
import type pg from "pg";
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from "pg-logical-replication";
import { errorFields, log } from "../shared/log";
import type { SendHost } from "./send";
import { batchSpan, decodeMessage, MESSAGE_PREFIX, sendWalEvents, spill, walDeadLetter, type Item } from "./wal-events";
import { maxLsn, parseLsn, standbyStatus } from "./lsn";

export interface WalHost extends SendHost {
  /** The leader's (non-replication) connection, for spilling and dead-lettering. */
  client: () => pg.Client | undefined;
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** The outbox drain should look now (events were spilled). */
  kickOutbox: () => void;
}

/** What pg-logical-replication keeps private: the connection whose stream is paused, destroyed and written to. */
interface ReplicationInternals {
  _connection?: { stream?: { pause(): void; resume(): void; destroy(): void; end(): void }; sendCopyFromChunk(b: Buffer): void } | null;
}

export class WalStream {
  /** Everything before this LSN is handled: the slot may forget it. */
  confirmed = 0n;
  /** Channels that have rows in the outbox: their events go there too, behind them. */
  spilled = new Set<string>();
  private readonly items: Item[] = [];
  private bytes = 0;
  /** The transaction being received: its commit time and how many events it carried so far. */
  private tx: { commitTime: number; events: number } | undefined;
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

  /**
   * Ends the stream without waiting for the server. `graceful` (a stop) first
   * sends the confirmed position, so the next leader does not resend what this
   * one delivered; otherwise the socket is destroyed, and the next leader resends
   * since the last status (one tick at most: the Worker drops repeats by event id).
   */
  close(graceful = false): void {
    const service = this.service;
    if (!service) return;
    const stream = internals(service)._connection?.stream;
    if (graceful) this.status(false, true);
    this.service = undefined;
    if (graceful && stream) {
      stream.end(); // flushes the status, then closes
      setTimeout(() => stream.destroy(), 1000).unref();
    } else stream?.destroy();
    service.removeAllListeners();
    // Its client's late errors (the socket was destroyed on purpose) are re-emitted on the service: keep a listener.
    service.on("error", () => undefined);
    void service.stop().catch(() => undefined);
    this.fail(new Error("stopped"));
  }

  /** Resolves when no batch is in flight (a stop lets the one in flight finish, then confirms it). */
  async settled(): Promise<void> {
    await this.delivering?.catch(() => undefined);
  }

  /** Bytes decoded but not yet handled. */
  get pendingBytes(): number {
    return this.bytes;
  }

  /** Events decoded but not yet handled. */
  get pendingEvents(): number {
    return this.items.reduce((n, i) => n + (i.kind === "event" ? 1 : 0), 0);
  }

  private fail(err: Error): void {
    const f = this.failure;
    this.failure = undefined;
    f?.(err);
  }

  private onMessage(msg: Pgoutput.Message): void {
    switch (msg.tag) {
      case "begin":
        this.tx = { commitTime: Number((msg.commitTime as bigint) / 1000n), events: 0 };
        return;
      case "message": {
        if (!this.tx || !msg.transactional || msg.prefix !== MESSAGE_PREFIX) return;
        const event = decodeMessage(Buffer.from(msg.content).toString("utf8"), this.tx.commitTime);
        if ("error" in event) {
          log("error", "a logical message with the notifiws prefix could not be read; skipped", { reason: event.error, lsn: msg.messageLsn });
          return;
        }
        // Decoding sends a transaction only once it committed, so its events can go before its end
        // arrives: a huge transaction then streams through the buffer instead of filling memory.
        this.tx.events++;
        this.oldestPendingAt ??= this.tx.commitTime;
        this.items.push({ kind: "event", event });
        this.bytes += event.bytes;
        // Backpressure: stop reading while too much waits; the walsender then waits on TCP and the slot keeps the WAL.
        if (this.bytes > this.host.config.RELAY_WAL_BUFFER_BYTES && !this.paused) {
          this.paused = true;
          internals(this.service)._connection?.stream?.pause();
        }
        this.deliver();
        return;
      }
      case "commit": {
        const tx = this.tx;
        this.tx = undefined;
        const endLsn = parseLsn(msg.commitEndLsn ?? "0/0");
        // The slot moves past a transaction only once every event before its end is handled.
        if (tx && tx.events > 0) this.items.push({ kind: "commit", endLsn });
        // A transaction without events (Postgres before 15 sends empty ones): nothing to wait for.
        else if (this.items.length === 0) this.confirmed = maxLsn(this.confirmed, endLsn);
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

  /**
   * Sends a standby status update when the position moved or when asked, and
   * every RELAY_SLOT_STATUS_MS asks for a keepalive: its position lets an idle
   * slot move past WAL other tables wrote, so a quiet channel does not make
   * Postgres keep hours of WAL (the walsender sends none on its own while the
   * client keeps talking).
   */
  private status(requestReply: boolean, force = false): void {
    const conn = internals(this.service)._connection;
    if (!conn) return;
    const now = Date.now();
    // Also keeps the server seeing the consumer alive (wal_sender_timeout defaults to 60 s).
    const due = now - this.lastStatus >= this.host.config.RELAY_SLOT_STATUS_MS;
    if (!force && !requestReply && !due && this.confirmed === this.reportedFlush) return;
    this.lastStatus = now;
    this.reportedFlush = this.confirmed;
    conn.sendCopyFromChunk(standbyStatus(this.confirmed, now, requestReply || due));
  }

  /** Runs the delivery loop; it restarts itself only after a pass that sent (else it would spin on promise callbacks, starving timers). */
  private deliver(): void {
    this.delivering ??= this.deliverLoop().then((progressed) => {
      this.delivering = undefined;
      if (progressed && this.items.length > 0 && this.service && !this.host.stopping()) this.deliver();
    });
  }

  /** Delivers until nothing is pending; false when a pass could not send (stopping, or no longer the leader). */
  private async deliverLoop(): Promise<boolean> {
    try {
      while (this.items.length > 0 && this.service && !this.host.stopping()) {
        if (this.host.config.RELAY_COALESCE_MS > 0) await this.host.sleep(this.host.config.RELAY_COALESCE_MS);
        if (!(await this.host.exclusive(() => this.deliverOnce()))) return false;
      }
      return true;
    } catch (err) {
      log("warn", "WAL delivery failed; the stream starts over from the slot's confirmed position", errorFields(err));
      this.fail(err as Error);
      return false;
    }
  }

  /** Handles the oldest events: sends, spills or dead-letters each, then confirms the transactions they complete; false when nothing could be sent. */
  private async deliverOnce(): Promise<boolean> {
    const client = this.host.client();
    if (!client) throw new Error("no leader connection");
    const take = batchSpan(this.items, this.eventCap, this.host.config.RELAY_BATCH_MAX_BYTES);
    const taken = this.items.slice(0, take).flatMap((i) => (i.kind === "event" ? [i.event] : []));
    // A channel with rows in the outbox queues behind them; the rest is sent.
    const queued = taken.filter((e) => this.spilled.has(e.channel));
    const result = await sendWalEvents(
      this.host,
      taken.filter((e) => !this.spilled.has(e.channel)),
    );
    if (result.kind === "stopped") return false;
    if (result.kind === "smaller") {
      this.eventCap = result.cap; // the caps apply on the next pass
      return true;
    }
    this.eventCap = Math.min(this.host.config.RELAY_BATCH_MAX_EVENTS, this.eventCap * 2);
    const order = new Map(taken.map((e, i) => [e, i]));
    const toSpill = [...queued, ...result.refusedChannels].sort((x, y) => order.get(x)! - order.get(y)!);
    if (toSpill.length > 0) {
      await spill(client, toSpill);
      for (const e of toSpill) this.spilled.add(e.channel);
      this.host.kickOutbox();
    }
    for (const d of result.deadLetters) await walDeadLetter(client, d.events, d.reason, this.host);
    // Everything taken is handled: forget it, and confirm the last transaction it completed.
    for (const item of this.items.splice(0, take)) {
      if (item.kind === "commit") this.confirmed = maxLsn(this.confirmed, item.endLsn);
      else this.bytes -= item.event.bytes;
    }
    const now = Date.now();
    for (const e of result.stored) this.host.metrics.commitToAck.observe(Math.max(0, now - e.row.committedAt) / 1000);
    this.host.metrics.recordDelivered(result.stored.length);
    const next = this.items.find((i) => i.kind === "event");
    this.oldestPendingAt = next?.kind === "event" ? next.event.row.committedAt : undefined;
    if (this.paused && this.bytes < this.host.config.RELAY_WAL_BUFFER_BYTES / 2) {
      this.paused = false;
      internals(this.service)._connection?.stream?.resume();
    }
    // The new position goes out with the next status tick (every 200 ms): one write per tick, not per batch.
    return true;
  }
}

function internals(service: LogicalReplicationService | undefined): ReplicationInternals {
  return (service ?? {}) as ReplicationInternals;
}
