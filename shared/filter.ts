import type { Condition, Envelope, Filter } from "./protocol";
import { compareOrdered, orderedNumber, parseJsonExact, rawJsonText } from "./exact-json";

/**
 * Reads a dot path (`meta.region`) from a row without evaluating anything.
 * A json/jsonb column travels as its JSON text (docs/protocol.md, "Values"),
 * so a path into one is read from that text, parsed exactly.
 */
function read(row: Record<string, unknown> | null | undefined, path: string, types: Record<string, string> | undefined): unknown {
  let cur: unknown = row;
  const parts = path.split(".");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (cur === null || typeof cur !== "object" || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
    if (i === 0 && i < parts.length - 1 && typeof cur === "string" && (types?.[part] === "json" || types?.[part] === "jsonb")) {
      try {
        cur = parseJsonExact(cur, "raw");
      } catch {
        return undefined;
      }
    }
  }
  return cur;
}

/** A value as exact number text: numbers, decimal strings (int8, numeric, float columns), bigints, numbers kept as written. */
function numberText(v: unknown): string | undefined {
  if (typeof v === "number") return Number.isNaN(v) ? "NaN" : v === Infinity ? "Infinity" : v === -Infinity ? "-Infinity" : String(v);
  if (typeof v === "bigint") return String(v);
  if (typeof v === "string") return v;
  return rawJsonText(v);
}

/**
 * Compares exactly whenever both sides are numbers or decimal text (int8 and
 * numeric columns arrive as text; 9007199254740993 > 9007199254740992 holds),
 * in Postgres's order for NaN and ±Infinity; two other strings compare as
 * strings; anything else does not compare.
 */
function compare(a: unknown, b: unknown): number | undefined {
  const ta = numberText(a);
  const tb = numberText(b);
  if (ta === undefined || tb === undefined) return undefined;
  const na = orderedNumber(ta);
  const nb = orderedNumber(tb);
  if (na && nb) return compareOrdered(na, nb);
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  return compare(a, b) === 0;
}

export function matchesCondition(row: Record<string, unknown> | null, cond: Condition, types?: Record<string, string>): boolean {
  const v = read(row, cond.field, types);
  switch (cond.op) {
    case "exists":
      return (v !== undefined) === cond.value;
    case "eq":
      return v !== undefined && equal(v, cond.value);
    case "ne":
      return v === undefined || !equal(v, cond.value);
    case "in":
      return v !== undefined && cond.value.some((x) => equal(v, x));
    default: {
      const c = compare(v, cond.value);
      if (c === undefined) return false;
      if (cond.op === "lt") return c < 0;
      if (cond.op === "lte") return c <= 0;
      if (cond.op === "gt") return c > 0;
      return c >= 0;
    }
  }
}

/** True when the event passes every part of the filter. `table` matches `schema.table` or the bare table name. */
export function matchesFilter(event: Envelope, filter: Filter | undefined): boolean {
  if (!filter) return true;
  if (filter.table !== undefined) {
    const t = event.table ?? "";
    if (t !== filter.table && t.split(".").pop() !== filter.table) return false;
  }
  if (filter.ops && !filter.ops.includes(event.op)) return false;
  if (filter.where) for (const cond of filter.where) if (!matchesCondition(event.data, cond, event.types)) return false;
  return true;
}
