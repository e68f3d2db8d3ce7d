/**
 * One subscription to one channel: reconnects with backoff and full jitter,
 * resumes from the last seq it delivered (every event once and in order across
 * reconnects), detects dead connections by heartbeat, refreshes the token.
 * Everything it knows is one `Connection` value changed only through `set`
 * (centrifuge-js and Electric's client do the same). An attempt: open() (a
 * token and a socket; status connecting | reconnecting), welcome (status
 * open; failures reset), ended(): the one path for every end (a server close,
 * a failed handshake, a heartbeat timeout), where afterClose() (decide.ts)
 * chooses stop | diagnose | reconnect-now | backoff and reconnect() acts on
 * it, resuming from `lastSeq`. Acks: ack.ts; presence: presence.ts.
 */
import { fullJitter } from "../shared/backoff";
import type { ServerMessage } from "../shared/types";
import { BEARER_PROTOCOL_PREFIX, CloseCode, PING_FRAME, SUBPROTOCOL } from "../shared/wire"; // zod-free: the SDK has no runtime dependency
import { parseJsonExact } from "../shared/exact-json";
import { askWhy } from "./ask-why";
import { afterClose, afterDiagnosis, type CloseDecision } from "./decide";
import { SdkErrorCode } from "./errors";
import type { ConnectionState, ConnectOptions, Subscription, SubscriptionError } from "./types";
import { decodeEvent } from "./values";
import { planLifetime } from "./lifetime";
import { createAcker, DEFAULT_ACK_EVERY_EVENTS as ACK_EVENTS, DEFAULT_ACK_EVERY_MS as ACK_MS, type Acker } from "./ack";
import { createPresence } from "./presence";

/** One WebSocket attempt: everything that belongs to it, dropped together when it ends. */
interface Attempt {
  socket: WebSocket;
  token: string;
  welcomed: boolean;
  lastFrameAt: number;
  heartbeat: ReturnType<typeof setTimeout> | undefined;
  /** Flow control: acknowledges what onEvent was given (ack.ts). */
  acker: Acker;
  /** The token's expiry on this connection (welcome, then each refreshed). */
  expiresAt?: number;
}

/** Everything a subscription knows. */
interface Connection {
  status: ConnectionState;
  /** The recovery position: the last seq delivered to onEvent (or the resume point). */
  lastSeq: number | undefined;
  lagMs: number | undefined;
  /** Handshakes attempted so far. */
  attempts: number;
  /** Consecutive failed attempts: the backoff exponent. Reset by a welcome. */
  failures: number;
  /** Handshakes refused with 401 in a row (one retry with a fresh token is allowed). */
  refusals: number;
  /** The attempt in progress; undefined between attempts. */
  attempt: Attempt | undefined;
  /** The latest token (from options.token or getToken). */
  token: string | undefined;
  closedByUser: boolean;
}

