/**
 * The relay: one dedicated Postgres connection that wins the leader election,
 * sets the capture mode (capture.ts), has drain.ts deliver notifiws.outbox
 * and, in wal mode, wal.ts stream the replication slot, in signed batches to
 * the Worker, forgetting events only after the Worker stored them.
 * Connecting, reconnecting and catching up happen here, in one place.
 *
 * Failure handling, in one place each:
 * - the connection: every statement has a server-side statement_timeout and a
 *   client-side deadline; any failure destroys the socket (never awaiting a
 *   query over a dead connection) and the session starts over with backoff,
 *   re-LISTENs and catches up;
 * - leadership: see leader.ts (heartbeat + takeover of a stuck leader);
 * - one channel failing at the edge: see drain.ts (its rows wait, in order,
 *   with their own backoff, while every other channel keeps flowing).
 */
import pg from "pg";
import { errorFields, log } from "../shared/log";
import { fullJitter } from "../shared/backoff";
import type { RelayConfig } from "./config";
import { currentLsn, outboxChannels, prepareCapture, retireSlot, switchToWal, waitForOlderTransactions, type CapturePlan } from "./capture";
import { Drain } from "./drain";
import { Leadership } from "./leader";
import { readBacklog, RelayMetrics, type Backlog } from "./metrics";
import { requireSchema, SchemaMissing } from "./schema";
import { WalStream } from "./wal";
import { sendPendingGaps } from "./gaps";

/** A session that stayed up this long resets the reconnect backoff. */
const STABLE_SESSION_MS = 30_000;
/** Client-side deadline beyond the server's statement_timeout before the socket is destroyed. */
const CLIENT_DEADLINE_MARGIN_MS = 1000;
/** How long a graceful stop waits for Postgres to acknowledge the session's end. */
const GRACEFUL_END_MS = 1000;
/** wal mode: the outbox only holds spilled channels and rows from before the switch; a slow look is enough. */
const WAL_MODE_OUTBOX_POLL_MS = 1000;

