/**
 * One Durable Object per channel: it assigns each event the channel's next
 * `seq`, keeps a bounded history in SQLite for resume, and fans events out to
 * its hibernatable WebSockets. Read top to bottom as the life of a
 * connection: connect (fetch), events (ingest), message, close.
 */
import { DurableObject } from "cloudflare:workers";
import { verifyToken, AuthError } from "../src/auth";
import { channelAllowed } from "../shared/channels";
import { closeReason, closeReplyCode } from "../src/closecodes";
import { loadConfig, type Config } from "../src/config";
import type { Env } from "../src/env";
import {
  MAX_ROLLUP_USERS,
  SESSION_HEADER,
  SessionInit,
  type ChannelRollup,
  type ChannelStats,
  type EventRange,
  type IngestOutcome,
} from "../src/channel-contract";
import { Rollup } from "./rollup";
import { errorResponse } from "../src/errors";
import { matchesFilter } from "../shared/filter";
import { errorFields, log } from "../shared/log";
import {
  type ChangeEvent,
  ChannelName,
  ClientMessage,
  CloseCode,
  Envelope,
  Filter,
  PING_FRAME,
  PONG_FRAME,
  SIGNATURE_TOLERANCE_SECONDS,
  type ServerMessage,
} from "../shared/protocol";
import { take, type Bucket } from "../src/ratelimit";
import { ATTACHMENT_MAX_BYTES, checkSqlBindings, packJsonArrays, SQL_PARAM_BUDGET_BYTES, utf8Length } from "../shared/limits";

/** Per-socket state; serialized as the hibernation attachment (max 2 KiB). */
interface Session {
  id: string;
  sub: string;
  role?: string;
  /** Token expiry, epoch seconds. */
  exp: number;
  filter?: Filter;
  /** Cache key for frames built for this filter ("" = unfiltered). */
  filterKey: string;
  bucket: Bucket;
  connectedAt: number;
}

/** An event over MAX_EVENT_BYTES reached the object; the whole ingest is rolled back. */
export class EventTooLargeError extends Error {
  readonly code = "EVENT_TOO_LARGE";
  constructor(
    readonly eventId: string,
    readonly bytes: number,
    readonly max: number,
  ) {
    super(`event ${eventId} is ${bytes} bytes; MAX_EVENT_BYTES is ${max}`);
  }
}

/** What ingest's transaction produced. */
interface Stored {
  replayed: boolean;
  bodies: string[];
  /** UTF-8 bytes of each body. */
  sizes: number[];
  envelopes: Envelope[];
  duplicates: number;
}