export function connect(options: ConnectOptions): Subscription {
  const WS = options.WebSocket ?? globalThis.WebSocket;
  const doFetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
  if (!WS) throw new Error("no WebSocket implementation: pass options.WebSocket (Node < 22)");
  if (!options.token && !options.getToken) throw new Error("pass token or getToken");
  const baseMs = options.backoffBaseMs ?? 500;
  const maxMs = options.backoffMaxMs ?? 30_000;
  const heartbeatMs = options.heartbeatMs ?? 25_000;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
  const refreshBefore = options.refreshBeforeSeconds ?? 60;
  const valueOptions = options.values ?? {};
  const httpBase = options.url.replace(/^ws/, "http").replace(/\/$/, "");
  const channelPath = `/ws/${encodeURIComponent(options.channel)}`;

  const presence = createPresence(options.onPresence);
  const conn: Connection = {
    status: "connecting",
    lastSeq: options.since,
    lagMs: undefined,
    attempts: 0,
    failures: 0,
    refusals: 0,
    attempt: undefined,
    token: options.token,
    closedByUser: false,
  };
  /** The one setter: every change of the connection goes through here, and a status change is reported. */
  const set = (patch: Partial<Connection>) => {
    const before = conn.status;
    Object.assign(conn, patch);
    if (conn.status !== before) options.onStateChange?.(conn.status);
  };

  const timers = new Set<ReturnType<typeof setTimeout>>();
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  };
  // Messages are handled one at a time so an async onReset holds later events back.
  let queue: Promise<void> = Promise.resolve();
  const report = (err: SubscriptionError) => options.onError?.(err);
  async function nextToken(): Promise<string> {
    if (options.getToken) set({ token: await options.getToken() });
    return conn.token as string;
  }

  async function open(): Promise<void> {
    if (conn.closedByUser) return;
    set({ attempts: conn.attempts + 1 });
    let token: string;
    try {
      token = await nextToken();
    } catch (err) {
      report({ code: SdkErrorCode.TOKEN_UNAVAILABLE, message: (err as Error).message, permanent: false });
      return reconnect({ action: "backoff" });
    }
    if (conn.closedByUser) return;
    const url = new URL(channelPath, httpBase.replace(/^http/, "ws"));
    if (conn.lastSeq !== undefined) url.searchParams.set("since", String(conn.lastSeq));
    if (options.filter) url.searchParams.set("filter", JSON.stringify(options.filter));
    url.searchParams.set("ack", "1");
    if (options.presence) url.searchParams.set("presence", "1");
    let socket: WebSocket;
    try {
      socket = new WS(url.toString(), [SUBPROTOCOL, `${BEARER_PROTOCOL_PREFIX}${token}`]);
    } catch (err) {
      report({ code: SdkErrorCode.CONNECT_FAILED, message: (err as Error).message, permanent: false });
      return reconnect({ action: "backoff" });
    }
    const acker = createAcker((frame) => socket.send(frame), { everyEvents: options.ackEveryEvents ?? ACK_EVENTS, everyMs: options.ackEveryMs ?? ACK_MS });
    const attempt: Attempt = { socket, token, welcomed: false, lastFrameAt: Date.now(), heartbeat: undefined, acker };
    set({ attempt });

    socket.onmessage = (e: MessageEvent) => {
      attempt.lastFrameAt = Date.now();
      let msg: ServerMessage;
      try {
        // Exact: a published number a float cannot hold arrives as a bigint or its text, never rounded.
        msg = parseJsonExact(String(e.data), "value") as ServerMessage;
      } catch {
        return;
      }
      queue = queue
        .then(() => handle(attempt, msg))
        .catch((err: unknown) => report({ code: SdkErrorCode.HANDLER_FAILED, message: (err as Error).message, permanent: false }));
    };
    socket.onclose = (e: CloseEvent) => ended(attempt, e.code, e.reason);
    // Some runtimes (Node's undici) report a refused handshake with "error" and no "close".
    socket.onerror = () => {
      if (!attempt.welcomed) ended(attempt, 1006, "handshake failed");
    };
  }

  async function handle(attempt: Attempt, msg: ServerMessage): Promise<void> {
    if (conn.attempt !== attempt) return;
    switch (msg.type) {
      case "welcome":
        attempt.welcomed = true;
        set({ status: "open", failures: 0, refusals: 0, lastSeq: conn.lastSeq ?? msg.headSeq });
        beat(attempt);
        scheduleRefresh(attempt, msg.expiresAt);
        return presence.welcomed((f) => attempt.socket.send(f));
      case "events": {
        let delivered = 0;
        for (const ev of msg.events) {
          // Replays after a reconnect can overlap what was already delivered.
          if (conn.lastSeq !== undefined && ev.seq <= conn.lastSeq) continue;
          set({ lastSeq: ev.seq, lagMs: Date.now() - ev.committedAt });
          options.onEvent?.(decodeEvent(ev, valueOptions));
          delivered++;
        }
        return attempt.acker.delivered(conn.lastSeq!, delivered);
      }
      case "reset":
        await options.onReset?.({ reason: msg.reason, headSeq: msg.headSeq, oldestSeq: msg.oldestSeq });
        set({ lastSeq: msg.headSeq });
        return;
      case "refreshed":
        scheduleRefresh(attempt, msg.expiresAt);
        return;
      case "error":
        return report({ code: msg.code, message: msg.message, permanent: false });
      case "presence":
      case "presence_diff":
        return presence.apply(msg);
    }
  }

  /** Pings every heartbeatMs; no frame at all within heartbeatTimeoutMs of a ping means the path is dead (half-open TCP never closes by itself). */
  function beat(attempt: Attempt): void {
    attempt.heartbeat = later(heartbeatMs, () => {
      if (conn.attempt !== attempt) return;
      const sentAt = Date.now();
      try {
        attempt.socket.send(PING_FRAME);
      } catch {
        /* closing */
      }
      later(heartbeatTimeoutMs, () => {
        if (conn.attempt === attempt && attempt.lastFrameAt < sentAt) drop(attempt, "heartbeat timeout");
      });
      beat(attempt);
    });
  }

  /** The one path for every end of an attempt: the server closed, the handshake failed, or we dropped it. */
  function ended(attempt: Attempt, code: number, reason: string): void {
    if (conn.attempt !== attempt) return;
    set({ attempt: undefined });
    if (attempt.heartbeat) clearTimeout(attempt.heartbeat);
    attempt.acker.stop();
    const decision = afterClose({ code, reason, welcomed: attempt.welcomed, closedByUser: conn.closedByUser });
    if (decision.action === "diagnose") return void diagnose(attempt.token);
    reconnect(decision);
  }

  /** Drops a connection without waiting for a close handshake that may never come. */
  function drop(attempt: Attempt, why: string, code = 1006): void {
    attempt.socket.onclose = null;
    attempt.socket.onmessage = null;
    try {
      attempt.socket.close(1000, why);
    } catch {
      /* already closed */
    }
    ended(attempt, code, why);
  }
  /** Acts on a decision: stop, reconnect now, or reconnect after a backoff. */
  function reconnect(decision: Exclude<CloseDecision, { action: "diagnose" }>): void {
    if (decision.action === "stop") {
      if (decision.permanent) report({ ...decision.permanent, permanent: true });
      return stop();
    }
    if (conn.closedByUser) return;
    set({ status: "reconnecting" });
    if (decision.action === "reconnect-now") return void open();
    const delay = fullJitter(conn.failures, baseMs, maxMs);
    set({ failures: conn.failures + 1 });
    later(delay, () => void open());
  }

  /** The browser hides the status of a failed handshake; ask the same URL over plain HTTP (ask-why.ts, afterDiagnosis). */
  async function diagnose(token: string): Promise<void> {
    const why = await askWhy(doFetch, `${httpBase}${channelPath}`, token);
    const d = afterDiagnosis(why, { base: httpBase, canRefreshToken: options.getToken !== undefined, refusalsBefore: conn.refusals });
    if (d.refused) set({ refusals: conn.refusals + 1 });
    if (d.action === "stop") return reconnect({ action: "stop", permanent: d.error });
    if (d.error) report(d.error);
    reconnect({ action: "backoff" });
  }

  /** The token's lifetime on this attempt: refresh before it ends, end the connection after (lifetime.ts). */
  function scheduleRefresh(attempt: Attempt, expiresAt: number) {
    attempt.expiresAt = expiresAt;
    planLifetime(expiresAt, {
      later,
      current: () => conn.attempt === attempt && attempt.expiresAt === expiresAt,
      nextToken: options.getToken ? nextToken : undefined,
      send: (frame) => attempt.socket.send(frame),
      expire: () => drop(attempt, "token expired", CloseCode.TOKEN_EXPIRED),
      report,
      refreshBeforeSeconds: refreshBefore,
    });
  }

  function stop() {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const a = conn.attempt;
    set({ closedByUser: true, attempt: undefined });
    try {
      a?.socket.close(1000, "client closed");
    } catch {
      /* already closed */
    }
    set({ status: "closed" });
  }

  void open();

  return {
    get state() {
      return conn.status;
    },
    get lastSeq() {
      return conn.lastSeq ?? 0;
    },
    get lagMs() {
      return conn.lagMs;
    },
    get attempts() {
      return conn.attempts;
    },
    presence: presence.view,
    setPresence: (meta) => presence.set(meta, conn.attempt?.welcomed ? (f) => conn.attempt!.socket.send(f) : undefined),
    close: stop,
  };
}
