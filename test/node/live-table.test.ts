/** How a live table's rows follow events (client/live-table.ts, applyChange and rowKey): pure rules, table-tested. */
import { describe, expect, it } from "vitest";
import { applyChange, rowKey, type Row } from "../../client/live-table";
import type { Operation } from "../../shared/types";

describe("rowKey", () => {
  it.each([
    ["one text column", { sku: "KB-01", n: 1 }, ["sku"], "KB-01"],
    ["one int8 column as text", { id: "9007199254740993" }, ["id"], "9007199254740993"],
    ["one int8 column as bigint", { id: 9007199254740993n }, ["id"], "9007199254740993"],
    ["one int4 column", { id: 7 }, ["id"], "7"],
    ["two columns, in key order", { n: 2, org: 1 }, ["org", "n"], "[1,2]"],
    ["two columns with a bigint", { org: 1n, n: "x" }, ["org", "n"], '["1","x"]'],
  ] as const)("%s", (_what, row, key, expected) => {
    expect(rowKey(row as Row, key)).toBe(expected);
  });
});

describe("applyChange", () => {
  const start = () =>
    new Map<string, Row>([
      ["1", { id: "1", status: "open" }],
      ["2", { id: "2", status: "open" }],
    ]);
  it.each([
    ["insert adds", "insert", { id: "3", status: "new" }, ["1", "2", "3"], true],
    ["update replaces", "update", { id: "2", status: "closed" }, ["1", "2"], true],
    ["enter adds a row that moved into the channel", "enter", { id: "9", status: "urgent" }, ["1", "2", "9"], true],
    ["leave removes a row that moved out", "leave", { id: "1", status: "open" }, ["2"], true],
    ["delete removes", "delete", { id: "2", status: "open" }, ["1"], true],
    ["delete of a row not there changes nothing", "delete", { id: "5" }, ["1", "2"], false],
    ["publish is not a row change", "publish", { id: "1", hello: true }, ["1", "2"], false],
  ] as const)("%s", (_what, op, data, keys, changed) => {
    const rows = start();
    expect(applyChange(rows, ["id"], { op: op as Operation, data: data as Row })).toBe(changed);
    expect([...rows.keys()]).toEqual(keys);
    if (op === "update") expect(rows.get("2")).toEqual(data);
  });
});
