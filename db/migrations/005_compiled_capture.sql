-- Compiled capture triggers. watch() now writes one trigger function per
-- (table, channel) with the channel, the published columns and include_old
-- baked in, building the published row with jsonb_build_object over exactly
-- those columns. The generic notifiws.capture() (kept, for triggers created by
-- hand) serialises the whole row with to_jsonb and filters it key by key
-- (jsonb_each + jsonb_object_agg) on every write, and parses its arguments each
-- time. Bench W5 (8 writers, poll mode, fsync on): the compiled trigger costs
-- about half as much (docs/database.md).
--
-- Same events as before: the same keys (a NULL column is a JSON null), the same
-- skip of updates that touch only unpublished columns, the same wake-up mode.

-- The function's name for one (table, channel); stable across table renames (keyed on the oid).
CREATE OR REPLACE FUNCTION notifiws.capture_function_name(tbl regclass, channel text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT 'capture_' || left(md5(tbl::oid::text || '/' || channel), 16) $$;

-- jsonb_build_object over `rec`'s listed columns; ARRAY['*'] is the whole row.
-- A function takes at most 100 arguments, so wide lists are built 50 columns at a time and joined with ||.
CREATE OR REPLACE FUNCTION notifiws.build_expression(rec text, columns text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN columns = ARRAY['*'] THEN format('to_jsonb(%s)', rec)
    ELSE (
      SELECT string_agg(part, ' || ')
      FROM (
        SELECT 'jsonb_build_object(' || string_agg(format('%L, %s.%I', c, rec, c), ', ' ORDER BY i) || ')' AS part
        FROM unnest(columns) WITH ORDINALITY AS u(c, i)
        GROUP BY (i - 1) / 50
        ORDER BY (i - 1) / 50
      ) parts
    )
  END
$$;

-- Writes (or rewrites) the trigger function for one (table, channel) and returns its name.
CREATE OR REPLACE FUNCTION notifiws.compile_capture(tbl regclass, channel text, columns text[], include_old boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  fname text := notifiws.capture_function_name(tbl, channel);
BEGIN
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION notifiws.%I() RETURNS trigger
    LANGUAGE plpgsql AS $body$
    DECLARE
      new_data jsonb;
      old_data jsonb;
    BEGIN
      IF TG_OP = 'DELETE' THEN
        new_data := %s;
      ELSE
        new_data := %s;
      END IF;
      IF TG_OP = 'UPDATE' THEN
        old_data := %s;
        -- An update that touched only unpublished columns is not an event.
        IF new_data IS NOT DISTINCT FROM old_data THEN
          RETURN NULL;
        END IF;
        %s
      END IF;
      INSERT INTO notifiws.outbox (channel, op, table_name, data, old_data)
      VALUES (%L, lower(TG_OP), TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, new_data, old_data);
      IF coalesce(current_setting('notifiws.wakeup', true), '') <> 'poll' THEN
        PERFORM pg_notify(notifiws.wakeup_channel(), '');
      END IF;
      RETURN NULL;
    END
    $body$
  $f$,
    fname,
    notifiws.build_expression('OLD', columns),
    notifiws.build_expression('NEW', columns),
    notifiws.build_expression('OLD', columns),
    CASE WHEN include_old THEN '' ELSE 'old_data := NULL;' END,
    channel);
  RETURN fname;
END
$$;

CREATE OR REPLACE FUNCTION notifiws.watch(
  tbl regclass,
  channel text,
  columns text[],
  condition text DEFAULT NULL,
  include_old boolean DEFAULT false,
  ops text[] DEFAULT ARRAY['insert', 'update', 'delete']
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  op text;
  missing text;
  cond text;
  fname text;
BEGIN
  IF channel IS NULL OR channel !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$' THEN
    RAISE EXCEPTION 'notifiws.watch: invalid channel name %', channel USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF columns IS NULL OR cardinality(columns) = 0 THEN
    RAISE EXCEPTION 'notifiws.watch: columns allow-list is required (use ARRAY[''*''] to publish every column)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF columns <> ARRAY['*'] THEN
    SELECT string_agg(c, ', ') INTO missing FROM unnest(columns) AS c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = c AND attnum > 0 AND NOT attisdropped);
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'notifiws.watch: % has no column(s) %', tbl, missing USING ERRCODE = 'undefined_column';
    END IF;
  END IF;
  FOREACH op IN ARRAY ops LOOP
    IF op NOT IN ('insert', 'update', 'delete') THEN
      RAISE EXCEPTION 'notifiws.watch: unknown op %', op USING ERRCODE = 'invalid_parameter_value';
    END IF;
  END LOOP;
  fname := notifiws.compile_capture(tbl, channel, columns, include_old);
  -- Every op of this (table, channel) is replaced, so one not listed in `ops` stops publishing.
  FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', notifiws.trigger_name(channel, op), tbl);
  END LOOP;
  FOREACH op IN ARRAY ops LOOP
    -- A DELETE trigger cannot reference NEW, so its condition sees the deleted row as OLD.
    cond := CASE WHEN op = 'delete' THEN regexp_replace(condition, '\mNEW\.', 'OLD.', 'gi') ELSE condition END;
    EXECUTE format(
      'CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW %s EXECUTE FUNCTION notifiws.%I()',
      notifiws.trigger_name(channel, op), upper(op), tbl,
      CASE WHEN cond IS NULL THEN '' ELSE 'WHEN (' || cond || ')' END,
      fname
    );
  END LOOP;
END
$$;

-- Stops publishing `tbl` to `channel` (every op) and drops its trigger function.
CREATE OR REPLACE FUNCTION notifiws.unwatch(tbl regclass, channel text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  op text;
BEGIN
  FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', notifiws.trigger_name(channel, op), tbl);
  END LOOP;
  EXECUTE format('DROP FUNCTION IF EXISTS notifiws.%I()', notifiws.capture_function_name(tbl, channel));
END
$$;

-- Triggers that watch() created before this migration call the generic
-- capture(channel, columns, include_old): compile each (table, channel) and
-- point its triggers at the compiled function, keeping each trigger's op and
-- WHEN condition as they are.
DO $$
DECLARE
  t record;
  args text[];
  fname text;
  def text;
BEGIN
  FOR t IN
    SELECT tg.oid, tg.tgname, tg.tgrelid::regclass AS tbl, tg.tgargs
    FROM pg_trigger tg
    WHERE tg.tgfoid = 'notifiws.capture()'::regprocedure AND tg.tgname LIKE 'notifiws\_%' AND tg.tgnargs = 3
  LOOP
    -- tgargs holds the arguments NUL-terminated; the escape encoding shows each NUL as \000.
    args := string_to_array(regexp_replace(encode(t.tgargs, 'escape'), '\\000$', ''), '\000');
    fname := notifiws.compile_capture(t.tbl, args[1], args[2]::text[], args[3]::boolean);
    def := regexp_replace(pg_get_triggerdef(t.oid), 'EXECUTE FUNCTION notifiws\.capture\(.*\)$', format('EXECUTE FUNCTION notifiws.%I()', fname));
    EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.tbl);
    EXECUTE def;
  END LOOP;
END
$$;
