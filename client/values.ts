/**
 * Row values for the application, decoded by each column's Postgres type
 * (the event's `types`; docs/protocol.md, "Values"). On the wire, types a
 * JSON number cannot carry exactly travel as Postgres text; here they become:
 *
 * | Postgres              | default                         | option                       |
 * | --------------------- | ------------------------------- | ---------------------------- |
 * | bool, int2, int4      | boolean, number (as sent)       |                              |
 * | int8                  | string, digit for digit         | `int8: "bigint"` → bigint    |
 * | numeric, money        | string (`"NaN"`, `"Infinity"`)  | `parsers.numeric`            |
 * | float4, float8        | number (NaN, ±Infinity, -0)     |                              |
 * | json, jsonb           | parsed; a number a float cannot hold becomes a bigint (integer) or its text | |
 * | arrays                | arrays (nested), each element decoded as above | |
 * | anything else         | the string Postgres printed     | `parsers.<type>`             |
 *
 * int8 and numeric default to strings, as node-postgres and Neon return
 * them, so state loaded by your backend and events compare equal.
 */
import { parseJsonExact } from "../shared/exact-json";
import type { Envelope } from "../shared/types";

export { stringifyExact } from "../shared/exact-json";

export interface ValueOptions {
  /** int8 columns as digit strings (default, like node-postgres) or as bigint. */
  int8?: "string" | "bigint";
  /**
   * Your own decoder per Postgres type name (`timestamptz`, `numeric`, an enum's
   * name…): it gets the value as sent (Postgres text for types sent as text)
   * and replaces the default. Applied to array elements too.
   */
  parsers?: Record<string, (value: string) => unknown>;
  /** Leave values exactly as sent on the wire (no decoding at all). */
  raw?: boolean;
}

type Decoder = (value: unknown) => unknown;

const asText = (v: unknown) => (typeof v === "string" ? v : String(v));

function scalarDecoder(type: string, opts: ValueOptions): Decoder | undefined {
  const own = opts.parsers?.[type];
  if (own) return (v) => own(asText(v));
  switch (type) {
    case "int8":
      return opts.int8 === "bigint" ? (v) => BigInt(asText(v)) : undefined;
    case "float4":
    case "float8":
      // Number() reads Postgres's NaN, Infinity, -Infinity and -0 as they are.
      return (v) => (typeof v === "string" ? Number(v) : v);
    case "json":
    case "jsonb":
      return (v) => (typeof v === "string" ? parseJsonExact(v, "value") : v);
    default:
      return undefined;
  }
}

/** A decoder for one column type, or undefined when its values are used as sent. */
function decoderFor(type: string, opts: ValueOptions): Decoder | undefined {
  if (!type.endsWith("[]")) return scalarDecoder(type, opts);
  const element = scalarDecoder(type.slice(0, -2), opts);
  if (!element) return undefined;
  const each = (v: unknown): unknown => (v === null ? null : Array.isArray(v) ? v.map(each) : element(v));
  return each;
}

/**
 * Decodes one row (`data` or `old`). Returns a new object built with
 * defined properties, so a column named `__proto__` or `constructor` stays a
 * column. Columns without a type (the publish API) are returned as sent.
 */
export function decodeRow(
  row: Record<string, unknown> | null | undefined,
  types: Record<string, string> | undefined,
  opts: ValueOptions = {},
): Record<string, unknown> | null | undefined {
  if (!row || !types || opts.raw) return row;
  return Object.fromEntries(
    Object.entries(row).map(([column, value]) => {
      const type = Object.hasOwn(types, column) ? types[column] : undefined;
      const decode = type === undefined || value === null ? undefined : decoderFor(type, opts);
      return [column, decode ? decode(value) : value];
    }),
  );
}

/** The event with `data` and `old` decoded by their column types. */
export function decodeEvent(ev: Envelope, opts: ValueOptions): Envelope {
  if (!ev.types || opts.raw) return ev;
  const out: Envelope = { ...ev, data: decodeRow(ev.data, ev.types, opts) ?? null };
  if (ev.old !== undefined) out.old = decodeRow(ev.old, ev.types, opts) ?? null;
  return out;
}
