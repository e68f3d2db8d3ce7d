/** The WAL stream's pure rules: what a message decodes to, how a batch is cut, and positions on the wire. */
import { describe, expect, it } from "vitest";
import { batchSpan, decodeMessage, type Item, type WalEvent } from "../../relay/wal-events";
import { formatLsn, parseLsn, standbyStatus } from "../../relay/lsn";

const header = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id: "7f1c2a4e-0000-4000-8000-000000000001", channel: "orders", op: "insert", table: "public.orders", txid: "9007199254740993", ...extra });

describe("decodeMessage", () => {
  it("splices the row values as Postgres printed them and takes the commit time from the transaction", () => {
    const e = decodeMessage(`${header()}\n{"id": "12345678901234567890", "n": 1.10}\n\n{"id": "int8", "n": "numeric"}`, 1796000000123);
    if ("error" in e) throw new Error(e.error);
    expect(e.json).toBe(
      '{"id":"7f1c2a4e-0000-4000-8000-000000000001","channel":"orders","op":"insert","table":"public.orders","committedAt":1796000000123,"txid":"9007199254740993","data":{"id": "12345678901234567890", "n": 1.10},"types":{"id": "int8", "n": "numeric"}}',
    );
    expect(e.bytes).toBe(Buffer.byteLength(e.json) + 1);
    expect(e.row).toMatchObject({ op: "insert", old: null, txid: "9007199254740993", committedAt: 1796000000123 });
  });

  it.each([
    ["too few lines", `${header()}\n{}`, /expected 4 lines/],
    ["a header that is not JSON", `{oops\n{}\n\nnull`, /not JSON/],
    ["a channel the protocol forbids", `${header({ channel: "bad channel!" })}\n{}\n\nnull`, /channel/],
    ["an unknown op", `${header({ op: "merge" })}\n{}\n\nnull`, /op/],
  ])("refuses %s with a reason", (_what, content, reason) => {
    const e = decodeMessage(content, 0);
    expect("error" in e && e.error).toMatch(reason);
  });
});

describe("batchSpan", () => {
  const ev = (bytes: number): Item => ({ kind: "event", event: { bytes } as WalEvent });
  const commit: Item = { kind: "commit", endLsn: 1n };
  it.each([
    ["nothing", [], 10, 100, 0],
    ["a whole transaction with its end", [ev(10), ev(10), commit], 10, 100, 3],
    ["up to the event cap, leaving the end for the next batch", [ev(10), ev(10), ev(10), commit], 2, 100, 2],
    ["up to the byte cap", [ev(60), ev(60), commit], 10, 100, 1],
    ["one event larger than the byte cap on its own", [ev(500), commit, ev(1)], 10, 100, 2],
    ["the ends of several transactions", [ev(1), commit, ev(1), commit], 10, 100, 4],
  ] as [string, Item[], number, number, number][])("%s", (_what, items, maxEvents, maxBytes, span) => {
    expect(batchSpan(items, maxEvents, maxBytes)).toBe(span);
  });
});

describe("positions", () => {
  it.each(["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"])("%s survives a round trip", (lsn) => {
    expect(formatLsn(parseLsn(lsn))).toBe(lsn);
  });

  it("writes a standby status update with the confirmed position as written, flushed and applied (no + 1)", () => {
    const b = standbyStatus(parseLsn("16/B374D848"), Date.UTC(2000, 0, 1) + 1, true);
    expect(b.length).toBe(34);
    expect(b.toString("latin1", 0, 1)).toBe("r");
    for (const at of [1, 9, 17]) expect(b.readBigUInt64BE(at)).toBe(0x16b374d848n);
    expect(b.readBigInt64BE(25)).toBe(1000n); // microseconds since 2000-01-01
    expect(b.readUInt8(33)).toBe(1);
  });
});
