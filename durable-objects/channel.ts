/**
 * A channel's Durable Object, read top to bottom as the life of a
 * connection: connect (fetch), events (ingest), messages, close, the alarm.
 * Runtime hooks only guard, hand off and catch. Storage: event-store.ts;
 * sockets: sockets.ts; client messages: client-message.ts; refresh:
 * refresh.ts; the fan-out tree (docs/fanout.md): fanout-tree.ts; stats:
 * rollup.ts; billed work: meter.ts; live tables: rows.ts; presence: presence.ts.
 * One object per channel numbers its events (`seq`), keeps the history and
 * holds every socket; for FANOUT_CHANNELS the same class is the ordering
 * object or one of its fan-out objects (sockets and a copy of the events).
 */
import { DurableObject } from "cloudflare:workers";
import { AlarmClock } from "./alarm";
import { closeReason, closeReplyCode } from "./closecodes";
import { loadConfig, type Config } from "../shared/worker-config";
import { CONNECT_HEADER, ConnectRequest, type ChannelStats, type Env, type EventRange, type IngestEvent, type IngestOutcome } from "../src/channel-contract";
import { errorResponse } from "../shared/http-errors";
import { errorFields, log } from "../shared/log";
import { ATTACHMENT_MAX_BYTES } from "../shared/limits";
import { CloseCode, PING_FRAME, PONG_FRAME, type ServerMessage } from "../shared/protocol";
import { decideMessage } from "./client-message";
import { EventStore, RANGE_MAX_EVENTS } from "./event-store";
import { FanoutTree } from "./fanout-tree";
import type { ChannelParts } from "./parts";
import { refreshSession } from "./refresh";
import { Rollup } from "./rollup";
import { RowsLoader, type RowsAnswer } from "./rows";
import { Presence, type VersionedView } from "./presence";
import type { Member } from "./presence-view";
import { Sockets, socketState } from "./sockets";
import { newMeter } from "./meter";

