/**
 * The pure rules behind exact values (docs/protocol.md, "Values"): JSON
 * numbers read without rounding (with source text access and with the
 * fallback scan), decimals compared exactly in Postgres's order, rows decoded
 * by column type, and filters on 64-bit values.
 */
import { describe, expect, it } from "vitest";
import { compareOrdered, hasInexactCandidate, hasSourceAccess, orderedNumber, parseJsonExact, parseJsonMarked, rawJsonText } from "../../shared/exact-json";
import { decodeRow, stringifyExact } from "../../client/values";
import { matchesFilter } from "../../shared/filter";
import type { Envelope, Filter } from "../../shared/protocol";

describe("parseJsonExact", () => {
  it("has JSON.parse source text access on the Node that runs the tests (the SDK's fast path)", () => {
    expect(hasSourceAccess).toBe(true);
  });

  const cases: [string, string, unknown][] = [
    ["safe integer", "[42, -7, 0]", [42, -7, 0]],
    ["2^53 itself is exact", "9007199254740992", 9007199254740992],
    ["2^53 + 1 is not", "9007199254740993", 9007199254740993n],
    ["int8 extremes", "[9223372036854775807, -9223372036854775808]", [9223372036854775807n, -9223372036854775808n]],
    ["a decimal a float rounds", "0.1000000000000000000000001", "0.1000000000000000000000001"],
    ["0.1 prints back as written", "0.1", 0.1],
    ["trailing zero: same value", "1.10", 1.1],
    ["negative zero", "-0", -0],
    ["exponent within range", "1e20", 1e20],
    ["exponent out of range", "1e400", "1e400"],
    ["underflow", "1e-400", "1e-400"],
    ["inside strings nothing changes", '["9007199254740993", "1e400", "-0"]', ["9007199254740993", "1e400", "-0"]],
    ["escaped quote before a number", '{"a\\"b": 12345678901234567890}', { 'a"b': 12345678901234567890n }],
    ["nested", '{"a": {"b": [1, 12345678901234567890.5]}}', { a: { b: [1, "12345678901234567890.5"] } }],
    ["a key named __proto__ stays a key", '{"__proto__": {"x": 1}}', JSON.parse('{"__proto__": {"x": 1}}')],
    ["a string that starts with the fallback's marker", '["\\ue000123", "\uE000abc"]', ["\uE000123", "\uE000abc"]],
  ];
  it.each(cases)("value mode: %s", (_name, text, expected) => {
    const got = parseJsonExact(text, "value");
    expect(got).toEqual(expected);
    expect(parseJsonMarked(text, "value")).toEqual(expected);
    if (Object.is(expected, -0)) expect(Object.is(got, -0)).toBe(true);
  });

  it("value mode keeps __proto__ an own property and pollutes nothing", () => {
    for (const parse of [(t: string) => parseJsonExact(t, "value"), (t: string) => parseJsonMarked(t, "value")]) {
      const v = parse('{"__proto__": {"polluted": 12345678901234567890}, "k": 0.5000000000000000000001}') as Record<string, unknown>;
      expect(Object.hasOwn(v, "__proto__")).toBe(true);
      expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    }
  });

  it("text mode gives the decimal text of numbers a float cannot hold (filters)", () => {
    expect(parseJsonExact('{"value": 9007199254740993, "small": 5}', "text")).toEqual({ value: "9007199254740993", small: 5 });
    expect(parseJsonMarked('{"value": 9007199254740993, "small": 5}', "text")).toEqual({ value: "9007199254740993", small: 5 });
  });

  it("raw mode writes every number back exactly as written", () => {
    const text = '{"a":12345678901234567890,"b":1.10,"c":-0,"d":1e400,"e":42,"f":"1.10","g":[0.1,-98765432109876543210]}';
    const v = parseJsonExact(text, "raw") as Record<string, unknown>;
    expect(JSON.stringify(v)).toBe(text);
    expect(rawJsonText(v.a)).toBe("12345678901234567890");
    expect(v.e).toBe(42);
  });
});

describe("the fast path's scan", () => {
  const cases: [string, boolean][] = [
    ['{"seq":42,"committedAt":1795425131148,"q":-7}', false],
    ['{"at":"2026-11-30T10:16:27.905745+00:00","id":"9007199254740993","u":"1e5"}', false],
    ['{"s":"a\\"b:1.5","n":3}', false],
    ['{"n":1.5}', true],
    ['{"n":1e5}', true],
    ['{"n":9007199254740993}', true],
    ['{"n":999999999999999}', false],
    ['{"n":-0}', true],
    ['{"n":-0.5}', true],
    ["[-10]", false],
  ];
  it.each(cases)("%s → %s", (text, expected) => {
    expect(hasInexactCandidate(text)).toBe(expected);
  });
});

describe("exact decimal order", () => {
  const cases: [string, string, number][] = [
    ["9007199254740993", "9007199254740992", 1],
    ["9007199254740992", "9007199254740992.0", 0],
    ["-9223372036854775808", "-9223372036854775807", -1],
    ["123456789012345678901234567890.1", "123456789012345678901234567890.09", 1],
    ["0.000000000000000000000000000001", "0", 1],
    ["-0", "0", 0],
    ["1e3", "999.9999", 1],
    ["1E-3", "0.001", 0],
    ["10", "9", 1],
    ["-10", "-9", -1],
    ["Infinity", "99999999999999999999999999999", 1],
    ["-Infinity", "-99999999999999999999999999999", -1],
    ["NaN", "Infinity", 1],
    ["NaN", "NaN", 0],
    [" 5 ", "5", 0],
  ];
  it.each(cases)("%s vs %s", (a, b, sign) => {
    expect(compareOrdered(orderedNumber(a)!, orderedNumber(b)!)).toBe(sign);
    expect(compareOrdered(orderedNumber(b)!, orderedNumber(a)!)).toBe(-sign || 0);
  });

  it("is not fooled by text that is not a number", () => {
    for (const t of ["", "abc", "0x10", "1_000", "1.2.3", "--1", "."]) expect(orderedNumber(t)).toBeUndefined();
  });
});

