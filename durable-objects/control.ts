/**
 * A single control object: the registry of active channels, so /stats can
 * find them. Channel objects register themselves once per instance. (The
 * ingest batch ledger lives in each channel object, off this hot spot.)
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../src/env";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS channels (name TEXT PRIMARY KEY, registered_at INTEGER NOT NULL);
`;

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
    return this.sql
      .exec<{ name: string }>("SELECT name FROM channels ORDER BY name")
      .toArray()
      .map((r) => r.name);
  }
}
