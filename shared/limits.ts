/**
 * Production limits that local workerd does not enforce, and the guards we
 * keep below them. No dependency (no zod): the Worker, the channel object,
 * the relay and the tests all import these.
 *
 * Cloudflare's published limits (Durable Objects, Workers WebSockets):
 * - one SQLite string/BLOB/row in a Durable Object: 2 MB;
 * - bound parameters per SQL statement: 100;
 * - one WebSocket attachment (serializeAttachment): 16 KiB;
 * - one received WebSocket message: 32 MiB;
 * - memory per isolate: 128 MB.
 */

/** Platform: max bytes of one SQLite value or row in a Durable Object. */
export const PLATFORM_SQL_VALUE_MAX_BYTES = 2_000_000;
/** Platform: max bound parameters in one Durable Object SQL statement. */
export const PLATFORM_SQL_MAX_PARAMS = 100;
/** Platform: max bytes of one hibernatable WebSocket attachment. */
export const PLATFORM_ATTACHMENT_MAX_BYTES = 16 * 1024;

/**
 * Our cap on one bound parameter (a JSON array carrying many rows): half the
 * platform value limit, so a batch is split long before SQLite would refuse it.
 */
export const SQL_PARAM_BUDGET_BYTES = 1_000_000;

/** Our cap on one socket attachment: half the platform limit. */
export const ATTACHMENT_MAX_BYTES = 8 * 1024;

/**
 * Default and ceiling for MAX_EVENT_BYTES, the size of one stored event
 * (its envelope JSON in UTF-8). The ceiling leaves room under the 2 MB row
 * limit for the row's other columns.
 */
export const DEFAULT_MAX_EVENT_BYTES = 1_000_000;
export const MAX_EVENT_BYTES_CEILING = 1_900_000;

/**
 * Room for `,"seq":<n>` that the channel adds to an event before storing it;
 * the ingest route measures events without it.
 */
export const SEQ_FIELD_BYTES = 24;

/** The UTF-8 size an event will have once stored with its seq: what MAX_EVENT_BYTES limits. */
export const storedEventBytes = (event: object): number => storedJsonBytes(JSON.stringify(event));

/** The same, for an event already serialized. */
export const storedJsonBytes = (json: string): number => utf8Length(json) + SEQ_FIELD_BYTES;

/** Bytes of `s` encoded as UTF-8, without allocating the encoding. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4; // a surrogate pair is one 4-byte code point
        i++;
      } else n += 3; // a lone surrogate is encoded as U+FFFD
    } else n += 3;
  }
  return n;
}

/**
 * Packs values into JSON arrays whose UTF-8 size stays at or under `budget`
 * bytes, in order. A value too large for any array comes back alone, as
 * `single`, for the caller to bind directly instead of inside an array.
 */
export function packJsonArrays<T>(values: readonly T[], budget: number): ({ json: string; count: number } | { single: T })[] {
  const out: ({ json: string; count: number } | { single: T })[] = [];
  let parts: string[] = [];
  let size = 2; // the brackets
  const flush = () => {
    if (parts.length === 0) return;
    out.push({ json: `[${parts.join(",")}]`, count: parts.length });
    parts = [];
    size = 2;
  };
  for (const v of values) {
    const enc = JSON.stringify(v);
    const bytes = utf8Length(enc);
    if (bytes + 2 > budget) {
      flush();
      out.push({ single: v });
      continue;
    }
    if (parts.length > 0 && size + 1 + bytes > budget) flush();
    size += (parts.length > 0 ? 1 : 0) + bytes;
    parts.push(enc);
  }
  flush();
  return out;
}

/** Local stand-in for a limit that production enforces and local workerd does not. */
export class PlatformLimitError extends Error {
  readonly code = "PLATFORM_LIMIT";
}

/**
 * Refuses a statement exactly where production Durable Object SQL would:
 * more than 100 bound parameters, or a string/BLOB parameter over 2 MB. Our
 * own guards stay well below; this makes a regression fail tests locally.
 */
export function checkSqlBindings(params: readonly unknown[]): void {
  if (params.length > PLATFORM_SQL_MAX_PARAMS)
    throw new PlatformLimitError(`${params.length} bound parameters; Durable Object SQL allows ${PLATFORM_SQL_MAX_PARAMS}`);
  for (const p of params) {
    // A string of n UTF-16 units is at most 3n UTF-8 bytes: count only when that could exceed the limit.
    const bytes = typeof p === "string" ? (p.length * 3 > PLATFORM_SQL_VALUE_MAX_BYTES ? utf8Length(p) : 0) : p instanceof ArrayBuffer ? p.byteLength : 0;
    if (bytes > PLATFORM_SQL_VALUE_MAX_BYTES)
      throw new PlatformLimitError(`a bound value of ${bytes} bytes; Durable Object SQLite allows ${PLATFORM_SQL_VALUE_MAX_BYTES}`);
  }
}
