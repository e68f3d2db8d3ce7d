/**
 * Presence on a channel (docs/protocol.md, "Presence"): who is connected,
 * grouped by user, for the connections that subscribed with `presence=1`.
 * Ephemeral: nothing is stored, no event is written, no seq is used; it is
 * rebuilt from the sockets' attachments whenever an object wakes.
 *
 * One object computes the channel's view (the hub): the channel's own
 * object. With the fan-out tree, each fan-out object reports its members to
 * the ordering object (batched), the ordering object merges every report and
 * pushes the view back, and each fan-out object sends its subscribers the
 * difference from the view they hold. Changes are batched (PRESENCE_BATCH_MS)
 * so a thousand joins cost a handful of frames; the rules are pure functions
 * in presence-view.ts.
 *
 * Timers, not the alarm: a batch or a grace period is a few seconds at most,
 * shorter than the idle time before an object hibernates, and an alarm
 * costs a storage write (docs/benchmarks.md, "Cost").
 */
import { channelAllowed } from "../shared/channels";
import { errorFields, log } from "../shared/log";
import type { FanoutTree } from "./fanout-tree";
import type { ChannelParts } from "./parts";
import { ATTACHMENT_MAX_BYTES } from "../shared/limits";
import { Sockets } from "./sockets";
import { decideMeta, diffFrame, diffViews, membersOf, merge, stateFrame, viewOf, withGrace, type Lingering, type Member, type View } from "./presence-view";

/** A view as pushed between objects: `version` grows with every view one hub computes, so a late push never undoes a newer one. */
export type VersionedView = View & { version: number };

/** A fan-out object that could not report is retried after this long. */
const REPORT_RETRY_MS = 1000;

export class Presence {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  /** The view this object's subscribers hold (undefined after a start: the next frame is the whole state). */
  private view: VersionedView | undefined;
  // The hub's state.
  private before = new Map<string, Member>();
  private readonly lingering: Lingering = new Map();
  private version = Date.now();
  /** Ordering object of a tree: each fan-out object's members as last reported (undefined until gathered after a start). */
  private remote: Map<string, Member[]> | undefined;
  /** A fan-out object's last report. */
  private reported: string | undefined;

  constructor(
    private readonly host: ChannelParts,
    private readonly tree: FanoutTree,
  ) {}

  enabled(): boolean {
    const channel = this.host.store.channel;
    return channel !== undefined && channelAllowed(channel, this.host.config().PRESENCE_CHANNELS, undefined);
  }

  /** A connection joined, left or set its metadata: a batch goes out within PRESENCE_BATCH_MS. */
  changed(): void {
    if (this.enabled()) this.schedule(Date.now() + this.host.config().PRESENCE_BATCH_MS);
  }

  /** A connection that subscribed to presence was accepted: it gets the whole state first, then the diffs everyone gets. */
  async joined(ws: WebSocket): Promise<void> {
    if (this.view) this.host.sockets.sendRaw(ws, stateFrame(this.view));
    else if (this.host.store.fanout) this.apply(await this.tree.ordererStub().presenceSnapshot(this.host.store.channel!));
    else await this.publish(); // sends the whole state to every subscriber, this one included
    this.changed();
  }

  /** A `presence` message: the connection's metadata, if presence-view.ts's rules allow it; otherwise an error frame. */
  setMeta(ws: WebSocket, metaJson: string): void {
    const { sockets, config } = this.host;
    const state = sockets.state(ws);
    if (!state) return;
    const cfg = config();
    const now = Date.now();
    const d = decideMeta(metaJson, state, now, { maxBytes: cfg.PRESENCE_META_BYTES, perSec: cfg.PRESENCE_UPDATES_PER_SEC });
    const next = { ...state, metaBucket: d.bucket ?? state.metaBucket, ...(d.ok ? { meta: metaJson, metaAt: now } : {}) };
    // The attachment's cap (16 KiB on the platform) also bounds what metadata can add.
    if (d.ok && Sockets.attachmentBytes(next) > ATTACHMENT_MAX_BYTES)
      return void sockets.send(ws, { type: "error", code: "PRESENCE_TOO_LARGE", message: `the connection's state would exceed ${ATTACHMENT_MAX_BYTES} bytes` });
    if (d.ok || d.bucket) sockets.save(ws, next); // a refusal that spent no token changes nothing
    if (!d.ok) return void sockets.send(ws, { type: "error", code: d.code, message: d.message });
    this.changed();
  }

