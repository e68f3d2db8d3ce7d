/** The schema this relay needs, checked at each session start: a clear error (SCHEMA_MISSING) instead of a failing query later. */
import type pg from "pg";

/** The database lacks the notifiws schema this relay needs (never migrated, or migrated by an older release). */
export class SchemaMissing extends Error {
  readonly code = "SCHEMA_MISSING";
}

/** Fails with a message that names the fix when the migrations have not been applied; the relay retries by itself. */
export async function requireSchema(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ missing: string[] }>(
    `SELECT array_remove(ARRAY[
       CASE WHEN to_regclass('notifiws.outbox') IS NULL THEN 'notifiws.outbox' END,
       CASE WHEN to_regclass('notifiws.relay_leader') IS NULL THEN 'notifiws.relay_leader' END,
       CASE WHEN to_regclass('notifiws.watches') IS NULL THEN 'notifiws.watches' END,
       CASE WHEN to_regclass('notifiws.pending_gaps') IS NULL THEN 'notifiws.pending_gaps' END,
       CASE WHEN to_regprocedure('notifiws.set_capture_mode(text)') IS NULL THEN 'notifiws.set_capture_mode(text)' END,
       CASE WHEN to_regprocedure('notifiws.has_pending_gaps()') IS NULL THEN 'notifiws.has_pending_gaps()' END,
       CASE WHEN to_regprocedure('notifiws.wakeup_channel()') IS NULL THEN 'notifiws.wakeup_channel()' END
     ], NULL) AS missing`,
  );
  const missing = rows[0]!.missing;
  if (missing.length > 0)
    throw new SchemaMissing(
      `the database lacks ${missing.join(", ")}: apply the migrations with \`DATABASE_URL=<this database> npm run db:migrate\`; the relay keeps retrying and starts once they are in`,
    );
}
