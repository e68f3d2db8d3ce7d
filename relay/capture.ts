/**
 * The capture mode, set by the leader when it takes over (RELAY_CAPTURE):
 * the database's replication slot and publication, the mode the trigger
 * functions are compiled for (notifiws.set_capture_mode(),
 * db/functions/capture.sql), and the hand-over between the two sinks.
 *
 * - To 'wal': the slot is created first (creating it waits for every running
 *   transaction, so nothing written after the switch precedes it), then the
 *   functions switch. Rows that transactions begun before the switch still
 *   write to the outbox are drained as usual.
 * - To 'outbox': the functions switch first; once every transaction begun
 *   before the switch has ended, the slot is read up to the WAL position of
 *   that moment, then dropped with its publication (the slot would otherwise
 *   keep WAL forever).
 * - A slot Postgres invalidated (it fell behind max_slot_wal_keep_size) has
 *   lost changes for good: it is dropped and recreated, and the caller resets
 *   every watched channel so clients reload instead of living with a gap.
 */
import pg from "pg";
import { log } from "../shared/log";
import type { RelayConfig } from "./config";
import { parseLsn } from "./lsn";

export interface CapturePlan {
  mode: "outbox" | "wal";
  /**
   * A slot exists while the functions write to the outbox (a switch to
   * outbox, done now or by an earlier leader that did not finish): the
   * outbox rows written before that switch (ids up to `outboxFrom`) go
   * first, then what the slot holds, then everything newer. In outbox mode
   * the slot is dropped after.
   */
  catchUp?: { outboxFrom: string };
  /** wal mode: the functions still write to the outbox; switch them once the catch-up is done. */
  switchToWal: boolean;
  /** The slot had been invalidated: these channels lost events and must be reset (gaps.ts). */
  lostChannels: string[];
  /** Gap markers wait in notifiws.pending_gaps (these, or ones an earlier leader could not send). */
  gapsPending: boolean;
}

/** Creating a slot waits for every running transaction; allow it longer than one drain statement. */
const SLOT_CREATE_TIMEOUT_MS = 120_000;
/** Every outbox id: a slot left without a recorded switch holds nothing older than the outbox. */
const ALL_ROWS = "9223372036854775807";

export async function prepareCapture(client: pg.Client, cfg: RelayConfig): Promise<CapturePlan> {
  const slot = await slotState(client, cfg.RELAY_SLOT);
  let lostChannels: string[] = [];
  const modeBefore = (await client.query<{ m: string }>("SELECT notifiws.capture_mode() AS m")).rows[0]!.m;
  // The functions write to a slot nobody keeps: dropped by hand, or by a provider (Neon drops slots inactive for ~40 hours).
  const missing = !slot && modeBefore === "wal";
  if (slot?.lost || missing) {
    lostChannels = await watchedChannels(client);
    const why = missing
      ? "the replication slot is gone while the database captures to it (dropped by hand or by the provider)"
      : "the replication slot was invalidated by Postgres (it fell behind max_slot_wal_keep_size)";
    log("error", `${why}: changes were lost; recreating it and resetting every watched channel so clients reload`, {
      code: missing ? "SLOT_MISSING" : "SLOT_INVALIDATED",
      slot: cfg.RELAY_SLOT,
      channels: lostChannels.length,
    });
    // Recorded before the slot is recreated: a crash after this still resets them (gaps.ts).
    await client.query("INSERT INTO notifiws.pending_gaps (channel, gap_id) SELECT unnest($1::text[]), $2::uuid ON CONFLICT (channel) DO NOTHING", [
      lostChannels,
      crypto.randomUUID(),
    ]);
    if (slot) await dropSlot(client, cfg.RELAY_SLOT);
  } else if (slot?.activePid) {
    // We hold the leader lock: a walsender still on the slot belongs to a replaced leader (frozen or partitioned).
    await terminateWalsender(client, cfg.RELAY_SLOT);
  }
  const usable = slot !== undefined && !slot.lost;
  let current = modeBefore;
  const catchUp = async () => ({ outboxFrom: (await client.query<{ b: string | null }>("SELECT notifiws.outbox_from()::text AS b")).rows[0]!.b ?? ALL_ROWS });

  const gapsPending = (await client.query<{ p: boolean }>("SELECT notifiws.has_pending_gaps() AS p")).rows[0]!.p;
  let target = cfg.RELAY_CAPTURE;
  if (target === "wal") {
    const unavailable = await walUnavailable(client);
    if (unavailable) {
      // Never a silent stall: events keep flowing through the outbox until the server is fixed (checked on every reconnect).
      log("error", `${unavailable}; capturing from the outbox meanwhile`, { code: "WAL_UNAVAILABLE" });
      target = "outbox";
    }
  }
  if (target === "outbox") {
    if (current === "wal") {
      await client.query("SELECT notifiws.set_capture_mode('outbox')");
      current = "outbox";
      log("info", "capture mode switched to outbox; the slot is read up to the switch, then dropped", { slot: cfg.RELAY_SLOT });
    }
    if (!usable && (await hasPublication(client, cfg.RELAY_SLOT))) await dropPublication(client, cfg.RELAY_SLOT);
    return { mode: "outbox", catchUp: usable ? await catchUp() : undefined, switchToWal: false, lostChannels, gapsPending };
  }

  // No tables: only the logical messages the trigger functions write are sent (pgoutput `messages`).
  if (!(await hasPublication(client, cfg.RELAY_SLOT))) await client.query(`CREATE PUBLICATION ${pg.escapeIdentifier(cfg.RELAY_SLOT)}`);
  if (!usable) {
    await client.query("SET statement_timeout = 0");
    await client.query({
      text: "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
      values: [cfg.RELAY_SLOT],
      query_timeout: SLOT_CREATE_TIMEOUT_MS,
    } as pg.QueryConfig);
    await client.query(`SET statement_timeout = ${cfg.RELAY_STATEMENT_TIMEOUT_MS}`);
    log("info", "replication slot created", { slot: cfg.RELAY_SLOT });
  }
  return { mode: "wal", catchUp: usable && current === "outbox" ? await catchUp() : undefined, switchToWal: current !== "wal", lostChannels, gapsPending };
}

