/**
 * JSON numbers without rounding. JSON.parse reads every number as a 64-bit
 * float, so 9007199254740993 becomes 9007199254740992 and 1.10 prints back
 * as 1.1. Row values from Postgres avoid numbers for exactly this reason
 * (docs/protocol.md, "Values"), but free-form JSON (the publish API, json and
 * jsonb columns) may hold any number; these parsers keep each one exact:
 *
 * - "raw" (the Worker and its objects, which only pass JSON on): a number
 *   that would not print back as written becomes JSON.rawJSON(its text), so
 *   JSON.stringify writes it back digit for digit.
 * - "value" (the SDK, which hands values to an application): a number whose
 *   value a float cannot hold becomes a bigint (integers) or its decimal text
 *   (anything else); every other number stays a number.
 * - "text" (filters, which compare decimal text exactly): such a number
 *   becomes its decimal text.
 *
 * Both use JSON.parse's source text access (V8 11.4+: workerd, Node 21+,
 * Chrome 114+, Firefox 135+, Safari 18.4+). Without it, "value" and "text"
 * fall back to a scan that marks inexact numbers before parsing, and "raw" to
 * JSON.parse. Text with no number that could print back differently is
 * parsed by plain JSON.parse (hasInexactCandidate): measured on 100-event
 * frames, exact parsing costs 3.6–5.0 µs per event against 2.3 µs for
 * JSON.parse, and 18.7 µs when every value went through the reviver.
 * No dependency: the SDK ships this file.
 */

type SourceContext = { source?: string } | undefined;
type RawJson = { readonly rawJSON: string };
const J = JSON as JSON & { rawJSON?: (text: string) => RawJson; isRawJSON?: (value: unknown) => value is RawJson };

/** JSON.parse passes each primitive's source text to the reviver. */
export const hasSourceAccess: boolean = (() => {
  try {
    let seen: string | undefined;
    JSON.parse("1", function (this: unknown, _k: string, v: unknown, ctx?: SourceContext) {
      seen ??= ctx?.source;
      return v;
    } as (k: string, v: unknown) => unknown);
    return seen === "1";
  } catch {
    return false;
  }
})();

/** A decimal as sign, significant digits and exponent: value = ±digits × 10^exp ("" is zero). */
export interface DecimalParts {
  neg: boolean;
  digits: string;
  exp: number;
}

const DECIMAL = /^\s*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*$/;

/** Parses decimal text (JSON numbers, Postgres numeric and int8 text); undefined for anything else. */
export function decimalParts(text: string): DecimalParts | undefined {
  const m = DECIMAL.exec(text);
  if (!m) return undefined;
  const int = m[2] ?? "";
  const frac = m[3] ?? "";
  if (int === "" && frac === "") return undefined;
  let digits = (int + frac).replace(/^0+/, "");
  let exp = Number(m[4] ?? 0) - frac.length;
  const trailing = digits.length - digits.replace(/0+$/, "").length;
  digits = digits.slice(0, digits.length - trailing);
  exp += trailing;
  if (digits === "") return { neg: false, digits: "", exp: 0 };
  return { neg: m[1] === "-", digits, exp };
}

/** True when the float `n` has exactly the decimal value written as `source`. */
function holdsExactly(source: string, n: number): boolean {
  if (!Number.isFinite(n)) return false;
  if (String(n) === source) return true;
  const a = decimalParts(source);
  const b = decimalParts(String(n));
  return a !== undefined && b !== undefined && a.neg === b.neg && a.digits === b.digits && a.exp === b.exp;
}

export type ExactMode = "raw" | "value" | "text";

/** What "value" and "text" modes make of a number a float cannot hold. */
const inexactValue = (source: string, mode: ExactMode): bigint | string => (mode === "value" && /^-?\d+$/.test(source) ? BigInt(source) : source);

/**
 * True when the JSON text has a number, outside strings, that might not print
 * back as written: a fraction, an exponent, 16 or more digits, or -0. Only
 * then is the slow path (a reviver on every value, about 7x JSON.parse) taken;
 * notifiws's own frames and batches carry only short integers as numbers
 * (row values that could round travel as text), so they never are. A scan of
 * char codes costs a fraction of JSON.parse and, unlike a regex, skips
 * strings (timestamps and uuids are full of digits and dots).
 */
export function hasInexactCandidate(text: string): boolean {
  return scanJson(text, (start, end) => {
    const neg = text.charCodeAt(start) === 0x2d;
    const len = end - start - (neg ? 1 : 0);
    if (len >= 16) return true;
    for (let i = start; i < end; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x2e /* . */ || c === 0x65 /* e */ || c === 0x45 /* E */) return true;
    }
    return neg && len === 1 && text.charCodeAt(start + 1) === 0x30; // -0
  });
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/**
 * Walks JSON text, skipping the contents of strings (escapes included), and
 * calls `number(start, end)` for each number token and `string(start, end)`
 * (quotes included) for each string; a callback that returns true stops the
 * walk, and the walk then returns true. The one scanner behind the fast-path
 * check above and the fallback parser below.
 */
