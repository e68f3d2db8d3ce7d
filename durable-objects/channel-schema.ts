/**
 * The tables of a channel's object (event-store.ts): the history in pages
 * with their dedupe ids (`pages`, which also tell replayed batches), ids
 * kept before pages (`dedupe`, read until they expire), the counters and
 * identity (`meta`), and the ordering object's attached fan-out objects. Every row written is billed, index entries included
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
  // 3: dedupe ids in time slices, one row each (durable-objects/dedupe.ts), tagged with the batch
  // that stored them, which replaces the batch ledger (two rows and two deletes per batch).
  // Ids kept so far go into day slices (at most 30 for the longest window, so lookups stay a
  // few probes); the ledger's replay window is covered by their ids.
  `CREATE TABLE IF NOT EXISTS dedupe (bucket INTEGER NOT NULL, id TEXT NOT NULL, batch TEXT, PRIMARY KEY (bucket, id)) WITHOUT ROWID;
   INSERT OR IGNORE INTO dedupe (bucket, id, batch) SELECT (at / 86400000 + 1) * 86400000, id, NULL FROM seen;
   DROP TABLE IF EXISTS seen;
   DROP TABLE IF EXISTS batches;`,
  // 4: the history in pages, each holding its entries' dedupe ids (durable-objects/pages.ts): a
  // batch writes one row. Events kept so far become a page each ("[]": their ids are still in
  // `dedupe`, read until its slices expire); no new ids go there.
  `CREATE TABLE IF NOT EXISTS pages (first INTEGER PRIMARY KEY, last INTEGER NOT NULL, at INTEGER NOT NULL, committed INTEGER NOT NULL,
     runs TEXT NOT NULL, ids TEXT NOT NULL, body TEXT, bytes INTEGER NOT NULL);
   INSERT OR IGNORE INTO pages (first, last, at, committed, runs, ids, body, bytes)
     SELECT seq, seq, at, 0, json_array(json_array(at, 1, NULL)), '[]', body, length(CAST(body AS BLOB)) FROM events;
   DROP TABLE IF EXISTS events;`,
];
