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

-- The functions first defined here (watch(), unwatch(), the capture trigger,
-- the wake-up channel) live in db/functions/capture.sql, applied after the
-- migrations.
