-- Compiled capture triggers: watch() writes one trigger function per (table,
-- channel) that builds the published row over exactly the published columns,
-- instead of one generic function that serializes the whole row and filters
-- it on every write (about half the cost: bench W5, docs/database.md).
--
-- The functions live in db/functions/capture.sql; triggers attached to the
-- generic capture() by earlier versions of watch() are registered by
-- migration 006 and pointed at their compiled functions by
-- notifiws.recompile_watches(), which db/functions/capture.sql runs.
SELECT 1;