export class ChannelObject extends DurableObject<Env> {
  private readonly store: EventStore;
  private readonly sockets: Sockets;
  private readonly tree: FanoutTree;
  private readonly rollup: Rollup;
  private readonly parts: ChannelParts;
  private readonly presence: Presence;
  private readonly clock: AlarmClock;
  private readonly meter = newMeter();
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.clock = new AlarmClock(ctx.storage, this.meter);
    this.store = new EventStore(ctx.storage, () => this.config);
    this.sockets = new Sockets(
      ctx,
      () => this.store.counters,
      () => this.where(),
      () => ({ socketBytes: this.config.FLOW_SOCKET_BYTES, objectBytes: this.config.FLOW_OBJECT_BYTES, graceMs: this.config.FLOW_GRACE_MS }),
    );
    const rows = new RowsLoader(this.store, () => this.config);
    const parts: ChannelParts = (this.parts = {
      env,
      store: this.store,
      sockets: this.sockets,
      rows,
      config: () => this.config,
      meter: this.meter,
      armAlarm: (at) => this.clock.arm(at),
      noteChange: () => this.rollup.noteChange(),
      where: () => this.where(),
    });
    this.tree = new FanoutTree(parts);
    this.rollup = new Rollup(parts);
    this.presence = new Presence(parts, this.tree);
    this.sockets.onForget = () => this.presence.changed();
    // Answered by the runtime without waking the object, so idle channels stay hibernated.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  private get config(): Config {
    return loadConfig(this.env);
  }

  private where() {
    return { class: "ChannelObject", channel: this.store.channel };
  }

  // ---- Connect ----

  override async fetch(request: Request): Promise<Response> {
    this.meter.requests++;
    try {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return errorResponse("UPGRADE_REQUIRED", "expected a WebSocket upgrade");
      const req = ConnectRequest.parse(JSON.parse(request.headers.get(CONNECT_HEADER) ?? "null"));
      this.store.bindChannel(req.channel);
      const fanout = req.fanout;
      if (fanout) return await this.tree.connect({ ...req, fanout }, () => this.accept(req));
      // Below the platform's 32,768 hibernatable sockets per object, which local workerd does not enforce.
      const open = this.sockets.count();
      if (open >= this.config.MAX_SOCKETS_PER_OBJECT)
        return errorResponse(
          "CHANNEL_FULL",
          `channel ${req.channel} holds ${open} connections; retry later (FANOUT_CHANNELS spreads a channel over more objects)`,
        );
      return await this.accept(req);
    } catch (err) {
      log("error", "channel connect failed", { ...this.where(), ...errorFields(err) });
      return errorResponse("INTERNAL", "could not open the connection");
    }
  }

  /** Accepts the socket, welcomes it and replays from local history. */
  private async accept(req: ConnectRequest): Promise<Response> {
    const state = socketState(req, this.config.CLIENT_RATE_BURST, Date.now());
    if (Sockets.attachmentBytes(state) > ATTACHMENT_MAX_BYTES)
      return errorResponse("SESSION_TOO_LARGE", `the token's subject, role and the filter exceed ${ATTACHMENT_MAX_BYTES} bytes`);
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    this.sockets.accepted(server, state);
    this.sockets.send(server, {
      type: "welcome",
      channel: req.channel,
      connectionId: state.id,
      headSeq: this.store.counters.headSeq,
      expiresAt: state.exp,
    } satisfies ServerMessage);
    // Replay runs synchronously before any other event can be processed
    // (no await between reading history and returning), so replay and live
    // delivery never overlap or leave a gap.
    if (req.since !== undefined) this.sockets.replay(server, state, this.store, req.since, this.config.MAX_FRAME_BYTES);
    if (state.presence) await this.presence.joined(server);
    else this.presence.changed();
    await this.clock.arm(state.exp * 1000);
    this.rollup.noteChange();
    const headers = req.echoProtocol ? { "sec-websocket-protocol": req.echoProtocol } : undefined;
    return new Response(null, { status: 101, webSocket: client, headers });
  }

  // ---- Events ----

  /**
   * Stores new events and fans them out (and hands them to the channel's
   * fan-out objects). Called by the Worker over RPC; returns only after the
   * writes are part of this object's state, and the output gate holds the
   * reply until they are durable. See EventStore.ingest for the atomicity.
   */
  async ingest(channel: string, events: IngestEvent[], batchId?: string, gap = false): Promise<IngestOutcome> {
    this.bind(channel);
    for (const ev of events) if (ev.channel !== channel) throw new Error(`event for ${ev.channel} sent to ${channel}`);
    const now = Date.now();
    const stored = this.store.ingest(events, batchId, now, gap);
    if (stored.replayed) return { accepted: 0, duplicates: 0, headSeq: this.store.counters.headSeq, replayed: true };
    if (gap) this.parts.rows.noteGap(this.store.counters.headSeq);
    if (stored.bodies.length > 0) {
      this.sockets.fanOut(stored.bodies, stored.sizes, now, this.config.MAX_FRAME_BYTES);
      for (const at of stored.committedAt) this.rollup.commitToStored.observe(Math.max(0, now - at) / 1000);
      this.rollup.batchEvents.observe(stored.bodies.length);
      await this.tree.handOff(stored.bodies, stored.seqs);
    }
    this.rollup.noteChange();
    // A gap marker is a history entry, not an accepted event.
    return { accepted: stored.bodies.length - (gap ? 1 : 0), duplicates: stored.duplicates, headSeq: this.store.counters.headSeq, replayed: false };
  }

  /** Ordering object: the channel's rows and the seq to subscribe from (rows.ts), for GET /v1/channels/:channel/rows. */
  async loadRows(channel: string): Promise<RowsAnswer> {
    this.bind(channel);
    const answer = await this.parts.rows.load(channel);
    this.rollup.noteChange();
    return answer;
  }

  // The fan-out tree's calls between objects (fanout-tree.ts).

  /** Ordering object: events after `after`, as stored, for a fan-out object catching up (`limit` 0: only the head). */
  async range(after: number, limit = RANGE_MAX_EVENTS): Promise<EventRange> {
    return this.counted(this.tree.range(after, limit));
  }
  /** Ordering object: a fan-out object got its first socket. */
  async attach(name: string, region: string): Promise<void> {
    this.counted(this.tree.attach(name, region));
  }
  /** Ordering object: a fan-out object has no sockets left. */
  async detach(name: string): Promise<void> {
    this.counted(this.tree.detach(name));
    this.presence.dropSource(name);
  }
  /** Fan-out object: a batch from the ordering object. */
  async receive(bodies: string[], seqs: number[]): Promise<void> {
    await this.counted(this.tree.receive(bodies, seqs));
  }
  /** Fan-out object: the ordering object's retry after a failed hand-off. */
  async resync(): Promise<void> {
    await this.counted(this.tree.resync());
  }

  // Presence between the objects of a tree (presence.ts): reports up, views down.
  async presenceReport(channel: string, name: string, members: Member[]): Promise<void> {
    this.bind(channel);
    await this.presence.report(name, members);
  }
  async presenceSnapshot(channel: string): Promise<VersionedView> {
    this.bind(channel);
    return this.presence.snapshot();
  }
  async presenceView(view: VersionedView): Promise<void> {
    this.counted(this.presence.apply(view));
  }
  async presenceLocal(): Promise<Member[]> {
    return this.counted(this.presence.local());
  }

  // ---- Messages ----

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    this.meter.wsMessagesIn++;
    try {
      const state = this.sockets.state(ws);
      if (!state) return;
      const cfg = this.config;
      const { bucket, action } = decideMessage(message, { ...state, acked: this.sockets.flows.acked(ws), head: this.store.counters.headSeq }, Date.now(), {
        maxBytes: cfg.MAX_CLIENT_MESSAGE_BYTES,
        ratePerSec: cfg.CLIENT_RATE_PER_SEC,
        burst: cfg.CLIENT_RATE_BURST,
      });
      if (bucket !== state.bucket) this.sockets.save(ws, { ...state, bucket });
      switch (action.kind) {
        case "close":
          return this.sockets.close(ws, action.code, action.reason);
        case "refuse":
          return void this.sockets.send(ws, action.error);
        case "pong":
          return void this.sockets.sendRaw(ws, PONG_FRAME);
        case "resume":
          if (this.store.fanout) await this.tree.catchUp(action.since);
          return this.sockets.replay(ws, this.sockets.state(ws)!, this.store, action.since, this.config.MAX_FRAME_BYTES);
        case "refresh":
          return await refreshSession(ws, action.token, this.parts);
        case "ack":
          // Nothing past the head was sent: such an ack is ignored (it was counted against the rate limit).
          if (action.seq <= this.store.counters.headSeq) this.sockets.flows.ack(ws, action.seq);
          return;
        case "presence":
          return this.presence.setMeta(ws, action.metaJson);
      }
    } catch (err) {
      log("error", "webSocketMessage failed", { ...this.where(), ...errorFields(err) });
      this.sockets.close(ws, CloseCode.INTERNAL_ERROR, "internal error");
    }
  }

  // ---- Close ----

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.sockets.forget(ws);
    try {
      ws.close(closeReplyCode(code), closeReason(reason));
    } catch {
      // Already closed by the runtime (auto-reply to close); nothing to do.
    }
    this.rollup.noteChange();
    await this.tree.detachIfEmpty();
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    try {
      this.sockets.forget(ws);
      this.rollup.noteChange();
      await this.tree.detachIfEmpty();
      log("warn", "websocket error", { ...this.where(), ...errorFields(error) });
    } catch {
      // Logging must never throw out of a hibernation handler.
    }
  }

  /** One alarm serves token expiry, hand-off retries and stats reports: close expired sockets, retry, report, re-arm. */
  override async alarm(): Promise<void> {
    this.meter.requests++;
    try {
      this.clock.fired();
      const now = Date.now();
      let { next, expired } = this.sockets.expire(now);
      if (expired) this.rollup.dirty = true;
      next = Math.min(next, await this.tree.alarmed(now));
      if ((this.rollup.dueAt() ?? Infinity) <= now) await this.rollup.report();
      next = Math.min(next, this.rollup.dueAt() ?? Infinity);
      if (next !== Infinity) await this.clock.arm(next);
    } catch (err) {
      log("error", "alarm failed", { ...this.where(), ...errorFields(err) });
    }
  }

  /** An RPC call (a billed request: meter.ts) for `channel`; `counted` for one that names none. */
  private bind(channel: string): void {
    this.meter.requests++;
    this.store.bindChannel(channel);
  }
  private counted<T>(result: T): T {
    this.meter.requests++;
    return result;
  }

  /** This object's stats as it would report them now (/stats reads the stats store instead). */
  protected statsNow(): ChannelStats {
    return this.rollup.now();
  }
}