export class Relay {
  readonly metrics = new RelayMetrics();
  private client: pg.Client | undefined;
  private stopping = false;
  private readonly sleepers = new Set<() => void>();
  private supervisor: Promise<void> | undefined;
  private readonly drain: Drain;
  private wal: WalStream | undefined;
  /** One delivery at a time across the outbox drain and the WAL stream, so a spilled channel stays in order. */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly config: RelayConfig) {
    this.drain = new Drain({
      config,
      metrics: this.metrics,
      client: () => this.client,
      stopping: () => this.stopping,
      sleep: (ms) => this.sleep(ms),
      exclusive: (fn) => this.exclusive(fn),
      passed: async (client) => {
        if (this.wal) this.wal.spilled = await outboxChannels(client);
      },
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(fn, fn);
    this.turn = run.catch(() => undefined);
    return run;
  }

  /** Starts the connect/lead/drain loop in the background. */
  start(): void {
    this.supervisor ??= this.supervise();
  }

  /**
   * Graceful stop (SIGTERM): finish the batch in flight, release the lock by
   * closing the session, return when everything is down.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const wake of this.sleepers) wake();
    await this.drain.settled();
    await this.wal?.settled();
    this.wal?.close(true);
    const c = this.client;
    if (c) {
      if (this.metrics.leader) await c.query("SELECT pg_advisory_unlock($1)", [this.config.RELAY_LOCK_KEY]).catch(() => undefined);
      // end() waits for the server; over a dead connection it would wait forever.
      await Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, GRACEFUL_END_MS))]);
      destroy(c);
    }
    await this.supervisor?.catch(() => undefined);
  }

  /** Events read from the slot that the Worker has not yet stored (wal mode). */
  walPending(): number {
    return this.wal?.pendingEvents ?? 0;
  }

  /** Rows waiting and the age of the oldest; in wal mode, the slot's retained WAL: for /metrics. */
  async backlog(): Promise<Backlog | undefined> {
    if (!this.client || !this.metrics.connected) return undefined;
    return readBacklog(this.client, this.config.RELAY_SLOT, this.wal);
  }

  // -------------------------------------------------------------------------
  // Connection supervision: connect, elect, listen, catch up; on any failure
  // destroy the connection, back off with full jitter and do it all again.
  // -------------------------------------------------------------------------

  private async supervise(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      const began = Date.now();
      try {
        await this.session();
      } catch (err) {
        if (this.stopping) break;
        if (err instanceof SchemaMissing) log("error", err.message, { code: err.code });
        else log("warn", "postgres session ended", errorFields(err));
      }
      if (this.stopping) break;
      this.metrics.reconnects++;
      attempt = Date.now() - began > STABLE_SESSION_MS ? 0 : attempt + 1;
      await this.sleep(fullJitter(attempt, this.config.RELAY_BACKOFF_BASE_MS, this.config.RELAY_BACKOFF_MAX_MS));
    }
  }

  private async session(): Promise<void> {
    const cfg = this.config;
    const client = new pg.Client({
      connectionString: cfg.DATABASE_URL,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: "notifiws-relay",
      connectionTimeoutMillis: 10_000,
      // Server side: no drain statement runs longer than this.
      statement_timeout: cfg.RELAY_STATEMENT_TIMEOUT_MS,
      // Client side: a statement lost on a half-open connection fails too (then the socket is destroyed).
      query_timeout: cfg.RELAY_STATEMENT_TIMEOUT_MS + CLIENT_DEADLINE_MARGIN_MS,
    });
    let fail!: (err: Error) => void;
    const ended = new Promise<never>((_, reject) => (fail = reject));
    ended.catch(() => undefined);
    const race = <T>(p: Promise<T>) => Promise.race([p, ended]);
    client.on("error", (err) => fail(err));
    client.on("end", () => fail(new Error("connection closed")));
    const timers: NodeJS.Timeout[] = [];
    let onEnd = () => {};
    try {
      await race(client.connect());
      this.client = client;
      this.metrics.connected = true;
      log("info", "connected to postgres");
      await race(requireSchema(client));

      // Standby until the lock is ours; meanwhile replace a leader that stopped making progress.
      const leadership = new Leadership(client, cfg.RELAY_LOCK_KEY, cfg.RELAY_TAKEOVER_MS);
      while (!this.stopping) {
        if (await race(leadership.tryAcquire())) break;
        if (await race(leadership.watch())) this.metrics.takeovers++;
        await race(this.sleep(cfg.RELAY_STANDBY_POLL_MS));
      }
      if (this.stopping) return;
      this.metrics.leader = true;
      log("info", "leader lock acquired; draining", { holder: leadership.holder });

      const plan = await race(prepareCapture(client, cfg));
      this.metrics.captureMode = plan.mode;
      if (plan.lostChannels.length > 0) this.metrics.slotInvalidations++;

      client.on("notification", () => this.drain.kick());
      // The channel's name has one home, the database (notifiws.wakeup_channel(), db/functions/capture.sql).
      const wakeup = (await race(client.query<{ c: string }>("SELECT notifiws.wakeup_channel() AS c"))).rows[0]!.c;
      await race(client.query(`LISTEN ${pg.escapeIdentifier(wakeup)}`));
      let sessionOver = false;
      onEnd = () => (sessionOver = true);
      const openDrain = () => {
        if (sessionOver) return;
        this.drain.open = true;
        // Catch up on everything committed while no relay was listening.
        this.drain.kick();
        timers.push(setInterval(() => this.drain.kick(), plan.mode === "wal" ? Math.max(cfg.RELAY_POLL_MS, WAL_MODE_OUTBOX_POLL_MS) : cfg.RELAY_POLL_MS));
      };
      void this.capture(client, plan, openDrain).catch((err: Error) => fail(err));
      // The heartbeat is also the liveness check: it fails (query_timeout) on a
      // dead connection, and LeadershipLost if a standby replaced us.
      let beating = false;
      timers.push(
        setInterval(() => {
          if (beating) return;
          beating = true;
          leadership
            .heartbeat()
            .catch((err: Error) => fail(err))
            .finally(() => (beating = false));
        }, cfg.RELAY_HEARTBEAT_MS),
      );
      await ended;
    } finally {
      onEnd();
      this.drain.open = false;
      timers.forEach(clearInterval);
      this.wal?.close();
      this.wal = undefined;
      this.metrics.connected = false;
      this.metrics.leader = false;
      if (this.client === client) this.client = undefined;
      // Destroy first: every query still pending on this socket fails at once,
      // so the drain below cannot wait on a connection that will never answer.
      if (!this.stopping) destroy(client);
      await this.drain.settled();
    }
  }

  /**
   * Capture order, in one place. Gap markers first (a slot Postgres
   * invalidated lost events: gaps.ts). Then, when a slot exists while the
   * functions write to the outbox (a switch to outbox, now or unfinished by
   * an earlier leader), the outbox rows written before that switch, then the
   * slot up to now: they are older than anything the outbox got since; in
   * outbox mode the slot is dropped after. Then the outbox drain opens, and
   * in wal mode the functions switch (if they have not yet) and the slot is
   * streamed for good, a channel with outbox rows queuing behind them.
   * Resolves only when the session no longer needs it; a failure ends the
   * session.
   */
  private async capture(client: pg.Client, plan: CapturePlan, openDrain: () => void): Promise<void> {
    const older = () =>
      waitForOlderTransactions(
        client,
        (ms) => this.sleep(ms),
        () => this.stopping,
      );
    // Asked first through a SECURITY DEFINER function: an outbox-only relay needs no grant on the table.
    if (plan.gapsPending) await sendPendingGaps(this.sendHost(), client);
    if (plan.catchUp && !this.stopping) {
      // A transaction begun before the switch may still be writing a message.
      await older();
      await this.drain.through(plan.catchUp.outboxFrom);
      const wal = this.walStream(await outboxChannels(client, plan.catchUp.outboxFrom));
      await wal.run({ until: await currentLsn(client) });
      if (this.wal === wal) this.wal = undefined;
      if (plan.mode === "outbox" && !this.stopping) await retireSlot(client, this.config.RELAY_SLOT);
    }
    if (this.stopping) return;
    openDrain();
    if (plan.mode === "outbox") return;
    if (plan.switchToWal) {
      await switchToWal(client, this.config.RELAY_SLOT);
      // Rows that transactions begun before the switch still write to the outbox must be known before streaming.
      await older();
    }
    const wal = this.walStream(await outboxChannels(client));
    await wal.run();
    if (!this.stopping) throw new Error("the replication stream ended");
  }

  private walStream(spilled: Set<string>): WalStream {
    const wal = new WalStream(
      {
        ...this.sendHost(),
        client: () => this.client,
        exclusive: (fn) => this.exclusive(fn),
        kickOutbox: () => this.drain.kick(),
      },
      this.config.RELAY_SLOT,
    );
    wal.spilled = spilled;
    this.wal = wal;
    return wal;
  }

  private sendHost() {
    return { config: this.config, metrics: this.metrics, stopping: () => this.stopping, sleep: (ms: number) => this.sleep(ms) };
  }

  /** A sleep that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}

/** Closes the socket under a pg client without waiting for the server. */
function destroy(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
