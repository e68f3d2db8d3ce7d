import { describe, expect, it } from "vitest";
import { checkSqlBindings, packJsonArrays, PLATFORM_SQL_VALUE_MAX_BYTES, utf8Length } from "../../shared/limits";

describe("utf8Length", () => {
  it.each([
    ["", 0],
    ["abc", 3],
    ["é", 2],
    ["€", 3],
    ["😀", 4],
    ["a😀é€", 10],
    ["\ud800", 3], // lone surrogate: encoded as U+FFFD
    ["\ud800x", 4],
  ])("%j is %i bytes, as TextEncoder says", (s, n) => {
    expect(utf8Length(s)).toBe(n);
    expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
  });
});

describe("packJsonArrays", () => {
  it("keeps every array under the budget in bytes and the values in order", () => {
    const values = Array.from({ length: 50 }, (_, i) => `${i}:${"é".repeat(i * 3)}`);
    const budget = 200;
    const packed = packJsonArrays(values, budget);
    const back: string[] = [];
    for (const p of packed) {
      if ("json" in p) {
        expect(utf8Length(p.json)).toBeLessThanOrEqual(budget);
        const arr = JSON.parse(p.json) as string[];
        expect(arr).toHaveLength(p.count);
        back.push(...arr);
      } else back.push(p.single);
    }
    expect(back).toEqual(values);
  });

  it("returns a value too large for any array on its own", () => {
    const packed = packJsonArrays(["a", '"'.repeat(100), "b"], 150);
    expect(packed).toEqual([{ json: '["a"]', count: 1 }, { single: '"'.repeat(100) }, { json: '["b"]', count: 1 }]);
  });
});

describe("checkSqlBindings (production limits, enforced locally)", () => {
  it("allows 100 parameters and a 2 MB value", () => {
    expect(() => checkSqlBindings(Array.from({ length: 100 }, () => 1))).not.toThrow();
    expect(() => checkSqlBindings(["x".repeat(PLATFORM_SQL_VALUE_MAX_BYTES)])).not.toThrow();
  });
  it("refuses 101 parameters", () => {
    expect(() => checkSqlBindings(Array.from({ length: 101 }, () => 1))).toThrow(/101 bound parameters/);
  });
  it("refuses a value over 2 MB counted in bytes, not string length", () => {
    const s = "é".repeat(PLATFORM_SQL_VALUE_MAX_BYTES / 2 + 1);
    expect(s.length).toBeLessThan(PLATFORM_SQL_VALUE_MAX_BYTES);
    expect(() => checkSqlBindings([s])).toThrow(/bound value/);
  });
});
