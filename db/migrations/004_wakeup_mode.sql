-- Wake-up mode. By default every transaction that writes outbox rows sends one
-- empty NOTIFY, so the relay wakes at once. NOTIFY serializes committing
-- transactions on a global lock (see bench W5, docs/database.md); under many
-- concurrent writers that can cost throughput. With
--   ALTER DATABASE mydb SET notifiws.wakeup = 'poll';
-- (or per role / per session) triggers skip the NOTIFY and the relay finds
-- rows by polling every RELAY_POLL_MS instead: no commit lock, but up to
-- RELAY_POLL_MS more latency. Anything else, or unset, means 'notify'.
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
  IF coalesce(current_setting('notifiws.wakeup', true), '') <> 'poll' THEN
    PERFORM pg_notify(notifiws.wakeup_channel(), '');
  END IF;
  RETURN NULL;
END
$$;
