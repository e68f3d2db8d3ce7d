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
  changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO notifiws.capture_settings (mode) VALUES ('outbox') ON CONFLICT DO NOTHING;