function scanJson(text: string, number: (start: number, end: number) => boolean | void, string?: (start: number, end: number) => boolean | void): boolean {
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      if (string?.(start, i + 1)) return true;
    } else if (c === 0x2d /* - */ || isDigit(c)) {
      const start = i;
      if (c === 0x2d) i++;
      while (i < n && isDigit(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) === 0x2e /* . */) for (i++; i < n && isDigit(text.charCodeAt(i));) i++;
      if ((text.charCodeAt(i) | 0x20) === 0x65 /* e or E */) {
        i++;
        if (text.charCodeAt(i) === 0x2b || text.charCodeAt(i) === 0x2d) i++;
        while (i < n && isDigit(text.charCodeAt(i))) i++;
      }
      if (number(start, i)) return true;
      i--;
    }
  }
  return false;
}

export function parseJsonExact(text: string, mode: ExactMode): unknown {
  if (!hasInexactCandidate(text)) return JSON.parse(text);
  if (hasSourceAccess) {
    const reviver = (_k: string, v: unknown, ctx?: SourceContext): unknown => {
      if (typeof v !== "number" || ctx?.source === undefined) return v;
      const src = ctx.source;
      if (mode === "raw") return String(v) === src || !J.rawJSON ? v : J.rawJSON(src);
      return holdsExactly(src, v) ? v : inexactValue(src, mode);
    };
    return JSON.parse(text, reviver as (k: string, v: unknown) => unknown);
  }
  return mode === "raw" ? JSON.parse(text) : parseJsonMarked(text, mode);
}

/**
 * JSON.stringify that writes a bigint as an exact JSON number (where the
 * runtime has JSON.rawJSON) or as its digits in a string, instead of throwing.
 */
export function stringifyExact(value: unknown, space?: number): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? (J.rawJSON ? J.rawJSON(v.toString()) : v.toString()) : v), space);
}

/** The text of a JSON.rawJSON value (a number the Worker kept as written), else undefined. */
export function rawJsonText(value: unknown): string | undefined {
  return J.isRawJSON?.(value) ? value.rawJSON : undefined;
}

// ---------------------------------------------------------------------------
// Fallback without source access: inexact number tokens are rewritten as
// strings behind a private-use marker, then the reviver turns them back.
// A real string that starts with the marker gets a second one, removed again.
// ---------------------------------------------------------------------------

const MARK = "\uE000";

/** The fallback parser ("value" and "text" modes); exported so tests run it where source access exists too. */
export function parseJsonMarked(text: string, mode: Exclude<ExactMode, "raw">): unknown {
  let out = "";
  let last = 0;
  scanJson(
    text,
    (start, end) => {
      const token = text.slice(start, end);
      if (holdsExactly(token, Number(token))) return;
      out += `${text.slice(last, start)}"${MARK}${token}"`;
      last = end;
    },
    (start) => {
      if (!text.startsWith(MARK, start + 1) && !text.startsWith("\\ue000", start + 1) && !text.startsWith("\\uE000", start + 1)) return;
      out += text.slice(last, start + 1) + MARK;
      last = start + 1;
    },
  );
  out += text.slice(last);
  return JSON.parse(out, (_k, v: unknown) => {
    if (typeof v !== "string" || !v.startsWith(MARK)) return v;
    return v.startsWith(MARK, 1) ? v.slice(1) : inexactValue(v.slice(1), mode);
  });
}

// ---------------------------------------------------------------------------
// Comparing decimals exactly (filters)
// ---------------------------------------------------------------------------

/** Where a number stands in Postgres's order: -Infinity, finite values, Infinity, NaN. */
type Ordered = { rank: 0 | 2 | 3 } | { rank: 1; parts: DecimalParts };

/** Decimal text, or Postgres's NaN / Infinity / -Infinity, as something comparable. */
export function orderedNumber(text: string): Ordered | undefined {
  const t = text.trim();
  if (t === "NaN") return { rank: 3 };
  if (t === "Infinity" || t === "+Infinity") return { rank: 2 };
  if (t === "-Infinity") return { rank: 0 };
  const parts = decimalParts(t);
  return parts ? { rank: 1, parts } : undefined;
}

/**
 * Compares two numbers given as text, exactly, in Postgres's order for
 * numeric and float: -Infinity < every finite value < Infinity < NaN, and NaN
 * equals NaN.
 */
export function compareOrdered(a: Ordered, b: Ordered): number {
  if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1;
  if (a.rank !== 1 || b.rank !== 1) return 0;
  const x = a.parts;
  const y = b.parts;
  const sx = x.digits === "" ? 0 : x.neg ? -1 : 1;
  const sy = y.digits === "" ? 0 : y.neg ? -1 : 1;
  if (sx !== sy) return sx < sy ? -1 : 1;
  if (sx === 0) return 0;
  // Compare magnitudes by the position of the leading digit, then digit by digit.
  const mx = x.digits.length + x.exp;
  const my = y.digits.length + y.exp;
  let c: number;
  if (mx !== my) c = mx < my ? -1 : 1;
  else {
    const n = Math.max(x.digits.length, y.digits.length);
    const px = x.digits.padEnd(n, "0");
    const py = y.digits.padEnd(n, "0");
    c = px < py ? -1 : px > py ? 1 : 0;
  }
  return sx < 0 ? -c : c;
}
