/**
 * The Worker as the Workers-pool tests run it: the production entry, with a
 * ChannelObject that can be made to fail on purpose and that exposes what
 * tests read. None of this ships: only the tests' vitest config names this
 * file (vitest.workers.config.ts, `main`).
 *
 * - TEST_FAIL_CHANNELS (a test binding, test/support/bindings.ts): an ingest
 *   into one of these channels fails inside the object's storage
 *   transaction, after every write (partial-failure tests); a hand-off to a
 *   fan-out object of that name fails.
 * - `holdHandOffs()` / `releaseHandOffs()`: hand-offs this fan-out object
 *   receives wait until released (the ordering object must not wait for them).
 * - `constructed` counts instances (the stats test shows /stats wakes no channel).
 * - `stats()` reads an object's own counters directly.
 */
import worker from "../../src/index";
import { ChannelObject as ProductionChannelObject } from "../../durable-objects/channel";
import type { ChannelStats, Env } from "../../src/channel-contract";

export { StatsObject } from "../../src/index";
export default worker;

const failing = (env: Env): string[] =>
  String(env.TEST_FAIL_CHANNELS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** What this object is bound to: its channel, or its fan-out object's name. */
function boundTo(storage: DurableObjectStorage): { channel?: string; fanout?: string } {
  const meta = new Map(
    storage.sql
      .exec<{ k: string; v: string }>("SELECT k, v FROM meta WHERE k IN ('channel', 'fanout')")
      .toArray()
      .map((r) => [r.k, r.v]),
  );
  return { channel: meta.get("channel"), fanout: meta.has("fanout") ? (JSON.parse(meta.get("fanout")!) as { name: string }).name : undefined };
}

export class ChannelObject extends ProductionChannelObject {
  static constructed = 0;
  private readonly failing: string[];

  constructor(ctx: DurableObjectState, env: Env) {
    const fail = failing(env);
    const storage = ctx.storage;
    const transactionSync = storage.transactionSync.bind(storage);
    // Every write of an ingest happens, then the transaction throws: nothing may remain.
    storage.transactionSync = <T>(fn: () => T): T =>
      transactionSync(() => {
        const result = fn();
        const { channel } = boundTo(storage);
        if (channel !== undefined && fail.includes(channel)) throw new Error(`TEST_FAIL_CHANNELS: storage of ${channel} fails on purpose`);
        return result;
      });
    super(ctx, env);
    this.failing = fail;
    ChannelObject.constructed++;
  }

  override async receive(bodies: string[], seqs: number[]): Promise<void> {
    const { fanout } = boundTo(this.ctx.storage);
    if (fanout !== undefined && this.failing.includes(fanout)) throw new Error(`TEST_FAIL_CHANNELS: hand-off to ${fanout} fails on purpose`);
    // A plain promise, not storage: the input gate stays open, so releaseHandOffs() gets in.
    if (this.held) await this.held.promise;
    return super.receive(bodies, seqs);
  }

  private held: { promise: Promise<void>; release: () => void } | undefined;

  async holdHandOffs(): Promise<void> {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => (release = resolve));
    this.held = { promise, release };
  }

  async releaseHandOffs(): Promise<void> {
    this.held?.release();
    this.held = undefined;
  }

  async stats(): Promise<ChannelStats> {
    return this.statsNow();
  }
}

/** A stub of the test ChannelObject (the binding's declared type is the production class). */
export const testStub = (env: Pick<Env, "CHANNEL">, name: string) =>
  env.CHANNEL.get(env.CHANNEL.idFromName(name)) as unknown as DurableObjectStub<ChannelObject>;
