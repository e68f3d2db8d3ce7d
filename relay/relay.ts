/**
 * The relay: one dedicated Postgres connection that wins the leader election,
 * LISTENs for outbox wake-ups and has drain.ts deliver notifiws.outbox in
 * signed batches to the Worker, deleting rows only after the Worker stored
 * them. Connecting, reconnecting and catching up happen here, in one place.
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
import { Drain } from "./drain";
import { Leadership } from "./leader";
import { RelayMetrics } from "./metrics";

/** A session that stayed up this long resets the reconnect backoff. */
const STABLE_SESSION_MS = 30_000;
/** Client-side deadline beyond the server's statement_timeout before the socket is destroyed. */
const CLIENT_DEADLINE_MARGIN_MS = 1000;
/** How long a graceful stop waits for Postgres to acknowledge the session's end. */
const GRACEFUL_END_MS = 1000;

export class Relay {
  readonly metrics = new RelayMetrics();
  private client: pg.Client | undefined;
  private stopping = false;
  private readonly sleepers = new Set<() => void>();
  private supervisor: Promise<void> | undefined;
  private readonly drain: Drain;

  constructor(private readonly config: RelayConfig) {
    this.drain = new Drain({
      config,
      metrics: this.metrics,
      client: () => this.client,
      stopping: () => this.stopping,
      sleep: (ms) => this.sleep(ms),
    });
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
    const c = this.client;
    if (c) {
      if (this.metrics.leader) await c.query("SELECT pg_advisory_unlock($1)", [this.config.RELAY_LOCK_KEY]).catch(() => undefined);
      // end() waits for the server; over a dead connection it would wait forever.
      await Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, GRACEFUL_END_MS))]);
      destroy(c);
    }
    await this.supervisor?.catch(() => undefined);
  }

  /** Rows waiting and the age of the oldest, for /metrics. */
  async backlog(): Promise<{ events: number; oldestSeconds: number } | undefined> {
    if (!this.client || !this.metrics.connected) return undefined;
    const r = await this.client.query<{ n: string; age: number | null }>(
      "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM notifiws.outbox",
    );
    return { events: Number(r.rows[0]!.n), oldestSeconds: Math.max(0, r.rows[0]!.age ?? 0) };
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

      client.on("notification", () => this.drain.kick());
      // The channel's name has one home, the database (notifiws.wakeup_channel(), db/functions/capture.sql).
      const wakeup = (await race(client.query<{ c: string }>("SELECT notifiws.wakeup_channel() AS c"))).rows[0]!.c;
      await race(client.query(`LISTEN ${pg.escapeIdentifier(wakeup)}`));
      // Catch up on everything committed while no relay was listening.
      this.drain.kick();
      timers.push(setInterval(() => this.drain.kick(), cfg.RELAY_POLL_MS));
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
      timers.forEach(clearInterval);
      this.metrics.connected = false;
      this.metrics.leader = false;
      if (this.client === client) this.client = undefined;
      // Destroy first: every query still pending on this socket fails at once,
      // so the drain below cannot wait on a connection that will never answer.
      if (!this.stopping) destroy(client);
      await this.drain.settled();
    }
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

/** The database lacks the notifiws schema this relay needs (never migrated, or migrated by an older release). */
class SchemaMissing extends Error {
  readonly code = "SCHEMA_MISSING";
}

/** Fails with a message that names the fix when the migrations have not been applied; the relay retries by itself. */
async function requireSchema(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ missing: string[] }>(
    `SELECT array_remove(ARRAY[
       CASE WHEN to_regclass('notifiws.outbox') IS NULL THEN 'notifiws.outbox' END,
       CASE WHEN to_regclass('notifiws.relay_leader') IS NULL THEN 'notifiws.relay_leader' END,
       CASE WHEN to_regclass('notifiws.watches') IS NULL THEN 'notifiws.watches' END,
       CASE WHEN to_regprocedure('notifiws.wakeup_channel()') IS NULL THEN 'notifiws.wakeup_channel()' END
     ], NULL) AS missing`,
  );
  const missing = rows[0]!.missing;
  if (missing.length > 0)
    throw new SchemaMissing(
      `the database lacks ${missing.join(", ")}: apply the migrations with \`DATABASE_URL=<this database> npm run db:migrate\`; the relay keeps retrying and starts once they are in`,
    );
}

/** Closes the socket under a pg client without waiting for the server. */
function destroy(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
