-- Capture mode (docs/database.md, "Choosing a capture mode"). 'outbox': the
-- compiled trigger functions insert a row into notifiws.outbox, which the
-- relay drains. 'wal': they write a transactional logical message
-- (pg_logical_emit_message) that the relay reads from a logical replication
-- slot in commit order; nothing is written to a table. The relay switches
-- the mode (RELAY_CAPTURE) through notifiws.set_capture_mode(), which
-- recompiles every watch; the functions live in db/functions/capture.sql.
CREATE TABLE IF NOT EXISTS notifiws.capture_settings (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  mode       text        NOT NULL CHECK (mode IN ('outbox', 'wal')),
  changed_at timestamptz NOT NULL DEFAULT now(),
  -- At the last switch to 'outbox': the highest outbox id handed out so far.
  -- Rows up to it were written before the switch, so they go before what the
  -- slot still holds from then, and rows after it go after (relay/relay.ts).
  outbox_from bigint
);
INSERT INTO notifiws.capture_settings (mode) VALUES ('outbox') ON CONFLICT DO NOTHING;

-- Channels whose events a replication slot lost (Postgres invalidated it
-- after it fell behind max_slot_wal_keep_size). The leader records them here
-- before it recreates the slot, and deletes them once the Worker stored a
-- gap marker for each (clients then get `reset` with reason "source_gap"),
-- so a crash in between still resets them.
CREATE TABLE IF NOT EXISTS notifiws.pending_gaps (
  channel    text        PRIMARY KEY,
  -- The ingest batch id of the round that found the loss: a resend is recognised by the Worker.
  gap_id     uuid        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
