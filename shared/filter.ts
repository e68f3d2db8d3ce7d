import type { Condition, Envelope, Filter } from "./protocol";

/** Reads a dot path (`meta.region`) from a row without evaluating anything. */
function read(row: Record<string, unknown> | null | undefined, path: string): unknown {
  let cur: unknown = row;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object" || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/**
 * Postgres numerics arrive as JSON numbers, but bigint/numeric columns may be
 * strings; compare numerically whenever both sides look like numbers.
 */
function compare(a: unknown, b: unknown): number | undefined {
  const na = typeof a === "string" && a.trim() !== "" ? Number(a) : a;
  const nb = typeof b === "string" && b.trim() !== "" ? Number(b) : b;
  if (typeof na === "number" && typeof nb === "number" && !Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const c = compare(a, b);
  return c === 0;
}

export function matchesCondition(row: Record<string, unknown> | null, cond: Condition): boolean {
  const v = read(row, cond.field);
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
  if (filter.where) for (const cond of filter.where) if (!matchesCondition(event.data, cond)) return false;
  return true;
}
