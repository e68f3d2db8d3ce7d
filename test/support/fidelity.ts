/**
 * The type-fidelity table: a user's table with every kind of value that
 * JSON and JavaScript tend to round, drop or rename, and what Postgres
 * itself says each row must look like on the wire (docs/protocol.md,
 * "Values"), computed with Postgres's own functions, not notifiws's.
 */
import type pg from "pg";

export const FIDELITY_DDL = `
CREATE TYPE mood AS ENUM ('sad', 'happy', 'ünï 😀');
CREATE DOMAIN big_id AS int8 CHECK (VALUE <> 0);
CREATE TABLE fidelity (
  k int4 PRIMARY KEY,
  i2 int2, i4 int4, i8 int8, dom big_id,
  n numeric, n_scaled numeric(40, 10),
  f4 float4, f8 float8, m money, b bool,
  tx text, vc varchar(40), ch char(3),
  j json, jb jsonb, by bytea, u uuid,
  d date, t time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  a8 int8[], an numeric[], a2 int4[], af float8[], atx text[],
  e mood,
  "__proto__" text, "constructor" int8, "toString" text,
  secret text
);`;

/** Every column but `secret`, which is never published. */
export const FIDELITY_COLUMNS = [
  "k", "i2", "i4", "i8", "dom", "n", "n_scaled", "f4", "f8", "m", "b", "tx", "vc", "ch", "j", "jb", "by", "u",
  "d", "t", "ttz", "ts", "tstz", "iv", "a8", "an", "a2", "af", "atx", "e", "__proto__", "constructor", "toString",
]; // prettier-ignore

export const watchFidelity = (channel: string) =>
  `SELECT notifiws.watch('fidelity', '${channel}', ARRAY[${FIDELITY_COLUMNS.map((c) => `'${c}'`).join(", ")}], include_old => true)`;

/** Text with an astral character, a combining mark, U+2028/2029, the highest code point, quotes and a backslash. */
export const HARD_TEXT = "a😀e\u0301\u2028\u2029\u{10FFFF}\"\\'\ttab";

/** Rows at the edges: maximums, minimums and specials, and all NULL. */
export const FIDELITY_INSERT = `
INSERT INTO fidelity VALUES
 (1, 32767, 2147483647, 9223372036854775807, 9007199254740993,
  '123456789012345678901234567890.123456789012345', '12345678901234567890.12',
  '3.4028235e38', '1.7976931348623157e308', '92233720368547758.07', true,
  $1, 'varchar ünï', 'ab',
  '{"big": 12345678901234567890, "__proto__": {"polluted": true}, "f": [1.5, -0, 1.10, 1e400]}',
  '{"big": -12345678901234567890, "dec": 0.1000000000000000000000001, "constructor": {"prototype": 1}}',
  '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2026-11-30', '24:00:00', '23:59:59.999999+14', '2026-02-28 23:59:59.999999', '2026-11-30 10:11:12.123456+00', '178000000 years 1 mon -3 days 04:05:06.789',
  '{9223372036854775807,-9223372036854775808,NULL}', '{NaN,Infinity,-Infinity,0.000000000000000000000000000001}',
  '{{1,2},{3,4}}', '{-0,NaN,1e308}', '{"", NULL, "a,b", "{}"}',
  'ünï 😀', 'proto', 9007199254740993, 'toString', 'hunter2'),
 (2, -32768, -2147483648, -9223372036854775808, -1,
  'NaN', '-0.0000000001',
  'NaN', '-0', '-92233720368547758.08', false,
  '', '', '', 'null', '[]', '\\x', '00000000-0000-0000-0000-000000000000',
  'infinity', '00:00', '00:00+00', '-infinity', 'infinity', '-1 days -00:00:01',
  '{}', '{}', '{}', '{}', '{}',
  'sad', '', -9223372036854775808, '', 's2'),
 (3, 0, 0, 9007199254740992, 1,
  'Infinity', '0', '-Infinity', 'Infinity', '0', true,
  'plain', 'v', 'c', '1', '"string"', '\\x41', NULL,
  '-infinity', '12:00', '12:00-03:30', 'infinity', '-infinity', '0',
  NULL, '{-Infinity}', NULL, '{-Infinity}', NULL,
  'happy', NULL, 0, NULL, 's3'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`;

export const insertFidelity = (db: { query: (sql: string, params?: unknown[]) => Promise<unknown> }) => db.query(FIDELITY_INSERT, [HARD_TEXT]);

/**
 * What each row must be on the wire, from Postgres: int2/int4/bool as JSON
 * values; int8, numeric and float as their text (this connection keeps
 * extra_float_digits = 1, the default); money as its numeric amount; json and
 * jsonb as their text; bytea as \x + hex; dates and times as to_json prints
 * them; arrays as JSON arrays of element text (int4 arrays as numbers);
 * everything else as its text.
 */
export async function expectedWireRows(db: { query: (sql: string) => Promise<pg.QueryResult> }): Promise<Map<number, Record<string, unknown>>> {
  const { rows } = await db.query(`
    SELECT k, json_build_object(
      'k', k, 'i2', i2, 'i4', i4, 'i8', i8::text, 'dom', dom::text, 'n', n::text, 'n_scaled', n_scaled::text,
      'f4', f4::text, 'f8', f8::text, 'm', m::numeric::text, 'b', b,
      'tx', tx, 'vc', vc, 'ch', ch, 'j', j::text, 'jb', jb::text, 'by', '\\x' || encode(by, 'hex'), 'u', u::text,
      'd', to_json(d), 't', to_json(t), 'ttz', to_json(ttz), 'ts', to_json(ts), 'tstz', to_json(tstz), 'iv', iv::text,
      'a8', array_to_json(a8::text[]), 'an', array_to_json(an::text[]), 'a2', array_to_json(a2), 'af', array_to_json(af::text[]),
      'atx', array_to_json(atx), 'e', e::text, '__proto__', "__proto__", 'constructor', "constructor"::text, 'toString', "toString"
    )::text AS wire FROM fidelity ORDER BY k`);
  // JSON.parse is exact here: the only numbers are int2/int4, and it creates own properties for "__proto__".
  return new Map(rows.map((r: { k: number; wire: string }) => [r.k, JSON.parse(r.wire) as Record<string, unknown>]));
}

/** Own entries sorted by key: compares rows whatever their key order, `__proto__` included. */
export const entries = (row: Record<string, unknown> | null | undefined) => Object.entries(row ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
