-- Capture: watch(), unwatch(), the compiled trigger functions and the exact
-- value encoding. A repeatable definition file: db/migrate.ts applies it after
-- the versioned migrations whenever its checksum changes, so each function has
-- this one home (earlier migrations hold their history only). The last
-- statement recompiles every registered watch, so a change of the encoding
-- here reaches triggers that already exist.
--
-- Exact values (docs/protocol.md, "Values"): a JSON number is read as a
-- 64-bit float by every JavaScript hop and by most JSON libraries, so only
-- bool, int2 and int4 travel as JSON natives. int8, numeric, money, float4,
-- float8, json, jsonb and composite values travel as their Postgres text (a
-- JSON string), arrays element by element, and the event names each column's
-- type (`types`), so a client can decode them without guessing.

-- The channel the relay LISTENs on. Payload is always empty, so Postgres
-- folds every notification of one transaction into a single wake-up. Only
-- sent with notifiws.wakeup = 'notify': NOTIFY takes a database-wide lock at
-- commit that serialises committing writers (docs/database.md), so by default
-- the relay polls instead (RELAY_POLL_MS).
CREATE OR REPLACE FUNCTION notifiws.wakeup_channel() RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'notifiws_outbox' $$;

-- The prefix of the logical messages written in 'wal' mode; the relay reads only these.
CREATE OR REPLACE FUNCTION notifiws.message_prefix() RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'notifiws' $$;

-- 'outbox' or 'wal' (migration 007): where the capture functions write.
-- SECURITY DEFINER: a relay's role needs no grant on the settings table to read it.
CREATE OR REPLACE FUNCTION notifiws.capture_mode() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT mode FROM notifiws.capture_settings), 'outbox') $$;

-- Whether gap markers wait to be sent (relay/gaps.ts); SECURITY DEFINER, so
-- an outbox-only relay needs no grant on notifiws.pending_gaps to ask.
CREATE OR REPLACE FUNCTION notifiws.has_pending_gaps() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM notifiws.pending_gaps) $$;

-- The highest outbox id handed out at the last switch to 'outbox' (migration 007), or NULL.
CREATE OR REPLACE FUNCTION notifiws.outbox_from() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT outbox_from FROM notifiws.capture_settings $$;

