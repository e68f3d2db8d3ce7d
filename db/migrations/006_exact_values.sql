-- Exact values (docs/protocol.md, "Values"). Events now carry each column's
-- Postgres type (outbox.types), and watches are registered in
-- notifiws.watches so their trigger functions can be recompiled whenever the
-- encoding (db/functions/capture.sql) or the table changes. The functions
-- themselves live in db/functions/, applied after this migration; its last
-- statement recompiles every watch registered here.

ALTER TABLE notifiws.outbox ADD COLUMN IF NOT EXISTS types jsonb;
ALTER TABLE notifiws.dead_letter ADD COLUMN IF NOT EXISTS types jsonb;

-- One row per watch() call that is in force: what it publishes and where.
CREATE TABLE IF NOT EXISTS notifiws.watches (
  tbl         regclass NOT NULL,
  channel     text     NOT NULL,
  -- As given to watch(): ARRAY['*'] stays '*' and is expanded at each compile.
  columns     text[]   NOT NULL,
  condition   text,
  include_old boolean  NOT NULL,
  ops         text[]   NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT watches_pkey PRIMARY KEY (tbl, channel)
);

-- Register the watches compiled by migration 005, read back from their
-- functions (the channel literal, the published keys, whether old rows are
-- kept) and triggers (ops and WHEN condition).
DO $$
DECLARE
  f record;
  chan text;
  cols text[];
  ops text[];
  cond text;
BEGIN
  FOR f IN
    SELECT p.oid AS fn, p.prosrc, tg.tgrelid::regclass AS tbl
    FROM pg_trigger tg
    JOIN pg_proc p ON p.oid = tg.tgfoid
    WHERE p.pronamespace = 'notifiws'::regnamespace AND p.proname LIKE 'capture\_%' AND tg.tgname LIKE 'notifiws\_%'
    GROUP BY p.oid, p.prosrc, tg.tgrelid
  LOOP
    chan := replace((regexp_match(f.prosrc, $re$VALUES \('((?:[^']|'')*)', lower\(TG_OP\)$re$))[1], '''''', '''');
    IF f.prosrc LIKE '%to_jsonb(NEW)%' THEN
      cols := ARRAY['*'];
    ELSE
      SELECT array_agg(replace(m[1], '''''', '''')) INTO cols
      FROM regexp_matches(f.prosrc, $re$'((?:[^']|'')*)', NEW\.$re$, 'g') AS m;
    END IF;
    SELECT array_agg(DISTINCT CASE WHEN tg.tgtype & 4 <> 0 THEN 'insert' WHEN tg.tgtype & 8 <> 0 THEN 'delete' ELSE 'update' END),
           max(substring(pg_get_triggerdef(tg.oid) FROM 'WHEN \((.*)\) EXECUTE FUNCTION')) FILTER (WHERE tg.tgtype & 8 = 0)
      INTO ops, cond
    FROM pg_trigger tg WHERE tg.tgfoid = f.fn AND tg.tgrelid = f.tbl;
    IF chan IS NULL OR cols IS NULL THEN
      RAISE WARNING 'notifiws: could not read the watch behind trigger function % on %; run watch() for it again', f.fn::regproc, f.tbl;
      CONTINUE;
    END IF;
    INSERT INTO notifiws.watches (tbl, channel, columns, condition, include_old, ops)
    VALUES (f.tbl, chan, cols, cond, f.prosrc NOT LIKE '%old_data := NULL;%', ops)
    ON CONFLICT ON CONSTRAINT watches_pkey DO NOTHING;
  END LOOP;
END
$$;

-- Register the watches whose triggers still call the generic capture()
-- (watch() before migration 005): its arguments are the channel, the columns
-- and include_old; recompile_watches() points them at compiled functions.
DO $$
DECLARE
  generic regprocedure := to_regprocedure('notifiws.capture()');
  w record;
BEGIN
  IF generic IS NULL THEN
    RETURN;
  END IF;
  FOR w IN
    SELECT tg.tgrelid::regclass AS tbl, a[1] AS chan, a[2]::text[] AS cols, a[3]::boolean AS include_old,
           array_agg(DISTINCT CASE WHEN tg.tgtype & 4 <> 0 THEN 'insert' WHEN tg.tgtype & 8 <> 0 THEN 'delete' ELSE 'update' END) AS ops,
           max(substring(pg_get_triggerdef(tg.oid) FROM 'WHEN \((.*)\) EXECUTE FUNCTION')) FILTER (WHERE tg.tgtype & 8 = 0) AS cond
    FROM pg_trigger tg,
         LATERAL (SELECT string_to_array(regexp_replace(encode(tg.tgargs, 'escape'), '\\000$', ''), '\000') AS a) args
    WHERE tg.tgfoid = generic AND tg.tgname LIKE 'notifiws\_%' AND tg.tgnargs = 3
    GROUP BY tg.tgrelid, a[1], a[2], a[3]
  LOOP
    INSERT INTO notifiws.watches (tbl, channel, columns, condition, include_old, ops)
    VALUES (w.tbl, w.chan, w.cols, w.cond, w.include_old, w.ops)
    ON CONFLICT ON CONSTRAINT watches_pkey DO NOTHING;
  END LOOP;
END
$$;

-- Replaced by notifiws.row_codec and the compiled functions (db/functions/capture.sql).
DROP FUNCTION IF EXISTS notifiws.build_expression(text, text[]);
DROP FUNCTION IF EXISTS notifiws.pick(jsonb, text[]);
