/**
 * Versioned schema steps for a Durable Object's SQLite: each step runs once,
 * in order, and its number is recorded, so an object that wakes (every
 * hibernation ends in a constructor) reads one row instead of re-running
 * DDL, and a step that drops or reshapes a table runs exactly once.
 * Append steps; never edit one that has shipped.
 */
export function applySchema(sql: SqlStorage, steps: readonly string[]): void {
  sql.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  const current = sql.exec<{ v: number | null }>("SELECT max(version) AS v FROM schema_version").one().v ?? 0;
  for (let version = current + 1; version <= steps.length; version++) {
    sql.exec(steps[version - 1]!);
    sql.exec("INSERT INTO schema_version (version) VALUES (?)", version);
  }
}
