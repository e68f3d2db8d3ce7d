/**
 * Positions in the WAL and the one message the relay writes on a
 * replication connection (protocol-replication.html, "Standby status
 * update"), written as Postgres's own apply worker writes it.
 */

const POSTGRES_EPOCH_MS = 946_684_800_000;

/** "16/B374D848" → the 64-bit position. */
export function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function maxLsn(a: bigint, b: bigint): bigint {
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