-- Switches the capture mode and recompiles every watch; returns the previous
-- mode. The relay calls it (RELAY_CAPTURE): in 'wal' mode only after its
-- replication slot exists, so no message is written before something keeps
-- it; in either direction it then waits for the transactions that began
-- before the switch, and drains what they wrote to the old sink. It runs
-- with its owner's rights (the role that migrated and owns the compiled
-- functions) and only roles granted EXECUTE may call it (README.md, "The
-- database roles"). Every watch must compile, or nothing switches: a function
-- left on the old sink would write where nobody reads.
CREATE OR REPLACE FUNCTION notifiws.set_capture_mode(mode text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  prev text;
  w record;
BEGIN
  IF mode IS NULL OR mode NOT IN ('outbox', 'wal') THEN
    RAISE EXCEPTION 'notifiws.set_capture_mode: unknown mode % (outbox or wal)', mode USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF mode = 'wal' AND current_setting('wal_level') <> 'logical' THEN
    RAISE EXCEPTION 'notifiws: WAL capture needs wal_level = logical (this server has %)', current_setting('wal_level')
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  -- The row lock serialises concurrent switches.
  SELECT s.mode INTO prev FROM notifiws.capture_settings s FOR UPDATE;
  IF prev IS NOT DISTINCT FROM mode THEN
    RETURN prev;
  END IF;
  INSERT INTO notifiws.capture_settings (singleton, mode, changed_at) VALUES (true, mode, now())
  ON CONFLICT (singleton) DO UPDATE SET mode = EXCLUDED.mode, changed_at = EXCLUDED.changed_at;
  IF mode = 'outbox' THEN
    UPDATE notifiws.capture_settings SET outbox_from = (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM notifiws.outbox_id_seq);
  END IF;
  DELETE FROM notifiws.watches WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = watches.tbl);
  FOR w IN SELECT * FROM notifiws.watches ORDER BY tbl, channel LOOP
    PERFORM notifiws.compile_capture(w.tbl, w.channel, w.columns, w.include_old, w.condition);
  END LOOP;
  RETURN coalesce(prev, 'outbox');
END
$$;
REVOKE ALL ON FUNCTION notifiws.set_capture_mode(text) FROM PUBLIC;

-- One event as the logical message 'wal' mode writes, read by relay/wal.ts:
-- a JSON header line (event id, channel, op, table, txid), then the row, the
-- old row (empty when absent) and the types, each as the jsonb text the
-- outbox would hold, one per line (jsonb text has no raw newline), so the
-- relay splices the values without parsing them. A plain SQL function, so
-- the planner inlines it into the trigger's expression.
CREATE OR REPLACE FUNCTION notifiws.wal_message(channel text, op text, table_name text, data jsonb, old_data jsonb, types jsonb) RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT '{"id":"' || gen_random_uuid() || '","channel":' || to_json(channel) || ',"op":"' || op
    || '","table":' || to_json(table_name) || ',"txid":"' || pg_current_xact_id() || '"}'
    || E'\n' || coalesce(data::text, 'null') || E'\n' || coalesce(old_data::text, '') || E'\n' || coalesce(types::text, 'null')
$$;

-- The statements that hand one event to the relay, in the current capture
-- mode. In PL/pgSQL scope: op_name (text), new_data and old_data (jsonb); `ch` and `types`
-- are SQL expressions (text and jsonb).
--   outbox: a row in notifiws.outbox (event id, txid and time from its defaults);
--   wal:    a transactional logical message (notifiws.wal_message()), decoded by
--           the relay in commit order; nothing is written to a table.
CREATE OR REPLACE FUNCTION notifiws.sink_sql(ch text, types text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE notifiws.capture_mode()
    WHEN 'wal' THEN format($s$
      PERFORM pg_logical_emit_message(true, notifiws.message_prefix(),
        notifiws.wal_message(%1$s, op_name, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, new_data, old_data, %2$s));
    $s$, ch, types)
    ELSE format($s$
      INSERT INTO notifiws.outbox (channel, op, table_name, data, old_data, types)
      VALUES (%1$s, op_name, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, new_data, old_data, %2$s);
      IF current_setting('notifiws.wakeup', true) = 'notify' THEN
        PERFORM pg_notify(notifiws.wakeup_channel(), '');
      END IF;
    $s$, ch, types)
  END
$$;

-- Trigger name for one (channel, op) on a table: stable, and unique per channel.
CREATE OR REPLACE FUNCTION notifiws.trigger_name(channel text, op text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'notifiws_' || left(md5(channel), 12) || '_' || op $$;

-- The compiled function's name for one (table, channel); stable across table renames (keyed on the oid).
CREATE OR REPLACE FUNCTION notifiws.capture_function_name(tbl regclass, channel text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT 'capture_' || left(md5(tbl::oid::text || '/' || channel), 16) $$;

-- A domain's underlying type (domains over domains too); any other type itself.
CREATE OR REPLACE FUNCTION notifiws.base_type(typ oid) RETURNS oid
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE d(oid, base, kind) AS (
    SELECT t.oid, t.typbasetype, t.typtype FROM pg_type t WHERE t.oid = typ
    UNION ALL
    SELECT t.oid, t.typbasetype, t.typtype FROM pg_type t JOIN d ON t.oid = d.base WHERE d.kind = 'd'
  )
  SELECT oid FROM d WHERE kind <> 'd'
$$;

-- How a value of a (non-array) type travels:
--   'json'  its to_jsonb form is exact for any JSON reader (bool, int2, int4, strings);
--   'text'  its Postgres text, as a JSON string (numbers a 64-bit float cannot hold, nested JSON, composites);
--   'money' its amount as numeric text (money's own text depends on lc_monetary);
--   'bytea' '\x' and hex (bytea's own text depends on bytea_output).
CREATE OR REPLACE FUNCTION notifiws.value_kind(typ oid) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN b = 'money'::regtype THEN 'money'
    WHEN b = 'bytea'::regtype THEN 'bytea'
    WHEN b IN ('int8'::regtype, 'numeric'::regtype, 'float4'::regtype, 'float8'::regtype, 'json'::regtype, 'jsonb'::regtype) THEN 'text'
    WHEN (SELECT typtype = 'c' FROM pg_type WHERE oid = b) THEN 'text'
    ELSE 'json'
  END
  FROM (SELECT notifiws.base_type(typ) AS b) t
$$;

-- One published column: the SQL expression that encodes it (`rec` is NEW,
-- OLD or a parameter) and the type name its events carry: the base type's
-- name, with [] for arrays (int8, numeric, float8, jsonb, timestamptz, text[]).
CREATE OR REPLACE FUNCTION notifiws.column_codec(tbl regclass, col text, rec text, OUT expr text, OUT type_name text, OUT has_float boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  typ oid;
  elem oid;
  -- `t` is the rows route's table alias (table_rows()): a plain column
  -- reference, so a role granted SELECT on the published columns only may read it.
  ref text := CASE WHEN rec = 't' THEN format('t.%I', col) ELSE format('(%s).%I', rec, col) END;
BEGIN
  SELECT notifiws.base_type(a.atttypid) INTO typ
  FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
  IF typ IS NULL THEN
    RAISE EXCEPTION 'notifiws: % has no column %', tbl, col USING ERRCODE = 'undefined_column';
  END IF;
  SELECT notifiws.base_type(t.typelem) INTO elem FROM pg_type t WHERE t.oid = typ AND t.typcategory = 'A' AND t.typelem <> 0;
  has_float := coalesce(elem, typ) IN ('float4'::regtype, 'float8'::regtype);
  IF elem IS NULL THEN
    type_name := (SELECT typname FROM pg_type WHERE oid = typ);
    expr := CASE notifiws.value_kind(typ)
      WHEN 'text' THEN ref || '::text'
      WHEN 'money' THEN ref || '::numeric::text'
      WHEN 'bytea' THEN format($e$('\x' || encode(%s, 'hex'))$e$, ref)
      ELSE ref
    END;
  ELSE
    -- Arrays keep their shape (nested for several dimensions); each element is encoded like a scalar of its type.
    type_name := (SELECT typname FROM pg_type WHERE oid = elem) || '[]';
    expr := CASE notifiws.value_kind(elem)
      WHEN 'text' THEN format('to_jsonb(%s::text[])', ref)
      WHEN 'money' THEN format('to_jsonb(%s::numeric[]::text[])', ref)
      ELSE format('to_jsonb(%s)', ref)
    END;
  END IF;
END
$$;

-- The columns a watch publishes now: its list, or for ARRAY['*'] every column the table has at compile time.
CREATE OR REPLACE FUNCTION notifiws.published_columns(tbl regclass, columns text[]) RETURNS text[]
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN columns = ARRAY['*'] THEN
      (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped)
    ELSE columns
  END
$$;

-- The encoded row of `rec`'s listed columns, its `types` object, and whether a float is among them.
-- A function takes at most 100 arguments, so wide lists are built 50 columns at a time and joined with ||.
CREATE OR REPLACE FUNCTION notifiws.row_codec(rec text, tbl regclass, columns text[], OUT expr text, OUT types jsonb, OUT has_float boolean)
LANGUAGE sql STABLE AS $$
  WITH c AS (
    SELECT u.col, u.i, k.expr, k.type_name, k.has_float
    FROM unnest(notifiws.published_columns(tbl, columns)) WITH ORDINALITY AS u(col, i),
         LATERAL notifiws.column_codec(tbl, u.col, rec) AS k
  ),
  parts AS (
    SELECT (i - 1) / 50 AS part, 'jsonb_build_object(' || string_agg(format('%L, %s', col, expr), ', ' ORDER BY i) || ')' AS sql
    FROM c GROUP BY (i - 1) / 50
  )
  SELECT
    coalesce((SELECT string_agg(sql, ' || ' ORDER BY part) FROM parts), '''{}''::jsonb'),
    coalesce((SELECT jsonb_object_agg(col, type_name) FROM c), '{}'::jsonb),
    coalesce((SELECT bool_or(has_float) FROM c), false)
$$;

-- A watch's condition as written (over NEW) turned to read another row:
-- OLD (a delete's row, an update's previous row) or `t` (the rows route).
CREATE OR REPLACE FUNCTION notifiws.condition_on(condition text, rec text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT regexp_replace(condition, '\mNEW\.', rec || '.', 'gi') $$;

DROP FUNCTION IF EXISTS notifiws.compile_capture(regclass, text, text[], boolean);

-- Writes (or rewrites) the trigger function for one (table, channel) and returns its name.
-- With a condition (a derived channel), an update is sent as
--   update  when the row matches before and after,
--   enter   when it matches only after (the new row, no old),
--   leave   when it matches only before (the old row as `data`, like a delete),
-- so a client's list of the channel's rows stays equal to the condition's
-- rows (docs/protocol.md, "Operations").
CREATE OR REPLACE FUNCTION notifiws.compile_capture(tbl regclass, channel text, columns text[], include_old boolean, condition text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  fname text := notifiws.capture_function_name(tbl, channel);
  new_row record := notifiws.row_codec('NEW', tbl, columns);
  old_row record := notifiws.row_codec('OLD', tbl, columns);
  moves text := '';
BEGIN
  IF condition IS NOT NULL THEN
    moves := format($m$
        in_new := coalesce((%s), false);
        in_old := coalesce((%s), false);
        IF in_new AND NOT in_old THEN
          op_name := 'enter';
          old_data := NULL;
        ELSIF in_old AND NOT in_new THEN
          op_name := 'leave';
          new_data := old_data;
          old_data := NULL;
        ELSIF NOT in_new THEN
          RETURN NULL;
        END IF;
    $m$, condition, notifiws.condition_on(condition, 'OLD'));
  END IF;
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION notifiws.%I() RETURNS trigger
    LANGUAGE plpgsql %s AS $body$
    DECLARE
      op_name text := lower(TG_OP);
      new_data jsonb;
      old_data jsonb;
      in_new boolean;
      in_old boolean;
    BEGIN
      IF TG_OP = 'DELETE' THEN
        new_data := %s;
      ELSE
        new_data := %s;
      END IF;
      IF TG_OP = 'UPDATE' THEN
        old_data := %s;
        %s
        IF op_name = 'update' THEN
          -- An update that touched only unpublished columns is not an event.
          IF new_data IS NOT DISTINCT FROM old_data THEN
            RETURN NULL;
          END IF;
          %s
        END IF;
      END IF;
      %s
      RETURN NULL;
    END
    $body$
  $f$,
    fname,
    -- float text is the shortest exact form only with extra_float_digits >= 1 (the default); a writer's session may lower it.
    CASE WHEN new_row.has_float THEN 'SET extra_float_digits = 1' ELSE '' END,
    old_row.expr,
    new_row.expr,
    old_row.expr,
    moves,
    CASE WHEN include_old THEN '' ELSE 'old_data := NULL;' END,
    notifiws.sink_sql(quote_literal(channel), quote_literal(new_row.types::text) || '::jsonb'));
  RETURN fname;
END
$$;

-- (Re)creates the triggers of one watch, one per op, calling its compiled
-- function. A derived channel's update trigger fires when the row matches
-- before or after the update (enter, update, leave); a delete's condition
-- reads the deleted row (a DELETE trigger has no NEW).
CREATE OR REPLACE FUNCTION notifiws.create_triggers(tbl regclass, channel text, condition text, ops text[], fname text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  op text;
  cond text;
BEGIN
  FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', notifiws.trigger_name(channel, op), tbl);
  END LOOP;
  FOREACH op IN ARRAY ops LOOP
    cond := CASE
      WHEN condition IS NULL THEN NULL
      WHEN op = 'delete' THEN notifiws.condition_on(condition, 'OLD')
      WHEN op = 'update' THEN format('(%s) OR (%s)', condition, notifiws.condition_on(condition, 'OLD'))
      ELSE condition
    END;
    EXECUTE format(
      'CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW %s EXECUTE FUNCTION notifiws.%I()',
      notifiws.trigger_name(channel, op), upper(op), tbl,
      CASE WHEN cond IS NULL THEN '' ELSE 'WHEN (' || cond || ')' END,
      fname
    );
  END LOOP;
END
$$;

-- The columns of a table's primary key, in key order; NULL without one.
CREATE OR REPLACE FUNCTION notifiws.primary_key(tbl regclass) RETURNS text[]
LANGUAGE sql STABLE AS $$
  SELECT array_agg(a.attname::text ORDER BY k.ord)
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
  WHERE i.indrelid = tbl AND i.indisprimary
$$;

-- Generic row trigger, for triggers created by hand. TG_ARGV: channel,
-- allow-listed columns (text[] literal), include old row (bool). Same events
-- as watch()'s compiled functions, but it builds and plans the encoding on
-- every write: use watch() for anything busy.
CREATE OR REPLACE FUNCTION notifiws.capture() RETURNS trigger
LANGUAGE plpgsql SET extra_float_digits = 1 AS $$
DECLARE
  ch       text    := TG_ARGV[0];
  cols     text[]  := TG_ARGV[1]::text[];
  with_old boolean := TG_ARGV[2]::boolean;
  codec    record  := notifiws.row_codec('$1', TG_RELID, cols);
  new_data jsonb;
  old_data jsonb;
BEGIN
  IF TG_OP = 'DELETE' THEN
    EXECUTE 'SELECT ' || codec.expr INTO new_data USING OLD;
  ELSE
    EXECUTE 'SELECT ' || codec.expr INTO new_data USING NEW;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    EXECUTE 'SELECT ' || codec.expr INTO old_data USING OLD;
    -- An update that touched only unpublished columns is not an event.
    IF new_data IS NOT DISTINCT FROM old_data THEN
      RETURN NULL;
    END IF;
    IF NOT with_old THEN
      old_data := NULL;
    END IF;
  END IF;
  -- The mode is read on every write here (compiled functions have it built in).
  IF notifiws.capture_mode() = 'wal' THEN
    PERFORM pg_logical_emit_message(true, notifiws.message_prefix(),
      notifiws.wal_message(ch, lower(TG_OP), TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, new_data, old_data, codec.types));
  ELSE
    INSERT INTO notifiws.outbox (channel, op, table_name, data, old_data, types)
    VALUES (ch, lower(TG_OP), TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, new_data, old_data, codec.types);
    IF current_setting('notifiws.wakeup', true) = 'notify' THEN
      PERFORM pg_notify(notifiws.wakeup_channel(), '');
    END IF;
  END IF;
  RETURN NULL;
END
$$;

DROP FUNCTION IF EXISTS notifiws.watch(regclass, text, text[], text, boolean, text[]);

-- Publishes changes of `tbl` to `channel`.
--   columns:     allow-list of published columns (required). ARRAY['*'] publishes every column
--                the table has when the watch is compiled; a column added later is published
--                after `SELECT notifiws.recompile_watches()`. Columns not listed never leave.
--   condition:   optional SQL boolean over NEW (e.g. 'NEW.stock < 5'); for deletes it is
--                evaluated against the deleted row. Routes matching rows to a derived channel;
--                updates that move a row in or out of it are sent as `enter` and `leave`.
--   include_old: also send the previous published columns of updates (default false).
--   ops:         which operations to publish (default insert, update, delete).
--   key:         the columns that identify a row (default: the table's primary key; a table
--                without one needs it). They must be published: events and the rows route
--                (GET /v1/channels/:channel/rows) key rows by them.
CREATE OR REPLACE FUNCTION notifiws.watch(
  tbl regclass,
  channel text,
  columns text[],
  condition text DEFAULT NULL,
  include_old boolean DEFAULT false,
  ops text[] DEFAULT ARRAY['insert', 'update', 'delete'],
  key text[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  op text;
  missing text;
  fname text;
  row_key text[] := coalesce(key, notifiws.primary_key(tbl));
  published text[] := notifiws.published_columns(tbl, columns);
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
  IF row_key IS NULL OR cardinality(row_key) = 0 THEN
    RAISE EXCEPTION 'notifiws.watch: % has no primary key; pass key => ARRAY[...] naming the published columns that identify a row', tbl
      USING ERRCODE = 'invalid_table_definition';
  END IF;
  SELECT string_agg(c, ', ') INTO missing FROM unnest(row_key) AS c WHERE c <> ALL (coalesce(published, '{}'));
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'notifiws.watch: the key column(s) % of % must be published: add them to columns', missing, tbl
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOREACH op IN ARRAY ops LOOP
    IF op NOT IN ('insert', 'update', 'delete') THEN
      RAISE EXCEPTION 'notifiws.watch: unknown op %', op USING ERRCODE = 'invalid_parameter_value';
    END IF;
  END LOOP;
  fname := notifiws.compile_capture(tbl, channel, columns, include_old, condition);
  INSERT INTO notifiws.watches (tbl, channel, columns, condition, include_old, ops, key)
  VALUES (tbl, channel, columns, condition, include_old, ops, row_key)
  ON CONFLICT ON CONSTRAINT watches_pkey DO UPDATE
    SET columns = EXCLUDED.columns, condition = EXCLUDED.condition, include_old = EXCLUDED.include_old, ops = EXCLUDED.ops, key = EXCLUDED.key;
  -- Every op of this (table, channel) is replaced, so one not listed in `ops` stops publishing.
  PERFORM notifiws.create_triggers(tbl, channel, condition, ops, fname);
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
  DELETE FROM notifiws.watches w WHERE w.tbl = unwatch.tbl AND w.channel = unwatch.channel;
END
$$;

-- Rewrites every registered watch's trigger function and triggers from its
-- table as it is now: after ALTER TABLE on a watched table (a published
-- column's type changed, or columns added under ARRAY['*']), and after every
-- change of this file (a derived channel's update trigger now fires on rows
-- leaving the condition too). Triggers are recreated from the registry, so
-- those of a watch that still called another function (the generic capture()
-- of watch() before migration 005) call the compiled one, keeping their ops
-- and condition. A watch whose table is gone is dropped from the registry;
-- one that cannot compile (a listed column was dropped) keeps its old
-- function and triggers and is reported as a warning. Returns how many were
-- compiled.
CREATE OR REPLACE FUNCTION notifiws.recompile_watches() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  w record;
  fname text;
  n integer := 0;
BEGIN
  DELETE FROM notifiws.watches WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = watches.tbl);
  FOR w IN SELECT * FROM notifiws.watches ORDER BY tbl, channel LOOP
    BEGIN
      fname := notifiws.compile_capture(w.tbl, w.channel, w.columns, w.include_old, w.condition);
      PERFORM notifiws.create_triggers(w.tbl, w.channel, w.condition, w.ops, fname);
      n := n + 1;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'notifiws: the watch of % on channel % could not be recompiled: %', w.tbl, w.channel, SQLERRM;
    END;
  END LOOP;
  RETURN n;
END
$$;

SELECT notifiws.recompile_watches();
