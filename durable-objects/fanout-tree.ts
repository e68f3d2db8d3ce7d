/**
 * The fan-out tree (docs/fanout.md): a channel in FANOUT_CHANNELS keeps one
 * ordering object (idFromName(channel)), which stores and numbers every
 * event, while its sockets live on fan-out objects
 * (idFromName(fanoutName(...)), src/fanout.ts) that keep a copy of the
 * events. Both sides are here: the ordering side hands every stored batch to
 * the attached fan-out objects and retries a failed hand-off from its alarm;
 * the fan-out side catches up from the ordering object (on connect, on a gap,
 * on resume), attaches with its first socket and detaches with its last.
 * Steps run one at a time (`serial`): their RPC awaits would otherwise
 * interleave and store copies out of order.
 */
import type { ConnectRequest, EventRange } from "../src/channel-contract";
import { errorResponse } from "../shared/http-errors";
import { utf8Length } from "../shared/limits";
import { errorFields, log } from "../shared/log";
import { RANGE_MAX_EVENTS } from "./event-store";
import type { ChannelParts } from "./parts";
import { BoundedQueue } from "./queue";

/** A failed hand-off to a fan-out object is retried by the ordering object's alarm after this long. */
const FANOUT_RETRY_MS = 1000;
/**
 * Stored batches whose hand-off may wait behind the one running before an
 * ingest waits for its own: at most this many batches' texts (each ≤ the
 * relay's batch size) are held in memory beyond the history.
 */
export const HANDOFF_MAX_QUEUED = 4;
/**
 * Hand-offs live in memory: a restart (a deploy, a crash) loses the running
 * and queued ones, and on a quiet channel no next batch would reveal the gap.
 * Every hand-off makes sure the alarm fires within this long; the first alarm
 * of an instance that has not yet handed a batch to every target asks them
 * all to catch up. The stats report's alarm is usually armed that soon
 * already, so watching adds no setAlarm (a billed row) while events flow.
 */
export const HANDOFF_WATCH_MS = 5000;

export class FanoutTree {
  /** Fan-out steps (catch-up, hand-offs, attach, detach) run one after another. */
  private chain: Promise<unknown> = Promise.resolve();
  /** The ordering side's hand-offs, in seq order. */
  private readonly handOffs = new BoundedQueue(HANDOFF_MAX_QUEUED, (err) => log("error", "hand-off step failed", { ...this.where(), ...errorFields(err) }));
  /** The ordering side's targets, read once per instance (they are read on every batch), then kept in step. */
  private targets: string[] | undefined;
  /**
   * This instance handed a batch to every target, or had them all catch up:
   * until then an earlier instance's hand-offs may have been lost with it.
   */
  private current = false;

  constructor(private readonly host: ChannelParts) {}

  // -------------------------------------------------------------------------
  // The ordering object's side
  // -------------------------------------------------------------------------

  range(after: number, limit = RANGE_MAX_EVENTS): EventRange {
    return this.host.store.range(after, limit);
  }

  /** A fan-out object got its first socket: hand it every batch from now on. */
  attach(name: string, region: string): void {
    this.host.store.exec("INSERT INTO fanouts (name, region) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET failing = 0", name, region);
    this.targets = undefined;
  }

  /** A fan-out object has no sockets left: it costs nothing until it gets one again. */
  detach(name: string): void {
    this.host.store.exec("DELETE FROM fanouts WHERE name = ?", name);
    this.targets = undefined;
  }

  /**
   * Queues a stored batch for every attached fan-out object and returns at
   * once, so the ingest's reply (and the relay's next batch) does not wait
   * for the copies to be stored and sent: the batch is stored here already,
   * and the output gate holds the calls until it is durable. Hand-offs run one after
   * another, in seq order; past HANDOFF_MAX_QUEUED waiting batches the
   * ingest waits too, which bounds the memory they hold. A failed hand-off
   * is retried by the alarm (the object pulls what it missed).
   */
  handOff(bodies: string[], seqs: number[]): Promise<void> {
    const targets = this.targetNames();
    if (targets.length === 0) return Promise.resolve();
    void this.host
      .armAlarm(Date.now() + HANDOFF_WATCH_MS)
      .catch((err) => log("warn", "could not arm the hand-off watch", { ...this.where(), ...errorFields(err) }));
    return this.handOffs.push(() => this.deliver(targets, bodies, seqs));
  }

  /** The alarm fired: retry what failed (or was lost), and say when the alarm must fire next for the hand-offs (Infinity: no need). */
  async alarmed(now: number): Promise<number> {
    if (await this.retryHandOffs()) return now + FANOUT_RETRY_MS;
    return this.handOffs.size > 0 ? now + HANDOFF_WATCH_MS : Infinity;
  }

  private async deliver(targets: string[], bodies: string[], seqs: number[]): Promise<void> {
    const results = await Promise.allSettled(targets.map((name) => this.stub(name).receive(bodies, seqs)));
    let failed = false;
    results.forEach((r, i) => {
      if (r.status === "fulfilled") return;
      failed = true;
      this.setFailing(targets[i]!, true);
      log("warn", "hand-off to a fan-out object failed; the alarm retries", { ...this.where(), fanout: targets[i], ...errorFields(r.reason) });
    });
    if (failed) await this.host.armAlarm(Date.now() + FANOUT_RETRY_MS);
    else this.current = true;
  }

