import { describe, expect, it } from "vitest";
import { channelAllowed } from "../../src/channels";
import { closeReason, closeReplyCode } from "../../src/closecodes";
import { matchesFilter } from "../../src/filter";
import type { Envelope, Filter } from "../../src/protocol";
import { Filter as FilterSchema } from "../../src/protocol";
import { take } from "../../src/ratelimit";

const ev = (data: Record<string, unknown>, table = "public.inventory", op: Envelope["op"] = "update"): Envelope => ({
  id: "x",
  seq: 1,
  channel: "inventory",
  op,
  table,
  data,
  committedAt: 0,
});

describe("matchesFilter", () => {
  const cases: [string, Filter | undefined, Envelope, boolean][] = [
    ["no filter", undefined, ev({ stock: 50 }), true],
    ["table bare name", { table: "inventory" }, ev({}), true],
    ["table qualified", { table: "public.inventory" }, ev({}), true],
    ["table mismatch", { table: "ventas" }, ev({}), false],
    ["ops", { ops: ["insert"] }, ev({}), false],
    ["stock < 10 (low)", { where: [{ field: "stock", op: "lt", value: 10 }] }, ev({ stock: 3 }), true],
    ["stock < 10 (high)", { where: [{ field: "stock", op: "lt", value: 10 }] }, ev({ stock: 30 }), false],
    ["numeric string column", { where: [{ field: "price", op: "gte", value: 10 }] }, ev({ price: "10.50" }), true],
    ["missing field never < n", { where: [{ field: "stock", op: "lt", value: 10 }] }, ev({}), false],
    ["eq string", { where: [{ field: "region", op: "eq", value: "eu" }] }, ev({ region: "eu" }), true],
    ["ne on missing", { where: [{ field: "region", op: "ne", value: "eu" }] }, ev({}), true],
    ["in", { where: [{ field: "sku", op: "in", value: ["a", "b"] }] }, ev({ sku: "b" }), true],
    ["nested path", { where: [{ field: "meta.region", op: "eq", value: "us" }] }, ev({ meta: { region: "us" } }), true],
    ["exists false", { where: [{ field: "deleted_at", op: "exists", value: false }] }, ev({ stock: 1 }), true],
    ["AND of table and condition", { table: "inventory", where: [{ field: "stock", op: "lt", value: 10 }] }, ev({ stock: 3 }, "public.ventas"), false],
    ["prototype keys are not fields", { where: [{ field: "constructor", op: "exists", value: true }] }, ev({}), false],
  ];
  it.each(cases)("%s", (_name, filter, event, expected) => {
    expect(matchesFilter(event, filter)).toBe(expected);
  });

  it("rejects unknown filter keys and operators", () => {
    expect(FilterSchema.safeParse({ table: "x", evil: "1" }).success).toBe(false);
    expect(FilterSchema.safeParse({ where: [{ field: "a", op: "regex", value: ".*" }] }).success).toBe(false);
  });
});

describe("channelAllowed", () => {
  const cases: [string, string[], string | undefined, boolean][] = [
    ["sales", ["sales"], "u", true],
    ["sales", ["inventory"], "u", false],
    ["inventory.alerts", ["inventory.*"], "u", true],
    ["inventory", ["inventory.*"], "u", false],
    ["inventoryx", ["inventory.*"], "u", false],
    ["anything", ["*"], "u", true],
    ["user.u", [], "u", true],
    ["user.v", [], "u", false],
  ];
  it.each(cases)("%s with %j for %s -> %s", (channel, patterns, sub, expected) => {
    expect(channelAllowed(channel, patterns, sub)).toBe(expected);
  });
});

describe("close codes", () => {
  it.each([
    [1005, 1000],
    [1006, 1000],
    [1015, 1000],
    [1000, 1000],
    [1001, 1001],
    [4008, 4008],
    [999, 1000],
  ])("received %i -> reply %i", (received, reply) => {
    expect(closeReplyCode(received)).toBe(reply);
  });
  it("caps reasons at 123 bytes of UTF-8", () => {
    expect(new TextEncoder().encode(closeReason("é".repeat(100))).length).toBeLessThanOrEqual(123);
    expect(closeReason("short")).toBe("short");
  });
});

describe("rate limit bucket", () => {
  it("allows a burst then refuses until refilled", () => {
    let b = { tokens: 3, at: 0 };
    const results: boolean[] = [];
    for (let i = 0; i < 4; i++) {
      const r = take(b, 0, 10, 3);
      results.push(r.allowed);
      b = r.bucket;
    }
    expect(results).toEqual([true, true, true, false]);
    expect(take(b, 100, 10, 3).allowed).toBe(true); // 100 ms at 10/s refills one token
  });
});
