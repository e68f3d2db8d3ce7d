-- Snapshot, then live: an app reads its initial state and this snapshot in
-- one REPEATABLE READ (or SERIALIZABLE) transaction; every event carries the
-- id of the transaction that produced it (outbox.txid), and the client skips
-- exactly the events whose transaction the snapshot already saw (the rule of
-- pg_visible_in_snapshot). Ids are 64-bit (xid8), returned as decimal text.
CREATE OR REPLACE FUNCTION notifiws.snapshot() RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  s pg_snapshot := pg_current_snapshot();
BEGIN
  -- Under READ COMMITTED every statement has its own snapshot, so this one
  -- would not describe the state the app just read.
  IF current_setting('transaction_isolation') NOT IN ('repeatable read', 'serializable') THEN
    RAISE EXCEPTION 'notifiws.snapshot() must run in the same REPEATABLE READ or SERIALIZABLE transaction as the state it describes (this one is %)',
      current_setting('transaction_isolation') USING ERRCODE = 'invalid_transaction_state';
  END IF;
  RETURN jsonb_build_object(
    'xmin', pg_snapshot_xmin(s)::text,
    'xmax', pg_snapshot_xmax(s)::text,
    'xip', COALESCE((SELECT jsonb_agg(x::text ORDER BY x) FROM pg_snapshot_xip(s) AS x), '[]'::jsonb)
  );
END
$$;
