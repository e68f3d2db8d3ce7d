-- The rows route (GET /v1/channels/:channel/rows, docs/live-tables.md): a
-- watched table's rows that match its channel's condition, with exactly the
-- published columns encoded as events encode them (row_codec in capture.sql),
-- and the snapshot they were read under. A repeatable definition file, like
-- capture.sql (db/migrate.ts applies it after capture.sql).

-- The one watch behind a channel: its table, published columns (expanded
-- now), condition and key; `watches` counts the watches that feed the
-- channel (a live table needs exactly one; NULL when none does). SECURITY DEFINER, so the
-- Worker's role reads the registry through this function and needs no grant
-- on it; it answers nothing a subscriber of the channel could not learn.
CREATE OR REPLACE FUNCTION notifiws.channel_watch(channel text,
  OUT tbl regclass, OUT columns text[], OUT condition text, OUT key text[], OUT watches integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT w.tbl, notifiws.published_columns(w.tbl, w.columns), w.condition, w.key, (count(*) OVER ())::integer
  FROM notifiws.watches w
  WHERE w.channel = channel_watch.channel AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.tbl)
  LIMIT 1
$$;

-- The channel's rows as one JSON text, or a refusal: `code` is NULL and
-- `body` is `{"rows":[...],"types":{...},"key":[...],"table":"...","snapshot":{...}}`,
-- or `code` names why not (CHANNEL_NOT_A_TABLE, TABLE_HAS_NO_KEY,
-- TABLE_TOO_LARGE) and `message` says it for a person. Runs with the
-- caller's rights: the Worker's role needs SELECT on the published columns
-- and on the columns the channel's condition reads, nothing else. Must run
-- inside a REPEATABLE READ transaction (notifiws.snapshot() refuses any other),
-- so the rows and the snapshot describe the same database. Rows are read in
-- key order and counted as they come: the read stops at the first row past
-- `max_rows` or past `max_bytes` of row JSON, so a table over the cap costs
-- the database at most the cap.
CREATE OR REPLACE FUNCTION notifiws.table_rows(channel text, max_rows integer, max_bytes bigint,
  OUT code text, OUT message text, OUT body text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  w record;
  codec record;
  parts text[] := '{}';
  r record;
  n integer := 0;
  bytes bigint := 0;
BEGIN
  SELECT * INTO w FROM notifiws.channel_watch(channel);
  IF w.watches IS NULL THEN
    code := 'CHANNEL_NOT_A_TABLE';
    message := format('channel %s is not fed by a watched table (notifiws.watch())', channel);
    RETURN;
  ELSIF w.watches > 1 THEN
    code := 'CHANNEL_NOT_A_TABLE';
    message := format('channel %s is fed by %s watches; a live table needs exactly one', channel, w.watches);
    RETURN;
  ELSIF w.key IS NULL THEN
    code := 'TABLE_HAS_NO_KEY';
    message := format('the watch of %s on channel %s has no key: call notifiws.watch() again with key => ARRAY[...]', w.tbl, channel);
    RETURN;
  END IF;
  codec := notifiws.row_codec('t', w.tbl, w.columns);
  FOR r IN EXECUTE format('SELECT (%s)::text AS j FROM %s AS t %s ORDER BY %s LIMIT %s',
      codec.expr, w.tbl,
      CASE WHEN w.condition IS NULL THEN '' ELSE 'WHERE ' || notifiws.condition_on(w.condition, 't') END,
      (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(w.key) AS k),
      max_rows + 1)
  LOOP
    n := n + 1;
    bytes := bytes + octet_length(r.j) + 1;
    IF n > max_rows OR bytes > max_bytes THEN
      code := 'TABLE_TOO_LARGE';
      message := format('channel %s has more than %s rows or %s bytes of rows (ROWS_MAX_ROWS, ROWS_MAX_BYTES); narrow it with a derived channel (watch() with a condition)',
        channel, max_rows, max_bytes);
      RETURN;
    END IF;
    parts := parts || r.j;
  END LOOP;
  body := '{"rows":[' || array_to_string(parts, ',') || '],"types":' || codec.types::text
    || ',"key":' || to_jsonb(w.key)::text || ',"table":' || (SELECT to_jsonb(n.nspname || '.' || c.relname)::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = w.tbl)
    || ',"snapshot":' || notifiws.snapshot()::text || '}';
END
$$;