  // -------------------------------------------------------------------------
  // The hub
  // -------------------------------------------------------------------------

  /** The channel's view now (a fan-out object asking after it started). */
  async snapshot(): Promise<VersionedView> {
    if (!this.view) await this.publish();
    return this.view!;
  }

  /** A fan-out object's members. */
  async report(name: string, members: Member[]): Promise<void> {
    (await this.gather()).set(name, members);
    this.changed();
  }

  /** A fan-out object detached (no sockets left): its members leave (after the grace period). */
  dropSource(name: string): void {
    if (this.remote?.delete(name)) this.changed();
  }

  /** Merges every member, applies the grace period, and sends the difference (or, after a start, the whole state). */
  private async publish(): Promise<void> {
    const cfg = this.host.config();
    const sources: Member[][] = [this.local()];
    if (this.treeHub()) sources.push(...(await this.gather()).values());
    const now = Date.now();
    const present = merge(sources);
    const { shown, nextExpiry } = withGrace(present, this.before, this.lingering, now, cfg.PRESENCE_GRACE_MS);
    this.before = present;
    if (nextExpiry !== Infinity) this.schedule(nextExpiry);
    const next = { ...viewOf(shown, cfg.PRESENCE_MAX_MEMBERS), version: ++this.version };
    if (!this.apply(next) || !this.treeHub()) return;
    const targets = this.tree.targetNames();
    const results = await Promise.allSettled(targets.map((name) => this.tree.stub(name).presenceView(next)));
    results.forEach((r, i) => {
      if (r.status === "rejected")
        log("warn", "presence push to a fan-out object failed", { ...this.host.where(), fanout: targets[i], ...errorFields(r.reason) });
    });
  }

  /** The ordering object of a tree, which holds no sockets of its own. */
  private treeHub(): boolean {
    return !this.host.store.fanout && this.tree.hasTargets();
  }

  /** After a start, the ordering object asks every attached fan-out object for its members before it shows anyone. */
  private async gather(): Promise<Map<string, Member[]>> {
    if (this.remote) return this.remote;
    const names = this.tree.targetNames();
    const results = await Promise.allSettled(names.map((name) => this.tree.stub(name).presenceLocal()));
    this.remote ??= new Map();
    results.forEach((r, i) => {
      if (r.status === "fulfilled") this.remote!.set(names[i]!, r.value);
      else log("warn", "could not read a fan-out object's presence", { ...this.host.where(), fanout: names[i], ...errorFields(r.reason) });
    });
    return this.remote;
  }

  // -------------------------------------------------------------------------
  // Every object
  // -------------------------------------------------------------------------

  /** This object's members, from its sockets. */
  local(): Member[] {
    return membersOf(this.host.sockets.presenceConns());
  }

  /**
   * A new view: this object's subscribers get the difference from the one
   * they hold, or the whole state when this object holds none. False when
   * nothing changed (or the view is older than the one held).
   */
  apply(next: VersionedView): boolean {
    const prev = this.view;
    if (prev && next.version <= prev.version) return false;
    this.view = next;
    const diff = prev ? diffViews(prev, next) : undefined;
    if (prev && !diff) return false;
    const frame = diff ? diffFrame(diff) : stateFrame(next);
    for (const ws of this.host.sockets.presenceSubscribers()) this.host.sockets.sendRaw(ws, frame);
    return true;
  }

  /** A fan-out object reports its members to the ordering object when they changed. */
  private async reportUp(): Promise<void> {
    const members = this.local();
    const text = JSON.stringify(members);
    if (text === this.reported) return;
    try {
      await this.tree.ordererStub().presenceReport(this.host.store.channel!, this.host.store.fanout!.name, members);
      this.reported = text;
    } catch (err) {
      log("warn", "presence report failed; retrying", { ...this.host.where(), ...errorFields(err) });
      this.schedule(Date.now() + REPORT_RETRY_MS);
    }
  }

  private flush(): Promise<void> {
    return this.host.store.fanout ? this.reportUp() : this.publish();
  }

  private schedule(at: number): void {
    if (this.timer !== undefined && this.timerAt <= at) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.flush().catch((err) => log("error", "presence batch failed", { ...this.host.where(), ...errorFields(err) }));
      },
      Math.max(0, at - Date.now()),
    );
  }
}
