/**
 * Postgres snapshot visibility, for "snapshot, then live": which events are
 * already part of state read under a snapshot. No dependency: the SDK (in
 * browsers), the Worker and the tests import it.
 *
 * The rule is Postgres's own (pg_visible_in_snapshot, utils/adt/xid8funcs.c):
 * a transaction id is visible when it is below xmin, or below xmax and not in
 * the in-progress list. Ids are 64-bit (xid8: epoch << 32 | xid), so they are
 * carried as decimal strings and compared as bigint; 2^53 is no limit.
 */

/** What notifiws.snapshot() returns (pg_current_snapshot() of the reading transaction). */
export interface PgSnapshot {
  xmin: string;
  xmax: string;
  /** Transactions in progress when the snapshot was taken. */
  xip: string[];
}

export interface ParsedSnapshot {
  xmin: bigint;
  xmax: bigint;
  xip: ReadonlySet<bigint>;
}

const DIGITS = /^[0-9]{1,20}$/;

function txid(value: string, what: string): bigint {
  if (!DIGITS.test(value)) throw new TypeError(`${what} must be a decimal transaction id, got ${JSON.stringify(value).slice(0, 40)}`);
  return BigInt(value);
}

/** Accepts notifiws.snapshot()'s object or pg_current_snapshot()'s text form `xmin:xmax:xip1,xip2`. */
export function parseSnapshot(snapshot: PgSnapshot | string): ParsedSnapshot {
  let s: PgSnapshot;
  if (typeof snapshot === "string") {
    const [xmin = "", xmax = "", xip = ""] = snapshot.split(":");
    s = { xmin, xmax, xip: xip ? xip.split(",") : [] };
  } else s = snapshot;
  const parsed = { xmin: txid(s.xmin, "xmin"), xmax: txid(s.xmax, "xmax"), xip: new Set(s.xip.map((x) => txid(x, "xip"))) };
  if (parsed.xmin > parsed.xmax) throw new RangeError("snapshot xmin is above xmax");
  return parsed;
}

/** True when the transaction's changes are already part of state read under `snapshot`. */
export function visibleInSnapshot(transactionId: string | bigint, snapshot: ParsedSnapshot): boolean {
  const t = typeof transactionId === "bigint" ? transactionId : txid(transactionId, "txid");
  if (t < snapshot.xmin) return true;
  if (t >= snapshot.xmax) return false;
  return !snapshot.xip.has(t);
}
