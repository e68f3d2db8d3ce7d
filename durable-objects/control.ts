/**
 * A single control object: the registry of active channels (so /stats can
 * find them) and the ledger of applied ingest batch ids (replay protection).
 * Batch ids only need to outlive the signature window, after which the
 * timestamp check rejects a replay anyway.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../src/env";
import { SIGNATURE_TOLERANCE_SECONDS } from "../src/protocol";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS channels (name TEXT PRIMARY KEY, registered_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS batches_at ON batches(at);
`;

/** Keep batch ids for twice the signature window (both directions of clock skew). */
const BATCH_RETENTION_MS = 2 * SIGNATURE_TOLERANCE_SECONDS * 1000 + 60_000;

export class ControlObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
  }

  async registerChannel(name: string): Promise<void> {
    this.sql.exec("INSERT OR IGNORE INTO channels (name, registered_at) VALUES (?, ?)", name, Date.now());
  }

  async listChannels(): Promise<string[]> {
    return this.sql.exec<{ name: string }>("SELECT name FROM channels ORDER BY name").toArray().map((r) => r.name);
  }

  async batchApplied(id: string): Promise<boolean> {
    return this.sql.exec("SELECT 1 FROM batches WHERE id = ?", id).toArray().length > 0;
  }

  async recordBatch(id: string): Promise<void> {
    const now = Date.now();
    this.sql.exec("INSERT OR IGNORE INTO batches (id, at) VALUES (?, ?)", id, now);
    this.sql.exec("DELETE FROM batches WHERE at < ?", now - BATCH_RETENTION_MS);
  }
}
