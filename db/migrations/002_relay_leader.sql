-- Leader heartbeat. The draining relay holds a session advisory lock; a
-- frozen process (SIGSTOP, VM pause, stuck event loop) or a partitioned one
-- keeps that lock for as long as its session lives, which can be hours.
-- So the leader also stamps this row every RELAY_HEARTBEAT_MS, and a standby
-- that sees the stamp stop moving for RELAY_TAKEOVER_MS terminates the lock
-- holder's backend (pg_terminate_backend: same role or pg_signal_backend),
-- which releases the lock, and takes over.
CREATE TABLE IF NOT EXISTS notifiws.relay_leader (
  lock_key     bigint      PRIMARY KEY,
  -- Backend pid of the leader's session (the one holding the advisory lock).
  pid          int         NOT NULL,
  -- host:pid of the relay process, for operators.
  holder       text        NOT NULL,
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
