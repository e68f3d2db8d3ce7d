-- notifiws outbox: the source of truth for every change to deliver.
-- NOTIFY is only a wake-up: it is lost while nobody listens, caps payloads at
-- 8000 bytes and takes a global lock at commit, so rows travel through this
-- table and the relay deletes them only after the edge acknowledged them.

CREATE SCHEMA IF NOT EXISTS notifiws;

CREATE TABLE IF NOT EXISTS notifiws.outbox (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Stable across redeliveries: the edge dedupes on it.
  event_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
  channel      text        NOT NULL,
  op           text        NOT NULL CHECK (op IN ('insert', 'update', 'delete', 'publish')),
  table_name   text        NOT NULL,
  data         jsonb,
  old_data     jsonb,
  -- Transaction id, for diagnosing late commits (rows are drained by visibility, not by id cursor).
  txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
  -- When the trigger ran; the commit follows within the same transaction.
  committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- Rows the relay could not deliver because the edge would never accept them
-- (for example a channel name the protocol forbids). Kept, never dropped.
CREATE TABLE IF NOT EXISTS notifiws.dead_letter (
  LIKE notifiws.outbox,
  reason    text        NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now()
);

-- The channel the relay LISTENs on. Payload is always empty, so Postgres
-- folds every notification of one transaction into a single wake-up.
CREATE OR REPLACE FUNCTION notifiws.wakeup_channel() RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'notifiws_outbox' $$;

-- Keeps only the allow-listed keys of a row. '*' publishes every column.
CREATE OR REPLACE FUNCTION notifiws.pick(row_data jsonb, columns text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN columns = ARRAY['*'] THEN row_data
    ELSE COALESCE((SELECT jsonb_object_agg(key, value) FROM jsonb_each(row_data) WHERE key = ANY (columns)), '{}'::jsonb)
  END
$$;

-- Generic row trigger. TG_ARGV: channel, allow-listed columns (text[] literal), include old row (bool).
CREATE OR REPLACE FUNCTION notifiws.capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  ch       text    := TG_ARGV[0];
  cols     text[]  := TG_ARGV[1]::text[];
  with_old boolean := TG_ARGV[2]::boolean;
  new_data jsonb;
  old_data jsonb;
BEGIN
  IF TG_OP = 'DELETE' THEN
    new_data := notifiws.pick(to_jsonb(OLD), cols);
  ELSE
    new_data := notifiws.pick(to_jsonb(NEW), cols);
  END IF;
  IF TG_OP = 'UPDATE' THEN
    old_data := notifiws.pick(to_jsonb(OLD), cols);
    -- An update that touched only unpublished columns is not an event.
    IF new_data IS NOT DISTINCT FROM old_data THEN
      RETURN NULL;
    END IF;
    IF NOT with_old THEN
      old_data := NULL;
    END IF;
  END IF;
  INSERT INTO notifiws.outbox (channel, op, table_name, data, old_data)
  VALUES (ch, lower(TG_OP), TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, new_data, old_data);
  PERFORM pg_notify(notifiws.wakeup_channel(), '');
  RETURN NULL;
END
$$;

-- Trigger name for one (channel, op) on a table: stable, and unique per channel.
CREATE OR REPLACE FUNCTION notifiws.trigger_name(channel text, op text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'notifiws_' || left(md5(channel), 12) || '_' || op $$;

-- Publishes changes of `tbl` to `channel`.
--   columns:     allow-list of published columns (required; ARRAY['*'] for all). Columns added
--                to the table later are NOT published until listed.
--   condition:   optional SQL boolean over NEW (e.g. 'NEW.stock < 5'); for deletes it is
--                evaluated against the deleted row. Routes matching rows to a derived channel.
--   include_old: also send the previous published columns of updates (default false).
--   ops:         which operations to publish (default insert, update, delete).
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
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', notifiws.trigger_name(channel, op), tbl);
    -- A DELETE trigger cannot reference NEW, so its condition sees the deleted row as OLD.
    cond := CASE WHEN op = 'delete' THEN regexp_replace(condition, '\mNEW\.', 'OLD.', 'gi') ELSE condition END;
    EXECUTE format(
      'CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW %s EXECUTE FUNCTION notifiws.capture(%L, %L, %L)',
      notifiws.trigger_name(channel, op), upper(op), tbl,
      CASE WHEN cond IS NULL THEN '' ELSE 'WHEN (' || cond || ')' END,
      channel, columns::text, include_old::text
    );
  END LOOP;
END
$$;

-- Stops publishing `tbl` to `channel` (every op).
CREATE OR REPLACE FUNCTION notifiws.unwatch(tbl regclass, channel text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  op text;
BEGIN
  FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', notifiws.trigger_name(channel, op), tbl);
  END LOOP;
END
$$;