describe("filters on exact values", () => {
  const ev = (data: Record<string, unknown>, types?: Record<string, string>): Envelope => ({
    id: "x",
    seq: 1,
    channel: "c",
    op: "insert",
    data,
    committedAt: 0,
    types,
  });
  const cases: [string, Filter, Envelope, boolean][] = [
    ["int8 gt 2^53 (number): 2^53 + 1", { where: [{ field: "id", op: "gt", value: 9007199254740992 }] }, ev({ id: "9007199254740993" }), true],
    ["int8 gt 2^53 (number): 2^53", { where: [{ field: "id", op: "gt", value: 9007199254740992 }] }, ev({ id: "9007199254740992" }), false],
    ["int8 eq by text, not by float", { where: [{ field: "id", op: "eq", value: "9007199254740992" }] }, ev({ id: "9007199254740993" }), false],
    ["numeric eq with other scale", { where: [{ field: "n", op: "eq", value: "1.10" }] }, ev({ n: "1.1" }), true],
    [
      "numeric lt with 30 digits",
      { where: [{ field: "n", op: "lt", value: "123456789012345678901234567890.2" }] },
      ev({ n: "123456789012345678901234567890.1" }),
      true,
    ],
    ["NaN above Infinity", { where: [{ field: "f", op: "gt", value: "Infinity" }] }, ev({ f: "NaN" }), true],
    ["in with big ints", { where: [{ field: "id", op: "in", value: ["1", "9223372036854775807"] }] }, ev({ id: "9223372036854775807" }), true],
    [
      "path into a jsonb column",
      { where: [{ field: "meta.big", op: "gt", value: "12345678901234567889" }] },
      ev({ meta: '{"big": 12345678901234567890}' }, { meta: "jsonb" }),
      true,
    ],
    [
      "path into a text column is not parsed",
      { where: [{ field: "meta.big", op: "exists", value: true }] },
      ev({ meta: '{"big": 1}' }, { meta: "text" }),
      false,
    ],
    [
      "a raw number from the publish API",
      { where: [{ field: "n", op: "gt", value: "12345678901234567889" }] },
      ev(parseJsonExact('{"n": 12345678901234567890}', "raw") as Record<string, unknown>),
      true,
    ],
    ["text still compares as text", { where: [{ field: "s", op: "lt", value: "b" }] }, ev({ s: "a" }), true],
  ];
  it.each(cases)("%s", (_name, filter, event, expected) => {
    expect(matchesFilter(event, filter)).toBe(expected);
  });
});

describe("decodeRow", () => {
  const types = {
    i8: "int8",
    n: "numeric",
    f8: "float8",
    f4: "float4",
    j: "jsonb",
    a8: "int8[]",
    af: "float8[][]".slice(0, -2),
    tx: "text",
    ts: "timestamptz",
    __proto__: "text",
  };
  const row = JSON.parse(
    '{"i8":"9223372036854775807","n":"NaN","f8":"-0","f4":"Infinity","j":"{\\"a\\": 12345678901234567890}","a8":["1",null,"-9223372036854775808"],"af":[["-0","NaN"]],"tx":"x","ts":"2026-11-30T10:11:12+00:00","__proto__":"p","extra":1}',
  ) as Record<string, unknown>;
  const typesWithProto = { ...types, ...JSON.parse('{"__proto__":"text"}') } as Record<string, string>;

  it("decodes by type: int8 and numeric as strings, floats as numbers, json exactly, arrays element by element", () => {
    const d = decodeRow(row, typesWithProto)!;
    expect(d.i8).toBe("9223372036854775807");
    expect(d.n).toBe("NaN");
    expect(Object.is(d.f8, -0)).toBe(true);
    expect(d.f4).toBe(Infinity);
    expect(d.j).toEqual({ a: 12345678901234567890n });
    expect(d.a8).toEqual(["1", null, "-9223372036854775808"]);
    expect(Object.is((d.af as number[][])[0]![0], -0)).toBe(true);
    expect(Number.isNaN((d.af as number[][])[0]![1])).toBe(true);
    expect(d.ts).toBe("2026-11-30T10:11:12+00:00");
    expect(Object.hasOwn(d, "__proto__") && d["__proto__"]).toBe("p");
    expect(d.extra).toBe(1); // a column without a type is left as sent
  });

  it("gives bigints on request, applies your own parsers (to array elements too), or leaves everything raw", () => {
    const d = decodeRow(row, typesWithProto, { int8: "bigint", parsers: { timestamptz: (s) => new Date(s), numeric: (s) => `num:${s}` } })!;
    expect(d.i8).toBe(9223372036854775807n);
    expect(d.a8).toEqual([1n, null, -9223372036854775808n]);
    expect(d.ts).toEqual(new Date("2026-11-30T10:11:12Z"));
    expect(d.n).toBe("num:NaN");
    expect(decodeRow(row, typesWithProto, { raw: true })).toBe(row);
  });

  it("stringifyExact writes bigints back as exact JSON numbers", () => {
    expect(stringifyExact({ a: 9223372036854775807n, b: [1n] })).toBe('{"a":9223372036854775807,"b":[1]}');
  });
});
