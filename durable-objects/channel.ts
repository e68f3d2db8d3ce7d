/**
 * A channel's Durable Object. Read top to bottom as the life of a connection:
 * connect (fetch), events (ingest, or a hand-off on a fan-out object),
 * messages, close. Storage lives in event-store.ts, socket bookkeeping in
 * sockets.ts, the stats roll-up in rollup.ts.
 *
 * By default one object per channel numbers its events (`seq`), keeps the
 * history for resume and holds every socket. For channels in
 * FANOUT_CHANNELS the same class plays two roles (docs/fanout.md): the
 * ordering object (idFromName(channel)) stores and hands every batch to the
 * fan-out objects (idFromName(fanoutName(...))), which hold the sockets and a
 * copy of the events.
 */
import { DurableObject } from "cloudflare:workers";
import { verifyToken, AuthError } from "../shared/auth";
import { channelAllowed } from "../shared/channels";
import { closeReason, closeReplyCode } from "./closecodes";
import { loadConfig, type Config } from "../shared/worker-config";
import {
  type Env,
  MAX_ROLLUP_USERS,
  SESSION_HEADER,
  SessionInit,
  type ChannelRollup,
  type ChannelStats,
  type EventRange,
  type IngestEvent,
  type IngestOutcome,
} from "../src/channel-contract";
import { errorResponse } from "../shared/http-errors";
import { take } from "./ratelimit";
import { errorFields, log } from "../shared/log";
import { ATTACHMENT_MAX_BYTES, utf8Length } from "../shared/limits";
import { ClientMessage, CloseCode, PING_FRAME, PONG_FRAME, type ServerMessage } from "../shared/protocol";
import { EventStore, RANGE_MAX_EVENTS } from "./event-store";
import { Rollup } from "./rollup";
import { Sockets, type Session } from "./sockets";
import { refusal } from "./refusal";

/** A failed hand-off to a fan-out object is retried by the ordering object's alarm after this long. */
const FANOUT_RETRY_MS = 1000;

