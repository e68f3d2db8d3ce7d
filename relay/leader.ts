/**
 * Leader election among relays: a session advisory lock (it dies with the
 * connection) plus a heartbeat row, so that a leader which stops making
 * progress while its session stays open (frozen process, half-open TCP,
 * partition) is replaced. See db/migrations/002_relay_leader.sql.
 */
import { hostname } from "node:os";
import type pg from "pg";
import { log } from "../shared/log";

/** The heartbeat row no longer names this session: another relay took over. */
export class LeadershipLost extends Error {}

export class Leadership {
  /** What a standby last saw of the holder, and since when (its own clock). */
  private observed: { key: string; since: number } | undefined;
  readonly holder = `${hostname()}:${process.pid}`;

  constructor(
    private readonly client: pg.Client,
    private readonly lockKey: number,
    private readonly takeoverMs: number,
  ) {}

  /** Takes the lock if free and stamps the heartbeat at once, so standbys see a live leader. */
  async tryAcquire(): Promise<boolean> {
    const r = await this.client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [this.lockKey]);
    if (!r.rows[0]!.ok) return false;
    await this.client.query(
      `INSERT INTO notifiws.relay_leader (lock_key, pid, holder, heartbeat_at) VALUES ($1, pg_backend_pid(), $2, now())
       ON CONFLICT (lock_key) DO UPDATE SET pid = EXCLUDED.pid, holder = EXCLUDED.holder, heartbeat_at = EXCLUDED.heartbeat_at`,
      [this.lockKey, this.holder],
    );
    return true;
  }

  /** The leader's heartbeat; also proves its connection still answers. */
  async heartbeat(): Promise<void> {
    const r = await this.client.query("UPDATE notifiws.relay_leader SET heartbeat_at = now() WHERE lock_key = $1 AND pid = pg_backend_pid()", [this.lockKey]);
    if (r.rowCount === 0) throw new LeadershipLost("the heartbeat row names another session; stepping down");
  }

  /**
   * A standby's look at the leader. When the holder's heartbeat has not moved
   * for takeoverMs (by this process's clock, so clock skew does not matter),
   * its backend is terminated, which releases the lock for the next tryAcquire.
   */
  async watch(now = Date.now()): Promise<boolean> {
    const r = await this.client.query<{ holder_pid: number; hb_pid: number | null; hb_at: string | null; holder: string | null }>(
      `SELECT l.pid AS holder_pid, h.pid AS hb_pid, h.heartbeat_at::text AS hb_at, h.holder
         FROM pg_locks l LEFT JOIN notifiws.relay_leader h ON h.lock_key = $1
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)`,
      [this.lockKey],
    );
    const row = r.rows[0];
    if (!row) {
      this.observed = undefined; // nobody holds the lock: the next tryAcquire gets it
      return false;
    }
    const key = `${row.holder_pid}|${row.hb_pid}|${row.hb_at}`;
    if (this.observed?.key !== key) {
      this.observed = { key, since: now };
      return false;
    }
    const stalledMs = now - this.observed.since;
    if (stalledMs < this.takeoverMs) return false;
    log("warn", "leader made no progress; terminating its session to take over", {
      leaderPid: row.holder_pid,
      leader: row.hb_pid === row.holder_pid ? row.holder : undefined,
      stalledMs,
    });
    await this.client.query("SELECT pg_terminate_backend($1)", [row.holder_pid]);
    this.observed = undefined;
    return true;
  }
}
