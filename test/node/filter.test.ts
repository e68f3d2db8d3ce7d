import { describe, expect, it } from "vitest";
import { matchesFilter } from "../../shared/filter";
import type { Envelope, Filter } from "../../shared/protocol";
import { Filter as FilterSchema } from "../../shared/protocol";

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