  /**
   * Asks every fan-out object whose hand-off failed to catch up, or every
   * one when this instance may follow lost hand-offs (HANDOFF_WATCH_MS);
   * true while some still fail.
   */
  private async retryHandOffs(): Promise<boolean> {
    let still = false;
    const failing = new Set(
      this.host.store
        .exec<{ name: string }>("SELECT name FROM fanouts WHERE failing = 1")
        .toArray()
        .map((r) => r.name),
    );
    const names = [...(this.current ? failing : this.targetNames())];
    const results = await Promise.allSettled(names.map((name) => this.stub(name).resync()));
    results.forEach((r, i) => {
      const name = names[i]!;
      if (r.status === "fulfilled") {
        if (failing.has(name)) this.setFailing(name, false);
        return;
      }
      still = true;
      log("warn", "fan-out object still unreachable", { ...this.where(), fanout: name, ...errorFields(r.reason) });
    });
    if (!still) this.current = true;
    return still;
  }

  /** Whether any fan-out object is attached. */
  hasTargets(): boolean {
    return this.targetNames().length > 0;
  }

  /** The attached fan-out objects. */
  targetNames(): string[] {
    this.targets ??= this.host.store
      .exec<{ name: string }>("SELECT name FROM fanouts")
      .toArray()
      .map((r) => r.name);
    return this.targets;
  }

  private setFailing(name: string, failing: boolean): void {
    this.host.store.exec("UPDATE fanouts SET failing = ? WHERE name = ?", failing ? 1 : 0, name);
  }

  // -------------------------------------------------------------------------
  // A fan-out object's side
  // -------------------------------------------------------------------------

  /** A socket arrives: refuse when full, catch up with the ordering object, attach on the first socket, then `accept`. */
  connect(req: ConnectRequest & { fanout: NonNullable<ConnectRequest["fanout"]> }, accept: () => Promise<Response>): Promise<Response> {
    return this.serial(async () => {
      const { store, sockets } = this.host;
      const f = req.fanout;
      store.bindFanout(f);
      const open = sockets.count();
      if (open >= f.capacity) return errorResponse("FANOUT_FULL", `fan-out object ${f.name} holds ${open} sockets`);
      // Resume works on any fan-out object, also one this client never used: fetch what it needs first.
      await this.pull(req.since !== undefined ? Math.min(req.since, store.counters.headSeq) : undefined);
      if (open === 0) {
        await this.ordererStub().attach(f.name, f.region);
        // A batch stored between the catch-up and the attach was handed to no one here: fetch it now.
        await this.pull(store.counters.headSeq);
      }
      return accept();
    });
  }

  /**
   * A batch from the ordering object. A gap (a hand-off this object missed:
   * eviction, a failed call, a restart) is filled from the ordering object
   * before anything newer is sent; seqs already here are dropped.
   */
  receive(bodies: string[], seqs: number[]): Promise<void> {
    return this.serial(async () => {
      if (!this.host.store.fanout || seqs.length === 0) return;
      if (seqs[0]! > this.host.store.counters.headSeq + 1) await this.pull(this.host.store.counters.headSeq);
      this.keep(bodies, seqs);
    });
  }

  /** The ordering object's retry after a failed hand-off. */
  resync(): Promise<void> {
    return this.serial(() => this.pull(this.host.store.counters.headSeq));
  }

  /** A client resumes from `since` on this fan-out object: fetch what this object does not have yet. */
  catchUp(since: number): Promise<void> {
    return this.serial(() => this.pull(Math.min(since, this.host.store.counters.headSeq)));
  }

  /** The last socket closed: detach from the ordering object. */
  async detachIfEmpty(): Promise<void> {
    const f = this.host.store.fanout;
    if (!f || this.host.sockets.count() > 0) return;
    await this.serial(async () => {
      if (this.host.sockets.count() === 0) await this.ordererStub().detach(f.name);
    }).catch((err) => log("warn", "detach failed", { ...this.where(), ...errorFields(err) }));
  }

  /**
   * Fetches every event after `after` from the ordering object, keeps the new
   * ones and sends them to this object's sockets. `undefined` with no sockets
   * yet: only the head is needed (a live start).
   */
  private async pull(after: number | undefined): Promise<void> {
    const { store, sockets } = this.host;
    const orderer = this.ordererStub();
    if (after === undefined) {
      if (sockets.count() > 0) return; // attached: hand-offs keep this object current
      store.advanceHead((await orderer.range(store.counters.headSeq, 0)).headSeq);
      return;
    }
    for (let cursor = after, i = 0; i < 10_000; i++) {
      const r = await orderer.range(cursor);
      this.keep(r.bodies, r.seqs);
      if (r.seqs.length === 0 || r.seqs[r.seqs.length - 1]! >= r.headSeq) {
        store.advanceHead(r.headSeq);
        return;
      }
      cursor = r.seqs[r.seqs.length - 1]!;
    }
  }

  /** Stores copies of events and sends those newer than this object's head to its sockets. */
  private keep(bodies: string[], seqs: number[]): void {
    const now = Date.now();
    const fresh = this.host.store.keepCopies(bodies, seqs, now);
    if (fresh.length === 0) return;
    this.host.sockets.fanOut(
      fresh.map(([, b]) => b),
      fresh.map(([, b]) => utf8Length(b)),
      now,
      this.host.config().MAX_FRAME_BYTES,
    );
    this.host.noteChange();
  }

  ordererStub() {
    return this.stub(this.host.store.channel!);
  }

  stub(name: string) {
    return this.host.env.CHANNEL.get(this.host.env.CHANNEL.idFromName(name));
  }

  private serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.chain.then(step);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private where() {
    return this.host.where();
  }
}