/** Bytes of `{"type":"events","events":[` + `]}` around a frame's bodies. */
const FRAME_OVERHEAD_BYTES = 30;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_at ON seen(at);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE TABLE IF NOT EXISTS fanouts (name TEXT PRIMARY KEY, region TEXT NOT NULL, failing INTEGER NOT NULL DEFAULT 0);
`;

/** Fan-out objects this ordering object hands batches to; a failed hand-off is retried by the alarm after this long. */
const FANOUT_RETRY_MS = 1000;
/** Events per range read by a fan-out object catching up, and a byte cap so one RPC reply stays small. */
const RANGE_MAX_EVENTS = 500;
const RANGE_MAX_BYTES = 8 * 1024 * 1024;

type Counters = Pick<ChannelStats, "headSeq" | "events" | "duplicates" | "messagesSent" | "sendErrors" | "lastEventAt">;

/** Keep batch ids for twice the signature window (both directions of clock skew) plus a minute. */
const BATCH_RETENTION_MS = 2 * SIGNATURE_TOLERANCE_SECONDS * 1000 + 60_000;

/** Dedupe-table pruning runs at most this often; it is a range delete on an index. */
const DEDUPE_PRUNE_INTERVAL_MS = 60_000;

export class ChannelObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private channel: string | undefined;
  private counters: Counters;
  /** In-memory mirror of attachments, rebuilt lazily after hibernation. */
  private readonly sessions = new Map<WebSocket, Session>();
  private readonly rollup = new Rollup();
  /**
   * Set on a fan-out object (the fan-out tree, FANOUT_CHANNELS): it holds
   * sockets near their clients and a copy of the channel's events, numbered
   * by the channel's ordering object (idFromName(channel)).
   */
  private fanout: { name: string; region: string; capacity: number } | undefined;
  /** Fan-out work (catch-up, hand-offs, attach, detach) runs one step at a time: RPC awaits would otherwise interleave. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Instances started in this isolate: diagnostics (the stats test shows /stats wakes no channel). */
  static constructed = 0;
  private lastDedupePrune = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ChannelObject.constructed++;
    this.sql = ctx.storage.sql;
    this.exec(SCHEMA);
    const meta = new Map<string, unknown>();
    for (const row of this.exec<{ k: string; v: SqlStorageValue }>("SELECT k, v FROM meta")) meta.set(row.k, row.v);
    this.channel = (meta.get("channel") as string | undefined) ?? undefined;
    if (typeof meta.get("fanout") === "string") this.fanout = JSON.parse(meta.get("fanout") as string);
    const num = (k: string) => Number(meta.get(k) ?? 0);
    this.counters = {
      headSeq: num("headSeq"),
      events: num("events"),
      duplicates: num("duplicates"),
      messagesSent: num("messagesSent"),
      sendErrors: num("sendErrors"),
      lastEventAt: meta.has("lastEventAt") ? num("lastEventAt") : null,
    };
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
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return errorResponse(426, "UPGRADE_REQUIRED", "expected a WebSocket upgrade");
      const init = SessionInit.parse(JSON.parse(request.headers.get(SESSION_HEADER) ?? "null"));
      this.bindChannel(init.channel);
      if (init.fanout) return await this.serial(() => this.connectFanout(init));
      return await this.accept(init);
    } catch (err) {
      log("error", "channel connect failed", { class: "ChannelObject", channel: this.channel, ...errorFields(err) });
      return errorResponse(500, "INTERNAL", "could not open the connection");
    }
  }

  /** A fan-out object takes a socket: refuse when full, catch up with the ordering object, attach on the first socket. */
  private async connectFanout(init: SessionInit): Promise<Response> {
    const f = init.fanout!;
    if (!this.fanout) {
      this.fanout = f;
      this.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('fanout', ?)", JSON.stringify(f));
    }
    const open = this.openSockets().length;
    if (open >= f.capacity) return errorResponse(503, "FANOUT_FULL", `fan-out object ${f.name} holds ${open} sockets`);
    // Resume works on any fan-out object, also one this client never used: fetch what it needs first.
    await this.pull(init.since !== undefined ? Math.min(init.since, this.counters.headSeq) : undefined);
    if (open === 0) {
      await this.orderer().attach(f.name, f.region);
      // A batch stored between the catch-up and the attach was handed to no one here: fetch it now.
      await this.pull(this.counters.headSeq);
    }
    return this.accept(init);
  }

  /** Accepts the socket, welcomes it and replays from local history. */
  private async accept(init: SessionInit): Promise<Response> {
    {
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
      if (ChannelObject.attachmentBytes(session) > ATTACHMENT_MAX_BYTES)
        return errorResponse(400, "SESSION_TOO_LARGE", `the token's subject, role and the filter exceed ${ATTACHMENT_MAX_BYTES} bytes`);
      const pair = new WebSocketPair();
      const [client, server] = [pair[0], pair[1]];
      this.ctx.acceptWebSocket(server);
      this.save(server, session);
      this.send(server, {
        type: "welcome",
        channel: init.channel,
        connectionId: session.id,
        headSeq: this.counters.headSeq,
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
  }

  /** Sends every retained event after `since` (filtered), or a reset when that is impossible. */
  private replay(ws: WebSocket, session: Session, since: number): void {
    const head = this.counters.headSeq;
    const oldest = this.oldestSeq();
    if (since > head) {
      this.send(ws, { type: "reset", reason: "ahead_of_head", headSeq: head, oldestSeq: oldest } satisfies ServerMessage);
      return;
    }
    if (since < oldest - 1) {
      this.send(ws, { type: "reset", reason: "history_expired", headSeq: head, oldestSeq: oldest } satisfies ServerMessage);
      return;
    }
    const bodies: string[] = [];
    const sizes: number[] = [];
    for (const row of this.exec<{ body: string }>("SELECT body FROM events WHERE seq > ? ORDER BY seq", since)) {
      if (session.filter && !matchesFilter(JSON.parse(row.body) as Envelope, session.filter)) continue;
      bodies.push(row.body);
      sizes.push(utf8Length(row.body));
    }
    for (const frame of this.frames(bodies, sizes)) this.sendRaw(ws, frame);
  }

  // -------------------------------------------------------------------------
  // Events
  // -------------------------------------------------------------------------

  /**
   * Stores new events (dedupe by id, next seq each) and fans them out. Called
   * by the Worker over RPC; returns only after the writes are part of this
   * object's state, and the output gate holds the reply until they are durable.
   *
   * The batch ledger, the dedupe rows, the events and the counters are written
   * in one transaction: a batch whose storage fails leaves no trace (not even
   * its id), so the sender's retry of the same batch is stored, never answered
   * "already applied".
   */
  async ingest(channel: string, events: ChangeEvent[], batchId?: string): Promise<IngestOutcome> {
    this.bindChannel(channel);
    for (const ev of events) if (ev.channel !== channel) throw new Error(`event for ${ev.channel} sent to ${channel}`);
    const now = Date.now();
    const before = { ...this.counters };
    let stored: Stored;
    try {
      stored = this.ctx.storage.transactionSync(() => this.store(events, batchId, now));
    } catch (err) {
      this.counters = before; // seqs handed out inside the failed transaction are not consumed
      throw err;
    }
    if (stored.replayed) return { accepted: 0, duplicates: 0, headSeq: this.counters.headSeq, replayed: true };
    if (stored.bodies.length > 0) {
      this.fanOut(stored.bodies, stored.sizes, stored.envelopes, now);
      for (const e of stored.envelopes) this.rollup.commitToStored.observe(Math.max(0, now - e.committedAt) / 1000);
      this.rollup.batchEvents.observe(stored.envelopes.length);
      await this.handOff(
        stored.bodies,
        stored.envelopes.map((e) => e.seq),
      );
    }
    this.noteChange();
    return { accepted: stored.bodies.length, duplicates: stored.duplicates, headSeq: this.counters.headSeq, replayed: false };
  }

  /** The body of ingest's transaction; throws to roll everything back. */
  private store(events: ChangeEvent[], batchId: string | undefined, now: number): Stored {
    const cfg = this.config;
    // The batch ledger lives here, next to the events, so replay protection
    // costs no extra object round trip. Ids only need to outlive the ±5 min
    // signature window, after which the timestamp check rejects a replay.
    if (batchId !== undefined) {
      const cur = this.exec("INSERT INTO batches (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING", batchId, now);
      if (cur.rowsWritten === 0) return { replayed: true, bodies: [], sizes: [], envelopes: [], duplicates: 0 };
      this.exec("DELETE FROM batches WHERE at < ?", now - BATCH_RETENTION_MS);
    }
    // A few statements per batch whatever its size: per-row statements cost
    // ~0.1 ms each, and Durable Object SQL binds at most 100 parameters, so
    // rows travel as JSON arrays read back with json_each, each array under
    // SQL_PARAM_BUDGET_BYTES (one SQLite value is capped at 2 MB).
    const known = new Set<string>();
    for (const chunk of packJsonArrays(
      events.map((e) => e.id),
      SQL_PARAM_BUDGET_BYTES,
    )) {
      const ids = "json" in chunk ? chunk.json : JSON.stringify([chunk.single]);
      for (const row of this.exec<{ id: string }>("SELECT j.value AS id FROM json_each(?) AS j JOIN seen ON seen.id = j.value", ids)) known.add(row.id);
    }
    const bodies: string[] = [];
    const sizes: number[] = [];
    const envelopes: Envelope[] = [];
    const firstSeq = this.counters.headSeq + 1;
    let duplicates = 0;
    // Events were validated by the Worker (zod) before this RPC.
    for (const ev of events) {
      if (known.has(ev.id)) {
        duplicates++;
        continue;
      }
      known.add(ev.id); // a repeat inside the same batch is a duplicate too
      const envelope: Envelope = { ...ev, seq: ++this.counters.headSeq };
      const body = JSON.stringify(envelope);
      const bytes = utf8Length(body);
      // The route refuses these first; this guard keeps any other caller under the row limit.
      if (bytes > cfg.MAX_EVENT_BYTES) throw new EventTooLargeError(ev.id, bytes, cfg.MAX_EVENT_BYTES);
      bodies.push(body);
      sizes.push(bytes);
      envelopes.push(envelope);
    }
    this.counters.duplicates += duplicates;
    if (bodies.length > 0) {
      for (const chunk of packJsonArrays(
        envelopes.map((e) => [e.id, e.seq]),
        SQL_PARAM_BUDGET_BYTES,
      )) {
        const rows = "json" in chunk ? chunk.json : JSON.stringify([chunk.single]);
        this.exec("INSERT INTO seen (id, seq, at) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ? FROM json_each(?)", now, rows);
      }
      let seq = firstSeq;
      for (const chunk of packJsonArrays(bodies, SQL_PARAM_BUDGET_BYTES)) {
        if ("json" in chunk) {
          // A JSON array of strings: json_each returns each body text exactly as serialized here.
          this.exec("INSERT INTO events (seq, at, body) SELECT ? + key, ?, value FROM json_each(?)", seq, now, chunk.json);
          seq += chunk.count;
        } else {
          // Too large to nest in an array (its quotes would be escaped again): bound on its own.
          this.exec("INSERT INTO events (seq, at, body) VALUES (?, ?, ?)", seq, now, chunk.single);
          seq += 1;
        }
      }
      this.counters.events += bodies.length;
      this.counters.lastEventAt = now;
      // Two indexed range deletes (an OR would scan the table).
      this.exec("DELETE FROM events WHERE seq <= ?", this.counters.headSeq - cfg.HISTORY_MAX_EVENTS);
      this.exec("DELETE FROM events WHERE at < ?", now - cfg.HISTORY_MAX_AGE_SECONDS * 1000);
      if (now - this.lastDedupePrune > DEDUPE_PRUNE_INTERVAL_MS) {
        this.lastDedupePrune = now;
        this.exec("DELETE FROM seen WHERE at < ?", now - cfg.DEDUPE_WINDOW_SECONDS * 1000);
      }
    }
    this.persistCounters();
    if (this.channel !== undefined && cfg.TEST_FAIL_CHANNELS.includes(this.channel))
      throw new Error(`TEST_FAIL_CHANNELS: storage of ${this.channel} fails on purpose`);
    return { replayed: false, bodies, sizes, envelopes, duplicates };
  }

  /**
   * One frame set per distinct filter, built once and sent to every socket
   * that shares it, so a burst costs one send per frame per socket.
   */
  private fanOut(bodies: string[], sizes: number[], events: Envelope[], now: number): void {
    const byFilter = new Map<string, string[]>();
    for (const ws of this.ctx.getWebSockets()) {
      const session = this.session(ws);
      if (!session) continue;
      if (session.exp * 1000 <= now) {
        this.close(ws, CloseCode.TOKEN_EXPIRED, "token expired");
        continue;
      }
      let frames = byFilter.get(session.filterKey);
      if (!frames) {
        if (session.filter) {
          const keep = events.map((e) => matchesFilter(e, session.filter));
          frames = this.frames(
            bodies.filter((_, i) => keep[i]),
            sizes.filter((_, i) => keep[i]),
          );
        } else frames = this.frames(bodies, sizes);
        byFilter.set(session.filterKey, frames);
      }
      for (const frame of frames) if (!this.sendRaw(ws, frame)) break;
    }
  }

  /**
   * Packs pre-serialized envelopes (with their UTF-8 sizes) into `events`
   * frames of at most MAX_FRAME_BYTES; an event larger than that gets a frame
   * of its own.
   */
  private frames(bodies: string[], sizes: number[]): string[] {
    if (bodies.length === 0) return [];
    const max = this.config.MAX_FRAME_BYTES - FRAME_OVERHEAD_BYTES;
    const out: string[] = [];
    let chunk: string[] = [];
    let size = 0;
    bodies.forEach((b, i) => {
      const bytes = sizes[i]!;
      if (chunk.length > 0 && size + bytes + 1 > max) {
        out.push(`{"type":"events","events":[${chunk.join(",")}]}`);
        chunk = [];
        size = 0;
      }
      chunk.push(b);
      size += bytes + 1;
    });
    out.push(`{"type":"events","events":[${chunk.join(",")}]}`);
    return out;
  }

  // -------------------------------------------------------------------------
  // Messages
  // -------------------------------------------------------------------------

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    try {
      const session = this.session(ws);
      if (!session) return;
      const cfg = this.config;
      const size = typeof message === "string" ? new TextEncoder().encode(message).length : message.byteLength;
      if (size > cfg.MAX_CLIENT_MESSAGE_BYTES) {
        this.close(ws, CloseCode.MESSAGE_TOO_BIG, `message exceeds ${cfg.MAX_CLIENT_MESSAGE_BYTES} bytes`);
        return;
      }
      const now = Date.now();
      const limited = take(session.bucket, now, cfg.CLIENT_RATE_PER_SEC, cfg.CLIENT_RATE_BURST);
      session.bucket = limited.bucket;
      this.save(ws, session);
      if (!limited.allowed) {
        this.close(ws, CloseCode.RATE_LIMITED, `more than ${cfg.CLIENT_RATE_PER_SEC} messages/s`);
        return;
      }
      if (session.exp * 1000 <= now) {
        this.close(ws, CloseCode.TOKEN_EXPIRED, "token expired");
        return;
      }
      if (typeof message !== "string") {
        this.send(ws, { type: "error", code: "BAD_MESSAGE", message: "binary frames are not supported" });
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(message);
      } catch {
        this.send(ws, { type: "error", code: "BAD_JSON", message: "message is not valid JSON" });
        return;
      }
      const parsed = ClientMessage.safeParse(json);
      if (!parsed.success) {
        const type = (json as { type?: unknown } | null)?.type;
        const known = ["ping", "resume", "refresh"].includes(String(type));
        this.send(ws, {
          type: "error",
          code: known ? "BAD_MESSAGE" : "UNKNOWN_TYPE",
          message: known ? `invalid ${String(type)} message` : `unknown message type ${JSON.stringify(type ?? null).slice(0, 40)}`,
        });
        return;
      }
      const msg = parsed.data;
      switch (msg.type) {
        case "ping":
          this.sendRaw(ws, PONG_FRAME);
          return;
        case "resume":
          if (this.fanout) await this.serial(() => this.pull(Math.min(msg.since, this.counters.headSeq)));
          this.replay(ws, session, msg.since);
          return;
        case "refresh":
          await this.refresh(ws, session, msg.token);
          return;
      }
    } catch (err) {
      log("error", "webSocketMessage failed", { class: "ChannelObject", channel: this.channel, ...errorFields(err) });
      this.close(ws, CloseCode.INTERNAL_ERROR, "internal error");
    }
  }

  /** A new token must be valid, for the same subject, and still allow this channel. */
  private async refresh(ws: WebSocket, session: Session, token: string): Promise<void> {
    try {
      const claims = await verifyToken(token, this.config);
      if (claims.sub !== session.sub || !channelAllowed(this.channel ?? "", claims.channels, claims.sub)) {
        this.close(ws, CloseCode.FORBIDDEN, "refresh token is not valid for this subject or channel");
        return;
      }
      session.exp = claims.exp;
      this.save(ws, session);
      this.send(ws, { type: "refreshed", expiresAt: claims.exp });
      await this.armAlarm(claims.exp * 1000);
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      this.close(ws, CloseCode.FORBIDDEN, `refresh rejected: ${err.code}`);
    }
  }

  // -------------------------------------------------------------------------
  // Close
  // -------------------------------------------------------------------------

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.sessions.delete(ws);
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
      this.sessions.delete(ws);
      this.noteChange();
      await this.detachIfEmpty();
      log("warn", "websocket error", { class: "ChannelObject", channel: this.channel, ...errorFields(error) });
    } catch {
      // Logging must never throw out of a hibernation handler.
    }
  }

  /** Closes sockets whose token expired, sends a stats report that is due, and re-arms for what comes next. */
  override async alarm(): Promise<void> {
    try {
      const now = Date.now();
      let next = Infinity;
      let expired = false;
      for (const ws of this.ctx.getWebSockets()) {
        const s = this.session(ws);
        if (!s) continue;
        if (s.exp * 1000 <= now) {
          this.close(ws, CloseCode.TOKEN_EXPIRED, "token expired");
          expired = true;
        } else next = Math.min(next, s.exp * 1000);
      }
      if (expired) this.rollup.dirty = true;
      if (await this.retryHandOffs()) next = Math.min(next, now + FANOUT_RETRY_MS);
      if ((this.rollup.dueAt(this.config.STATS_ROLLUP_MS) ?? Infinity) <= now) await this.report();
      next = Math.min(next, this.rollup.dueAt(this.config.STATS_ROLLUP_MS) ?? Infinity);
      if (next !== Infinity) await this.ctx.storage.setAlarm(next);
    } catch (err) {
      log("error", "alarm failed", { class: "ChannelObject", channel: this.channel, ...errorFields(err) });
    }
  }

  // -------------------------------------------------------------------------
  // The fan-out tree (FANOUT_CHANNELS): the ordering object's side
  // -------------------------------------------------------------------------

  /** Events after `after`, as stored, for a fan-out object catching up (`limit` 0: only the head). */
  async range(after: number, limit = RANGE_MAX_EVENTS): Promise<EventRange> {
    const bodies: string[] = [];
    const seqs: number[] = [];
    let bytes = 0;
    if (limit > 0)
      for (const row of this.exec<{ seq: number; body: string }>("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)) {
        bytes += row.body.length * 3; // an upper bound of its UTF-8 size
        if (bodies.length > 0 && bytes > RANGE_MAX_BYTES) break;
        bodies.push(row.body);
        seqs.push(row.seq);
      }
    return { bodies, seqs, headSeq: this.counters.headSeq, oldestSeq: this.oldestSeq() };
  }

  /** A fan-out object got its first socket: hand it every batch from now on. */
  async attach(name: string, region: string): Promise<void> {
    this.exec("INSERT INTO fanouts (name, region) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET failing = 0", name, region);
  }

  /** A fan-out object has no sockets left: it costs nothing until it gets one again. */
  async detach(name: string): Promise<void> {
    this.exec("DELETE FROM fanouts WHERE name = ?", name);
  }

  /** Hands a stored batch to every attached fan-out object; a failed hand-off is retried by the alarm. */
  private async handOff(bodies: string[], seqs: number[]): Promise<void> {
    const targets = this.exec<{ name: string }>("SELECT name FROM fanouts").toArray();
    if (targets.length === 0) return;
    const results = await Promise.allSettled(targets.map((t) => this.fanoutStub(t.name).receive(bodies, seqs)));
    let failed = false;
    results.forEach((r, i) => {
      if (r.status === "fulfilled") return;
      failed = true;
      this.exec("UPDATE fanouts SET failing = 1 WHERE name = ?", targets[i]!.name);
      log("warn", "hand-off to a fan-out object failed; the alarm retries", {
        class: "ChannelObject",
        channel: this.channel,
        fanout: targets[i]!.name,
        ...errorFields(r.reason),
      });
    });
    if (failed) await this.armAlarm(Date.now() + FANOUT_RETRY_MS);
  }

  /** Asks every fan-out object whose hand-off failed to catch up; true while some still fail. */
  private async retryHandOffs(): Promise<boolean> {
    const failing = this.exec<{ name: string }>("SELECT name FROM fanouts WHERE failing = 1").toArray();
    let still = false;
    for (const { name } of failing) {
      try {
        await this.fanoutStub(name).resync();
        this.exec("UPDATE fanouts SET failing = 0 WHERE name = ?", name);
      } catch (err) {
        still = true;
        log("warn", "fan-out object still unreachable", { class: "ChannelObject", channel: this.channel, fanout: name, ...errorFields(err) });
      }
    }
    return still;
  }

  private fanoutStub(name: string) {
    return this.env.CHANNEL.get(this.env.CHANNEL.idFromName(name));
  }

  // -------------------------------------------------------------------------
  // The fan-out tree: a fan-out object's side
  // -------------------------------------------------------------------------

  /**
   * A batch from the ordering object. A gap (a hand-off this object missed:
   * eviction, a failed call, a restart) is filled from the ordering object
   * before anything newer is sent; seqs already here are dropped.
   */
  async receive(bodies: string[], seqs: number[]): Promise<void> {
    await this.serial(async () => {
      if (!this.fanout || seqs.length === 0) return;
      if (this.config.TEST_FAIL_CHANNELS.includes(this.fanout.name)) throw new Error(`TEST_FAIL_CHANNELS: hand-off to ${this.fanout.name} fails on purpose`);
      if (seqs[0]! > this.counters.headSeq + 1) await this.pull(this.counters.headSeq);
      this.keep(bodies, seqs);
    });
  }

  /** The ordering object's retry after a failed hand-off. */
  async resync(): Promise<void> {
    await this.serial(() => this.pull(this.counters.headSeq));
  }

  /**
   * Fetches every event after `after` from the ordering object, keeps the new
   * ones and sends them to this object's sockets. `undefined` with no sockets
   * yet: only the head is needed (a live start).
   */
  private async pull(after: number | undefined): Promise<void> {
    const orderer = this.orderer();
    if (after === undefined) {
      if (this.openSockets().length > 0) return; // attached: hand-offs keep this object current
      const r = await orderer.range(this.counters.headSeq, 0);
      this.counters.headSeq = Math.max(this.counters.headSeq, r.headSeq);
      this.persistCounters();
      return;
    }
    for (let cursor = after, i = 0; i < 10_000; i++) {
      const r = await orderer.range(cursor);
      this.keep(r.bodies, r.seqs);
      if (r.seqs.length === 0 || r.seqs[r.seqs.length - 1]! >= r.headSeq) {
        this.counters.headSeq = Math.max(this.counters.headSeq, r.headSeq);
        this.persistCounters();
        return;
      }
      cursor = r.seqs[r.seqs.length - 1]!;
    }
  }

  /** Stores copies of events (seq from the ordering object) and sends those newer than this object's head. */
  private keep(bodies: string[], seqs: number[]): void {
    const now = Date.now();
    const head = this.counters.headSeq;
    const pairs = seqs.map((seq, i) => [seq, bodies[i]!] as [number, string]);
    this.ctx.storage.transactionSync(() => {
      for (const chunk of packJsonArrays(pairs, SQL_PARAM_BUDGET_BYTES)) {
        if ("json" in chunk)
          this.exec(
            "INSERT OR IGNORE INTO events (seq, at, body) SELECT json_extract(value, '$[0]'), ?, json_extract(value, '$[1]') FROM json_each(?)",
            now,
            chunk.json,
          );
        else this.exec("INSERT OR IGNORE INTO events (seq, at, body) VALUES (?, ?, ?)", chunk.single[0], now, chunk.single[1]);
      }
      const fresh = pairs.filter(([seq]) => seq > head);
      if (fresh.length > 0) {
        this.counters.headSeq = fresh[fresh.length - 1]![0];
        this.counters.events += fresh.length;
        this.counters.lastEventAt = now;
      }
      this.exec("DELETE FROM events WHERE seq <= ?", this.counters.headSeq - this.config.HISTORY_MAX_EVENTS);
      this.exec("DELETE FROM events WHERE at < ?", now - this.config.HISTORY_MAX_AGE_SECONDS * 1000);
      this.persistCounters();
    });
    const fresh = pairs.filter(([seq]) => seq > head);
    if (fresh.length === 0) return;
    const envelopes = fresh.map(([, body]) => JSON.parse(body) as Envelope);
    this.fanOut(
      fresh.map(([, b]) => b),
      fresh.map(([, b]) => utf8Length(b)),
      envelopes,
      now,
    );
    this.noteChange();
  }

  private async detachIfEmpty(): Promise<void> {
    if (!this.fanout || this.openSockets().length > 0) return;
    const name = this.fanout.name;
    await this.serial(async () => {
      if (this.openSockets().length === 0) await this.orderer().detach(name);
    }).catch((err) => log("warn", "detach failed", { class: "ChannelObject", channel: this.channel, ...errorFields(err) }));
  }

  private orderer() {
    return this.env.CHANNEL.get(this.env.CHANNEL.idFromName(this.channel!));
  }

  /** Runs fan-out steps one after another. */
  private serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.chain.then(step);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Open sockets (one whose close is being handled is still listed by the runtime). */
  private openSockets(): WebSocket[] {
    return this.ctx.getWebSockets().filter((ws) => ws.readyState === WebSocket.OPEN);
  }

  // -------------------------------------------------------------------------
  // Stats
  // -------------------------------------------------------------------------

  /** This channel's stats, read directly (diagnostics and tests; /stats reads the control object's roll-ups instead). */
  async stats(): Promise<ChannelStats> {
    return this.rollupReport(Date.now()).stats;
  }

  /** Something changed: report now if the last report is old enough, else make sure an alarm will. */
  private noteChange(): void {
    this.rollup.dirty = true;
    const due = this.rollup.dueAt(this.config.STATS_ROLLUP_MS)!;
    if (due <= Date.now()) void this.report();
    else
      void this.armAlarm(due).catch((err) =>
        log("warn", "could not arm the stats alarm", { class: "ChannelObject", channel: this.channel, ...errorFields(err) }),
      );
  }

  /** Sends the roll-up to the control object; a failed report is folded into the next one. */
  private async report(): Promise<void> {
    if (!this.channel) return;
    const r = this.rollupReport(Date.now());
    this.rollup.take(r.at);
    try {
      await this.env.CONTROL.get(this.env.CONTROL.idFromName("control")).report(r);
    } catch (err) {
      this.rollup.giveBack(r.histograms);
      log("warn", "stats report failed; will retry", { class: "ChannelObject", channel: this.channel, ...errorFields(err) });
    }
  }

  private rollupReport(at: number): ChannelRollup {
    const connectionsByRole: Record<string, number> = {};
    const users = new Set<string>();
    const sockets = this.openSockets();
    for (const ws of sockets) {
      const s = this.session(ws);
      if (!s) continue;
      const role = s.role ?? "none";
      connectionsByRole[role] = (connectionsByRole[role] ?? 0) + 1;
      users.add(s.sub);
    }
    const oldest = this.oldestSeq();
    return {
      source: this.fanout?.name ?? "",
      ...(this.fanout ? { region: this.fanout.region } : {}),
      stats: {
        channel: this.channel ?? "",
        connections: sockets.length,
        connectionsByRole,
        uniqueUsers: users.size,
        ...this.counters,
        historySize: Math.max(0, this.counters.headSeq - oldest + 1),
      },
      users: [...users].slice(0, MAX_ROLLUP_USERS),
      histograms: { commitToStored: this.rollup.commitToStored.toJSON(), batchEvents: this.rollup.batchEvents.toJSON() },
      at,
    };
  }

  // -------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------

  private bindChannel(channel: string): void {
    if (this.channel === channel) return;
    if (this.channel !== undefined) throw new Error(`object bound to ${this.channel}, not ${channel}`);
    this.channel = channel;
    this.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('channel', ?)", channel);
  }

  /** Every statement goes through the production SQL limits (local workerd does not enforce them). */
  private exec<T extends Record<string, SqlStorageValue>>(query: string, ...params: SqlStorageValue[]): SqlStorageCursor<T> {
    checkSqlBindings(params);
    return this.sql.exec<T>(query, ...params);
  }

  private oldestSeq(): number {
    const row = this.exec<{ s: number | null }>("SELECT MIN(seq) AS s FROM events").one();
    return row.s ?? this.counters.headSeq + 1;
  }

  private persistCounters(): void {
    const c = this.counters;
    for (const [k, v] of Object.entries(c)) if (v !== null) this.exec("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", k, v);
  }

  /** One alarm serves token expiry and stats reports: keep the earliest. */
  private async armAlarm(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  private session(ws: WebSocket): Session | undefined {
    let s = this.sessions.get(ws);
    if (!s) {
      s = ws.deserializeAttachment() as Session | undefined;
      if (s) this.sessions.set(ws, s);
    }
    return s;
  }

  private save(ws: WebSocket, session: Session): void {
    this.sessions.set(ws, session);
    ws.serializeAttachment(session);
  }

  /** Bytes of a session as an attachment; production caps attachments at 16 KiB. */
  private static attachmentBytes(session: Session): number {
    return utf8Length(JSON.stringify(session));
  }

  private send(ws: WebSocket, msg: ServerMessage): boolean {
    return this.sendRaw(ws, JSON.stringify(msg));
  }

  /** A failed send closes that socket with 1011 and is counted; it never affects the others. */
  private sendRaw(ws: WebSocket, data: string): boolean {
    try {
      ws.send(data);
      this.counters.messagesSent++;
      return true;
    } catch (err) {
      this.counters.sendErrors++;
      log("warn", "send failed; closing socket", { class: "ChannelObject", channel: this.channel, ...errorFields(err) });
      this.close(ws, CloseCode.INTERNAL_ERROR, "send failed");
      return false;
    }
  }

  private close(ws: WebSocket, code: number, reason: string): void {
    this.sessions.delete(ws);
    try {
      ws.close(code, closeReason(reason));
    } catch {
      // The socket is already closing; the close handler will clean up.
    }
  }
}