/** Switches the trigger functions to write logical messages (after the slot exists and any catch-up is done). */
export async function switchToWal(client: pg.Client, slot: string): Promise<void> {
  await client.query("SELECT notifiws.set_capture_mode('wal')");
  log("info", "capture mode switched to wal; rows already in the outbox are still delivered", { slot });
}

/** Why this server cannot capture from the WAL (the message names the fix), or undefined. */
async function walUnavailable(client: pg.Client): Promise<string | undefined> {
  const server = (
    await client.query<{ level: string; version: number }>(
      "SELECT current_setting('wal_level') AS level, current_setting('server_version_num')::int AS version",
    )
  ).rows[0]!;
  if (server.level !== "logical")
    return `RELAY_CAPTURE=wal needs wal_level = logical on this server (it has ${server.level}): set it and restart Postgres (docs/database.md, "Enabling logical replication"), or set RELAY_CAPTURE=outbox`;
  if (server.version < 140000)
    return `RELAY_CAPTURE=wal needs PostgreSQL 14 or later (pgoutput's messages option); this server is ${server.version}: set RELAY_CAPTURE=outbox`;
  return undefined;
}

/** Resolves once every transaction that was running when it was called has ended (then none can write to the old sink). */
export async function waitForOlderTransactions(client: pg.Client, sleep: (ms: number) => Promise<void>, stopping: () => boolean): Promise<void> {
  const horizon = (await client.query<{ x: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x")).rows[0]!.x;
  let since = Date.now();
  while (!stopping()) {
    const r = await client.query<{ done: boolean }>("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8 AS done", [horizon]);
    if (r.rows[0]!.done) return;
    if (Date.now() - since > 10_000) {
      log("warn", "waiting for transactions that began before the capture mode switch", { beforeTxid: horizon });
      since = Date.now();
    }
    await sleep(50);
  }
}

/** The WAL position now: reading the slot up to it covers every transaction already committed. */
export async function currentLsn(client: pg.Client): Promise<bigint> {
  return parseLsn((await client.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l);
}

/** Drops a slot retired by a switch to 'outbox', and its publication. */
export async function retireSlot(client: pg.Client, slot: string): Promise<void> {
  await dropSlot(client, slot);
  await dropPublication(client, slot);
  log("info", "replication slot and publication dropped: the capture mode is outbox", { slot });
}

/** The channels every watch publishes to: those a lost slot may have dropped events of. */
async function watchedChannels(client: pg.Client): Promise<string[]> {
  return (await client.query<{ channel: string }>("SELECT DISTINCT channel FROM notifiws.watches ORDER BY channel")).rows.map((r) => r.channel);
}

/** The channels with rows in the outbox, up to an id when given (their later events must queue behind them). */
export async function outboxChannels(client: pg.Client, upTo?: string): Promise<Set<string>> {
  const r = await client.query<{ channel: string }>("SELECT DISTINCT channel FROM notifiws.outbox WHERE $1::bigint IS NULL OR id <= $1::bigint", [
    upTo ?? null,
  ]);
  return new Set(r.rows.map((row) => row.channel));
}

interface SlotState {
  lost: boolean;
  activePid: number | null;
}

async function slotState(client: pg.Client, slot: string): Promise<SlotState | undefined> {
  const r = await client.query<{ wal_status: string | null; active_pid: number | null; plugin: string | null }>(
    "SELECT wal_status, active_pid, plugin FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
    [slot],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return { lost: row.wal_status === "lost", activePid: row.active_pid };
}

async function terminateWalsender(client: pg.Client, slot: string): Promise<void> {
  const r = await client.query<{ pid: number }>(
    "SELECT active_pid AS pid, pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL AND active_pid <> pg_backend_pid()",
    [slot],
  );
  if (r.rows[0]) log("warn", "terminated the walsender a previous leader left on the slot", { slot, pid: r.rows[0].pid });
  // The slot is released when that backend exits; START_REPLICATION retries until then.
  for (let i = 0; i < 100; i++) {
    const s = await slotState(client, slot);
    if (!s?.activePid) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function dropSlot(client: pg.Client, slot: string): Promise<void> {
  await terminateWalsender(client, slot);
  await client.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()", [slot]);
}

async function hasPublication(client: pg.Client, name: string): Promise<boolean> {
  return (await client.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [name])).rowCount === 1;
}

async function dropPublication(client: pg.Client, name: string): Promise<void> {
  await client.query(`DROP PUBLICATION IF EXISTS ${pg.escapeIdentifier(name)}`);
}
