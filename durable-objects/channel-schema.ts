/**
 * The tables of a channel's object (event-store.ts): events with their seq
 * (the bounded history), dedupe ids (`seen`), the counters and identity
 * (`meta`), the batch ledger, and the ordering object's attached fan-out
 * objects. Every row written is billed, index entries included
 * (docs/benchmarks.md, "Cost: SQLite rows per event").
 */

/** Schema steps (durable-objects/schema.ts): append, never edit. */
export const CHANNEL_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL);
   CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS seen_at ON seen(at);
   CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v);
   CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS events_at ON events(at);
   CREATE TABLE IF NOT EXISTS fanouts (name TEXT PRIMARY KEY, region TEXT NOT NULL, failing INTEGER NOT NULL DEFAULT 0);`,
  // 2: every index entry is a billed row written on insert and again on delete; the age
  // prunes read the tables in insertion order instead (sql.ts, pruneBefore).
  `DROP INDEX IF EXISTS events_at;
   DROP INDEX IF EXISTS seen_at;`,
];
