/**
 * An object's SQLite as notifiws uses it: every statement checked against
 * the production limits local workerd does not enforce (checkSqlBindings:
 * 100 bound parameters, 2 MB per value) and counted, since Cloudflare bills
 * every row read and written (docs/benchmarks.md, "Cost: SQLite rows per
 * event"), with the runtime's own per-cursor counts.
 */
import { checkSqlBindings } from "../shared/limits";

/** SQLite rows this object read and wrote (what Cloudflare bills: docs/benchmarks.md, "Cost"), since it started. */
export interface SqlUsage {
  rowsRead: number;
  rowsWritten: number;
}

export class CountedSql {
  /** Cursors of statements run since `usage()` last added them up (their counts are final once read through). */
  private cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
  private readonly totals: SqlUsage = { rowsRead: 0, rowsWritten: 0 };

  constructor(private readonly sql: SqlStorage) {}

  exec<T extends Record<string, SqlStorageValue>>(query: string, ...params: SqlStorageValue[]): SqlStorageCursor<T> {
    checkSqlBindings(params);
    const cursor = this.sql.exec<T>(query, ...params);
    this.cursors.push(cursor);
    // Bounded: a long-lived object adds them up at least every 1,000 statements.
    if (this.cursors.length > 1000) this.usage();
    return cursor;
  }

  /** Rows read and written since the object started (the schema's own statements aside). */
  usage(): SqlUsage {
    for (const c of this.cursors) {
      this.totals.rowsRead += c.rowsRead;
      this.totals.rowsWritten += c.rowsWritten;
    }
    this.cursors = [];
    return { ...this.totals };
  }

  /**
   * Deletes the rows stored before `cutoff` from a table whose `at` grows
   * with its key (rows are inserted in time order), without an index on
   * `at`: it reads the table in key order up to the first row at or after
   * the cutoff, so it reads about as many rows as it deletes. On a fan-out
   * object a late catch-up can store an old seq with a new `at`; the prune
   * then stops there and keeps a few old rows longer (the count limit still
   * applies).
   */
  pruneBefore(table: "events", key: "seq", cutoff: number): void {
    this.exec(
      `DELETE FROM ${table} WHERE ${key} < coalesce((SELECT ${key} FROM ${table} WHERE at >= ?1 ORDER BY ${key} LIMIT 1), (SELECT max(${key}) + 1 FROM ${table}))`,
      cutoff,
    );
  }
}
