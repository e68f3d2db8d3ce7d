-- Live tables (docs/live-tables.md). A watch records the columns that
-- identify a row (`key`: the table's primary key unless watch() was given
-- one), so GET /v1/channels/:channel/rows can name them and clients can keep
-- rows keyed. Watches made before this migration take their table's primary
-- key; a table without one keeps NULL and its channel answers the rows route
-- with TABLE_HAS_NO_KEY until watch() is called again with `key`.
ALTER TABLE notifiws.watches ADD COLUMN IF NOT EXISTS key text[];

UPDATE notifiws.watches w SET key = (
  SELECT array_agg(a.attname::text ORDER BY k.ord)
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
  WHERE i.indrelid = w.tbl AND i.indisprimary
)
WHERE key IS NULL;

-- Derived channels (watch() with a condition) send `enter` when an update
-- moves a row into the condition and `leave` when one moves it out.
ALTER TABLE notifiws.outbox DROP CONSTRAINT IF EXISTS outbox_op_check;
ALTER TABLE notifiws.outbox ADD CONSTRAINT outbox_op_check CHECK (op IN ('insert', 'update', 'delete', 'publish', 'enter', 'leave'));