export class ChannelObject extends DurableObject<Env> {
  private readonly store: EventStore;
  private readonly sockets: Sockets;
  private readonly rollup = new Rollup();
  /** Fan-out work (catch-up, hand-offs, attach, detach) runs one step at a time: RPC awaits would otherwise interleave. */
  private chain: Promise<unknown> = Promise.resolve();
  /** The alarm this object set, while known (not after a restart, not once it fired): spares a storage read per event. */
  private alarmAt: number | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new EventStore(ctx.storage, () => this.config);
    this.sockets = new Sockets(
      ctx,
      () => this.store.counters,
      () => ({ class: "ChannelObject", channel: this.store.channel }),
    );
    // Answered by the runtime without waking the object, so idle channels stay hibernated.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  private get config(): Config {
    return loadConfig(this.env);
  }

  // -------------------------------------------------------------------------
  // Connect
  // -------------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    try {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return errorResponse("UPGRADE_REQUIRED", "expected a WebSocket upgrade");
      const init = SessionInit.parse(JSON.parse(request.headers.get(SESSION_HEADER) ?? "null"));
      this.store.bindChannel(init.channel);
      if (init.fanout) return await this.serial(() => this.connectFanout(init));
      // Below the platform's 32,768 hibernatable sockets per object, which local workerd does not enforce.
      const open = this.sockets.count();
      if (open >= this.config.MAX_SOCKETS_PER_OBJECT)
        return errorResponse(
          "CHANNEL_FULL",
          `channel ${init.channel} holds ${open} connections; retry later (FANOUT_CHANNELS spreads a channel over more objects)`,
        );
      return await this.accept(init);
    } catch (err) {
      log("error", "channel connect failed", { class: "ChannelObject", channel: this.store.channel, ...errorFields(err) });
      return errorResponse("INTERNAL", "could not open the connection");
    }
  }

  /** A fan-out object takes a socket: refuse when full, catch up with the ordering object, attach on the first socket. */
  private async connectFanout(init: SessionInit): Promise<Response> {
    const f = init.fanout!;
    this.store.bindFanout(f);
    const open = this.sockets.count();
    if (open >= f.capacity) return errorResponse("FANOUT_FULL", `fan-out object ${f.name} holds ${open} sockets`);
    // Resume works on any fan-out object, also one this client never used: fetch what it needs first.
    await this.pull(init.since !== undefined ? Math.min(init.since, this.store.counters.headSeq) : undefined);
    if (open === 0) {
      await this.orderer().attach(f.name, f.region);
      // A batch stored between the catch-up and the attach was handed to no one here: fetch it now.
      await this.pull(this.store.counters.headSeq);
    }
    return this.accept(init);
  }

  /** Accepts the socket, welcomes it and replays from local history. */
  private async accept(init: SessionInit): Promise<Response> {
    const session: Session = {
      id: crypto.randomUUID(),
      sub: init.sub,
      role: init.role,
      exp: init.exp,
      filter: init.filter,
      filterKey: init.filter ? JSON.stringify(init.filter) : "",
      bucket: { tokens: this.config.CLIENT_RATE_BURST, at: Date.now() },
      connectedAt: Date.now(),
    };
    if (Sockets.attachmentBytes(session) > ATTACHMENT_MAX_BYTES)
      return errorResponse("SESSION_TOO_LARGE", `the token's subject, role and the filter exceed ${ATTACHMENT_MAX_BYTES} bytes`);
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    this.sockets.accepted(server, session);
    this.sockets.send(server, {
      type: "welcome",
      channel: init.channel,
      connectionId: session.id,
      headSeq: this.store.counters.headSeq,
      expiresAt: session.exp,
    } satisfies ServerMessage);
    // Replay runs synchronously before any other event can be processed
    // (no await between reading history and returning), so replay and live
    // delivery never overlap or leave a gap.
    if (init.since !== undefined) this.replay(server, session, init.since);
    await this.armAlarm(session.exp * 1000);
    this.noteChange();
    const headers = init.echoProtocol ? { "sec-websocket-protocol": init.echoProtocol } : undefined;
    return new Response(null, { status: 101, webSocket: client, headers });
  }

  /** Sends every retained event after `since` (filtered), or a reset when that is impossible. */
  private replay(ws: WebSocket, session: Session, since: number): void {
    const head = this.store.counters.headSeq;
    const oldest = this.store.oldestSeq();
    if (since > head) {
      this.sockets.send(ws, { type: "reset", reason: "ahead_of_head", headSeq: head, oldestSeq: oldest } satisfies ServerMessage);
      return;
    }
    if (since < oldest - 1) {
      this.sockets.send(ws, { type: "reset", reason: "history_expired", headSeq: head, oldestSeq: oldest } satisfies ServerMessage);
      return;
    }
    this.sockets.sendEvents(ws, session, [...this.store.after(since)], this.config.MAX_FRAME_BYTES);
  }

  // -------------------------------------------------------------------------
  // Events
  // -------------------------------------------------------------------------

  /**
   * Stores new events and fans them out (and hands them to the channel's
   * fan-out objects). Called by the Worker over RPC; returns only after the
   * writes are part of this object's state, and the output gate holds the
   * reply until they are durable. See EventStore.ingest for the atomicity.
   */
  async ingest(channel: string, events: IngestEvent[], batchId?: string): Promise<IngestOutcome> {
    this.store.bindChannel(channel);
    for (const ev of events) if (ev.channel !== channel) throw new Error(`event for ${ev.channel} sent to ${channel}`);
    const now = Date.now();
    const stored = this.store.ingest(events, batchId, now);
    if (stored.replayed) return { accepted: 0, duplicates: 0, headSeq: this.store.counters.headSeq, replayed: true };
    if (stored.bodies.length > 0) {
      this.sockets.fanOut(stored.bodies, stored.sizes, now, this.config.MAX_FRAME_BYTES);
      for (const at of stored.committedAt) this.rollup.commitToStored.observe(Math.max(0, now - at) / 1000);
      this.rollup.batchEvents.observe(stored.bodies.length);
      await this.handOff(stored.bodies, stored.seqs);
    }
    this.noteChange();
    return { accepted: stored.bodies.length, duplicates: stored.duplicates, headSeq: this.store.counters.headSeq, replayed: false };
  }

  /**
   * On a fan-out object: a batch from the ordering object. A gap (a hand-off
   * this object missed: eviction, a failed call, a restart) is filled from
   * the ordering object before anything newer is sent; seqs already here are
   * dropped.
   */
  async receive(bodies: string[], seqs: number[]): Promise<void> {
    await this.serial(async () => {
      const f = this.store.fanout;
      if (!f || seqs.length === 0) return;
      if (seqs[0]! > this.store.counters.headSeq + 1) await this.pull(this.store.counters.headSeq);
      this.keep(bodies, seqs);
    });
  }

  /** On a fan-out object: the ordering object's retry after a failed hand-off. */
  async resync(): Promise<void> {
    await this.serial(() => this.pull(this.store.counters.headSeq));
  }

  // -------------------------------------------------------------------------
  // Messages
  // -------------------------------------------------------------------------

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    try {
      const session = this.sockets.session(ws);
      if (!session) return;
      const cfg = this.config;
      const size = typeof message === "string" ? new TextEncoder().encode(message).length : message.byteLength;
      if (size > cfg.MAX_CLIENT_MESSAGE_BYTES) {
        this.sockets.close(ws, CloseCode.MESSAGE_TOO_BIG, `message exceeds ${cfg.MAX_CLIENT_MESSAGE_BYTES} bytes`);
        return;
      }
      const now = Date.now();
      const limited = take(session.bucket, now, cfg.CLIENT_RATE_PER_SEC, cfg.CLIENT_RATE_BURST);
      session.bucket = limited.bucket;
      this.sockets.save(ws, session);
      if (!limited.allowed) {
        this.sockets.close(ws, CloseCode.RATE_LIMITED, `more than ${cfg.CLIENT_RATE_PER_SEC} messages/s`);
        return;
      }
      if (session.exp * 1000 <= now) {
        this.sockets.close(ws, CloseCode.TOKEN_EXPIRED, "token expired");
        return;
      }
      if (typeof message !== "string") {
        this.sockets.send(ws, { type: "error", code: "BAD_MESSAGE", message: "binary frames are not supported" });
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(message);
      } catch {
        this.sockets.send(ws, { type: "error", code: "BAD_JSON", message: "message is not valid JSON" });
        return;
      }
      const parsed = ClientMessage.safeParse(json);
      if (!parsed.success) {
        this.sockets.send(ws, refusal(json));
        return;
      }
      const msg = parsed.data;
      switch (msg.type) {
        case "ping":
          this.sockets.sendRaw(ws, PONG_FRAME);
          return;
        case "resume":
          if (this.store.fanout) await this.serial(() => this.pull(Math.min(msg.since, this.store.counters.headSeq)));
          this.replay(ws, session, msg.since);
          return;
        case "refresh":
          await this.refresh(ws, session, msg.token);
          return;
      }
    } catch (err) {
      log("error", "webSocketMessage failed", { class: "ChannelObject", channel: this.store.channel, ...errorFields(err) });
      this.sockets.close(ws, CloseCode.INTERNAL_ERROR, "internal error");
    }
  }

  /** A new token must be valid, for the same subject, and still allow this channel. */
  private async refresh(ws: WebSocket, session: Session, token: string): Promise<void> {
    try {
      const claims = await verifyToken(token, this.config);
      if (claims.sub !== session.sub || !channelAllowed(this.store.channel ?? "", claims.channels, claims.sub)) {
        this.sockets.close(ws, CloseCode.FORBIDDEN, "refresh token is not valid for this subject or channel");
        return;
      }
      session.exp = claims.exp;
      this.sockets.save(ws, session);
      this.sockets.send(ws, { type: "refreshed", expiresAt: claims.exp });
      await this.armAlarm(claims.exp * 1000);
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      this.sockets.close(ws, CloseCode.FORBIDDEN, `refresh rejected: ${err.code}`);
    }
  }

  // -------------------------------------------------------------------------
  // Close
  // -------------------------------------------------------------------------

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.sockets.forget(ws);
    try {
      ws.close(closeReplyCode(code), closeReason(reason));
    } catch {
      // Already closed by the runtime (auto-reply to close); nothing to do.
    }
    this.noteChange();
    await this.detachIfEmpty();
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    try {
      this.sockets.forget(ws);
      this.noteChange();
      await this.detachIfEmpty();
      log("warn", "websocket error", { class: "ChannelObject", channel: this.store.channel, ...errorFields(error) });
    } catch {
      // Logging must never throw out of a hibernation handler.
    }
  }

  /** Closes sockets whose token expired, retries failed hand-offs, sends a stats report that is due, and re-arms. */
  override async alarm(): Promise<void> {
    try {
      this.alarmAt = undefined; // it fired
      const now = Date.now();
      let { next, expired } = this.sockets.expire(now);
      if (expired) this.rollup.dirty = true;
      if (await this.retryHandOffs()) next = Math.min(next, now + FANOUT_RETRY_MS);
      if ((this.rollup.dueAt(this.config.STATS_ROLLUP_MS) ?? Infinity) <= now) await this.report();
      next = Math.min(next, this.rollup.dueAt(this.config.STATS_ROLLUP_MS) ?? Infinity);
      if (next !== Infinity) await this.armAlarm(next);
    } catch (err) {
      log("error", "alarm failed", { class: "ChannelObject", channel: this.store.channel, ...errorFields(err) });
    }
  }

  // -------------------------------------------------------------------------
  // The fan-out tree: the ordering object's side
  // -------------------------------------------------------------------------

  /** Events after `after`, as stored, for a fan-out object catching up (`limit` 0: only the head). */
  async range(after: number, limit = RANGE_MAX_EVENTS): Promise<EventRange> {
    return this.store.range(after, limit);
  }

  /** A fan-out object got its first socket: hand it every batch from now on. */
  async attach(name: string, region: string): Promise<void> {
    this.store.attachFanout(name, region);
  }

  /** A fan-out object has no sockets left: it costs nothing until it gets one again. */
  async detach(name: string): Promise<void> {
    this.store.detachFanout(name);
  }

  /** Hands a stored batch to every attached fan-out object; a failed hand-off is retried by the alarm. */
  private async handOff(bodies: string[], seqs: number[]): Promise<void> {
    const targets = this.store.fanoutTargets();
    if (targets.length === 0) return;
    const results = await Promise.allSettled(targets.map((name) => this.channelStub(name).receive(bodies, seqs)));
    let failed = false;
    results.forEach((r, i) => {
      if (r.status === "fulfilled") return;
      failed = true;
      this.store.setFailing(targets[i]!, true);
      log("warn", "hand-off to a fan-out object failed; the alarm retries", {
        class: "ChannelObject",
        channel: this.store.channel,
        fanout: targets[i],
        ...errorFields(r.reason),
      });
    });
    if (failed) await this.armAlarm(Date.now() + FANOUT_RETRY_MS);
  }

  /** Asks every fan-out object whose hand-off failed to catch up; true while some still fail. */
  private async retryHandOffs(): Promise<boolean> {
    let still = false;
    for (const name of this.store.failingFanouts()) {
      try {
        await this.channelStub(name).resync();
        this.store.setFailing(name, false);
      } catch (err) {
        still = true;
        log("warn", "fan-out object still unreachable", { class: "ChannelObject", channel: this.store.channel, fanout: name, ...errorFields(err) });
      }
    }
    return still;
  }

  // -------------------------------------------------------------------------
  // The fan-out tree: a fan-out object's side
  // -------------------------------------------------------------------------

  /**
   * Fetches every event after `after` from the ordering object, keeps the new
   * ones and sends them to this object's sockets. `undefined` with no sockets
   * yet: only the head is needed (a live start).
   */
  private async pull(after: number | undefined): Promise<void> {
    const orderer = this.orderer();
    if (after === undefined) {
      if (this.sockets.count() > 0) return; // attached: hand-offs keep this object current
      this.store.advanceHead((await orderer.range(this.store.counters.headSeq, 0)).headSeq);
      return;
    }
    for (let cursor = after, i = 0; i < 10_000; i++) {
      const r = await orderer.range(cursor);
      this.keep(r.bodies, r.seqs);
      if (r.seqs.length === 0 || r.seqs[r.seqs.length - 1]! >= r.headSeq) {
        this.store.advanceHead(r.headSeq);
        return;
      }
      cursor = r.seqs[r.seqs.length - 1]!;
    }
  }

  /** Stores copies of events and sends those newer than this object's head to its sockets. */
  private keep(bodies: string[], seqs: number[]): void {
    const now = Date.now();
    const fresh = this.store.keepCopies(bodies, seqs, now);
    if (fresh.length === 0) return;
    this.sockets.fanOut(
      fresh.map(([, b]) => b),
      fresh.map(([, b]) => utf8Length(b)),
      now,
      this.config.MAX_FRAME_BYTES,
    );
    this.noteChange();
  }

  private async detachIfEmpty(): Promise<void> {
    const f = this.store.fanout;
    if (!f || this.sockets.count() > 0) return;
    await this.serial(async () => {
      if (this.sockets.count() === 0) await this.orderer().detach(f.name);
    }).catch((err) => log("warn", "detach failed", { class: "ChannelObject", channel: this.store.channel, ...errorFields(err) }));
  }

  private orderer() {
    return this.channelStub(this.store.channel!);
  }

  private channelStub(name: string) {
    return this.env.CHANNEL.get(this.env.CHANNEL.idFromName(name));
  }

  /** Runs fan-out steps one after another. */
  private serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.chain.then(step);
    this.chain = run.catch(() => undefined);
    return run;
  }

  // -------------------------------------------------------------------------
  // Stats
  // -------------------------------------------------------------------------

  /** This object's stats as it would report them now (/stats reads the control object's roll-ups instead). */
  protected statsNow(): ChannelStats {
    return this.rollupReport(Date.now()).stats;
  }

  /** Something changed: report now if the last report is old enough, else make sure an alarm will. */
  private noteChange(): void {
    this.rollup.dirty = true;
    const due = this.rollup.dueAt(this.config.STATS_ROLLUP_MS)!;
    if (due <= Date.now()) void this.report();
    else
      void this.armAlarm(due).catch((err) =>
        log("warn", "could not arm the stats alarm", { class: "ChannelObject", channel: this.store.channel, ...errorFields(err) }),
      );
  }

  /** Sends the roll-up to the control object; a failed report is folded into the next one. */
  private async report(): Promise<void> {
    if (!this.store.channel) return;
    const r = this.rollupReport(Date.now());
    this.rollup.take(r.at);
    try {
      await this.env.CONTROL.get(this.env.CONTROL.idFromName("control")).report(r);
    } catch (err) {
      this.rollup.giveBack(r.histograms);
      log("warn", "stats report failed; will retry", { class: "ChannelObject", channel: this.store.channel, ...errorFields(err) });
    }
  }

  private rollupReport(at: number): ChannelRollup {
    const { connections, connectionsByRole, users } = this.sockets.census();
    const c = this.store.counters;
    const f = this.store.fanout;
    return {
      source: f?.name ?? "",
      ...(f ? { region: f.region } : {}),
      stats: {
        channel: this.store.channel ?? "",
        connections,
        connectionsByRole,
        uniqueUsers: users.size,
        ...c,
        historySize: Math.max(0, c.headSeq - this.store.oldestSeq() + 1),
      },
      users: [...users].slice(0, MAX_ROLLUP_USERS),
      histograms: { commitToStored: this.rollup.commitToStored.toJSON(), batchEvents: this.rollup.batchEvents.toJSON() },
      at,
    };
  }

  /** One alarm serves token expiry, hand-off retries and stats reports: keep the earliest. */
  private async armAlarm(at: number): Promise<void> {
    if (this.alarmAt !== undefined && this.alarmAt <= at) return;
    const current = await this.ctx.storage.getAlarm();
    if (current !== null && current <= at) {
      this.alarmAt = current;
      return;
    }
    await this.ctx.storage.setAlarm(at);
    this.alarmAt = at;
  }
}
