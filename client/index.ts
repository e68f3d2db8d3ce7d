/**
 * notifiws client SDK: one subscription to one channel, for browsers and for
 * Node 22+ (global WebSocket). No runtime dependency: message types come from
 * the shared protocol module as types only.
 *
 * The subscription reconnects with exponential backoff and full jitter,
 * resumes from the last seq it delivered (so the application sees every event
 * once and in order across any number of reconnects), sends heartbeats and
 * detects dead connections, and refreshes the token before it expires.
 */
import { fullJitter } from "../shared/backoff";
import type { Envelope, Filter, ServerMessage } from "../shared/types";
// The zod-free half of the protocol, so the SDK stays dependency-free at runtime.
import { BEARER_PROTOCOL_PREFIX, CloseCode, PING_FRAME, SUBPROTOCOL } from "../shared/wire";
import { parseSnapshot, visibleInSnapshot, type ParsedSnapshot, type PgSnapshot } from "../shared/snapshot";
import { afterClose, afterRefusal, type CloseDecision } from "./decide";
import { SdkErrorCode } from "./errors";
import { decodeRow, type ValueOptions } from "./values";
import { parseJsonExact } from "../shared/exact-json";

export { SdkErrorCode } from "./errors";
export { decodeRow, stringifyExact, type ValueOptions } from "./values";

/** The event with `data` and `old` decoded by their column types. */
function decodeEvent(ev: Envelope, opts: ValueOptions): Envelope {
  if (!ev.types || opts.raw) return ev;
  const out: Envelope = { ...ev, data: decodeRow(ev.data, ev.types, opts) ?? null };
  if (ev.old !== undefined) out.old = decodeRow(ev.old, ev.types, opts) ?? null;
  return out;
}

export type { ChangeEvent, Condition, Envelope, Filter, Operation, ServerMessage } from "../shared/types";
export { fullJitter };

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface ResetInfo {
  reason: "history_expired" | "ahead_of_head";
  headSeq: number;
  oldestSeq: number;
}

export interface SubscriptionError {
  /** HTTP status of a refused handshake (401/403/400), or undefined for protocol errors. */
  status?: number;
  /** Stable code: TOKEN_INVALID, CHANNEL_FORBIDDEN, FORBIDDEN (close 4003), BAD_JSON, … */
  code: string;
  message: string;
  /** True when the subscription gave up (closed) because of this error. */
  permanent: boolean;
}

export interface ConnectOptions {
  /** Base URL of the notifiws Worker (http(s):// or ws(s)://). */
  url: string;
  channel: string;
  /** A fixed token. Use getToken instead when tokens expire. */
  token?: string;
  /** Called for the first token and before each refresh/reconnect. */
  getToken?: () => string | Promise<string>;
  /** Resume after this seq (the last one your application processed). Default: live only. */
  since?: number;
  /** Server-side filter (see docs/protocol.md). */
  filter?: Filter;
  onEvent?: (event: Envelope) => void;
  /** Events were missed (history window passed): refetch state. Events continue after it resolves. */
  onReset?: (info: ResetInfo) => void | Promise<void>;
  onStateChange?: (state: ConnectionState) => void;
  onError?: (error: SubscriptionError) => void;
  /** Backoff base in ms. Default 500. */
  backoffBaseMs?: number;
  /** Backoff cap in ms. Default 30000. */
  backoffMaxMs?: number;
  /** Heartbeat interval in ms. Default 25000. */
  heartbeatMs?: number;
  /** A connection with no frame for this long after a ping is dead. Default 10000. */
  heartbeatTimeoutMs?: number;
  /** Refresh the token this many seconds before it expires (needs getToken). Default 60. */
  refreshBeforeSeconds?: number;
  /** WebSocket implementation. Default globalThis.WebSocket. */
  WebSocket?: typeof WebSocket;
  /** fetch implementation for diagnosing refused handshakes. Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** How row values are decoded from the wire (client/values.ts; docs/protocol.md, "Values"). Default: exact, int8 and numeric as strings. */
  values?: ValueOptions;
}

export interface Subscription {
  readonly state: ConnectionState;
  /** Last seq delivered to onEvent (or the resume point). */
  readonly lastSeq: number;
  /** now − committedAt of the last event, ms (undefined before the first event). */
  readonly lagMs: number | undefined;
  /** Handshakes attempted so far (1 + reconnects). */
  readonly attempts: number;
  /** Stops for good. */
  close(): void;
}

function decodeExp(token: string): number | undefined {
  try {
    const part = token.split(".")[1];
    if (!part) return undefined;
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}

/** One WebSocket attempt: everything that belongs to it, dropped together when it ends. */
interface Attempt {
  socket: WebSocket;
  token: string;
  welcomed: boolean;
  lastFrameAt: number;
  heartbeat: ReturnType<typeof setTimeout> | undefined;
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

  let state: ConnectionState = "connecting";
  /** The recovery position: the last seq delivered to onEvent (or the resume point). */
  let lastSeq = options.since;
  let lagMs: number | undefined;
  let attempts = 0;
  /** Consecutive failed attempts: the backoff exponent. Reset by a welcome. */
  let failures = 0;
  /** Handshakes refused with 401 in a row (one retry with a fresh token is allowed). */
  let refusals = 0;
  let closedByUser = false;
  let current: Attempt | undefined;
  let token: string | undefined = options.token;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  // Messages are handled one at a time so an async onReset holds later events back.
  let queue: Promise<void> = Promise.resolve();

  /** The one state setter. */
  const setState = (s: ConnectionState) => {
    if (s === state) return;
    state = s;
    options.onStateChange?.(s);
  };
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  };
  const report = (err: SubscriptionError) => options.onError?.(err);

  const httpBase = options.url.replace(/^ws/, "http").replace(/\/$/, "");
  const channelPath = `/ws/${encodeURIComponent(options.channel)}`;

  async function nextToken(): Promise<string> {
    if (options.getToken) token = await options.getToken();
    return token as string;
  }

  async function open(): Promise<void> {
    if (closedByUser) return;
    attempts++;
    let t: string;
    try {
      t = await nextToken();
    } catch (err) {
      report({ code: SdkErrorCode.TOKEN_UNAVAILABLE, message: (err as Error).message, permanent: false });
      return reconnect({ action: "backoff" });
    }
    if (closedByUser) return;
    const url = new URL(channelPath, httpBase.replace(/^http/, "ws"));
    if (lastSeq !== undefined) url.searchParams.set("since", String(lastSeq));
    if (options.filter) url.searchParams.set("filter", JSON.stringify(options.filter));
    let socket: WebSocket;
    try {
      socket = new WS(url.toString(), [SUBPROTOCOL, `${BEARER_PROTOCOL_PREFIX}${t}`]);
    } catch (err) {
      report({ code: SdkErrorCode.CONNECT_FAILED, message: (err as Error).message, permanent: false });
      return reconnect({ action: "backoff" });
    }
    const attempt: Attempt = { socket, token: t, welcomed: false, lastFrameAt: Date.now(), heartbeat: undefined };
    current = attempt;

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
    if (current !== attempt) return;
    switch (msg.type) {
      case "welcome":
        attempt.welcomed = true;
        failures = 0;
        refusals = 0;
        if (lastSeq === undefined) lastSeq = msg.headSeq;
        setState("open");
        beat(attempt);
        scheduleRefresh(attempt, msg.expiresAt);
        return;
      case "events":
        for (const ev of msg.events) {
          // Replays after a reconnect can overlap what was already delivered.
          if (lastSeq !== undefined && ev.seq <= lastSeq) continue;
          lastSeq = ev.seq;
          lagMs = Date.now() - ev.committedAt;
          options.onEvent?.(decodeEvent(ev, valueOptions));
        }
        return;
      case "reset":
        await options.onReset?.({ reason: msg.reason, headSeq: msg.headSeq, oldestSeq: msg.oldestSeq });
        lastSeq = msg.headSeq;
        return;
      case "refreshed":
        scheduleRefresh(attempt, msg.expiresAt);
        return;
      case "error":
        report({ code: msg.code, message: msg.message, permanent: false });
        return;
      default:
        return;
    }
  }

  /** Pings every heartbeatMs; no frame at all within heartbeatTimeoutMs of a ping means the path is dead (half-open TCP never closes by itself). */
  function beat(attempt: Attempt): void {
    attempt.heartbeat = later(heartbeatMs, () => {
      if (current !== attempt) return;
      const sentAt = Date.now();
      try {
        attempt.socket.send(PING_FRAME);
      } catch {
        /* closing */
      }
      later(heartbeatTimeoutMs, () => {
        if (current === attempt && attempt.lastFrameAt < sentAt) drop(attempt, "heartbeat timeout");
      });
      beat(attempt);
    });
  }

  /** The one path for every end of an attempt: the server closed, the handshake failed, or we dropped it. */
  function ended(attempt: Attempt, code: number, reason: string): void {
    if (current !== attempt) return;
    current = undefined;
    if (attempt.heartbeat) clearTimeout(attempt.heartbeat);
    const decision = afterClose({ code, reason, welcomed: attempt.welcomed, closedByUser });
    if (decision.action === "diagnose") return void diagnose(attempt.token);
    reconnect(decision);
  }

  /** Drops a connection without waiting for a close handshake that may never come. */
  function drop(attempt: Attempt, why: string): void {
    attempt.socket.onclose = null;
    attempt.socket.onmessage = null;
    try {
      attempt.socket.close(1000, why);
    } catch {
      /* already closed */
    }
    ended(attempt, 1006, why);
  }

  /** Acts on a decision: stop, reconnect now, or reconnect after a backoff. */
  function reconnect(decision: Exclude<CloseDecision, { action: "diagnose" }>): void {
    if (decision.action === "stop") {
      if (decision.permanent) report({ ...decision.permanent, permanent: true });
      return stop();
    }
    if (closedByUser) return;
    setState("reconnecting");
    if (decision.action === "reconnect-now") return void open();
    later(fullJitter(failures++, baseMs, maxMs), () => void open());
  }

  /** The browser hides the status of a failed handshake; ask the same URL over plain HTTP. */
  async function diagnose(t: string): Promise<void> {
    let status: number | undefined;
    let body: { error?: { code?: string; message?: string } } = {};
    try {
      if (doFetch) {
        const res = await doFetch(`${httpBase}${channelPath}`, { headers: { authorization: `Bearer ${t}` } });
        status = res.status;
        if (status >= 400 && status < 500) body = (await res.json().catch(() => ({}))) as typeof body;
      }
    } catch {
      /* network down: a plain reconnect */
    }
    if (status === undefined || status < 400 || status >= 500) return reconnect({ action: "backoff" });
    const verdict = afterRefusal({ status, canRefreshToken: options.getToken !== undefined, refusalsBefore: refusals });
    refusals++;
    const err = { status, code: body.error?.code ?? `HTTP_${status}`, message: body.error?.message ?? "refused", permanent: verdict === "stop" };
    if (verdict === "stop") return reconnect({ action: "stop", permanent: err });
    report(err);
    reconnect({ action: "backoff" });
  }

  function scheduleRefresh(attempt: Attempt, expiresAt: number) {
    if (!options.getToken) return;
    const inMs = Math.max(0, (expiresAt - refreshBefore) * 1000 - Date.now());
    later(inMs, async () => {
      if (current !== attempt) return;
      try {
        const fresh = await nextToken();
        const exp = decodeExp(fresh);
        if (exp !== undefined && exp <= expiresAt) return; // not newer; try again at reconnect
        attempt.socket.send(JSON.stringify({ type: "refresh", token: fresh }));
      } catch (err) {
        report({ code: SdkErrorCode.TOKEN_UNAVAILABLE, message: (err as Error).message, permanent: false });
      }
    });
  }

  function stop() {
    closedByUser = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const a = current;
    current = undefined;
    try {
      a?.socket.close(1000, "client closed");
    } catch {
      /* already closed */
    }
    setState("closed");
  }

  void open();

  return {
    get state() {
      return state;
    },
    get lastSeq() {
      return lastSeq ?? 0;
    },
    get lagMs() {
      return lagMs;
    },
    get attempts() {
      return attempts;
    },
    close: stop,
  };
}

// ---------------------------------------------------------------------------
// Snapshot, then live
// ---------------------------------------------------------------------------

export { parseSnapshot, visibleInSnapshot, type PgSnapshot, type ParsedSnapshot } from "../shared/snapshot";

export interface LoadedState<S> {
  state: S;
  /**
   * `SELECT notifiws.snapshot()` (or `pg_current_snapshot()::text`) read in the
   * same REPEATABLE READ transaction as `state`.
   */
  snapshot: PgSnapshot | string;
}

export interface SyncOptions<S> extends Omit<ConnectOptions, "channel" | "since" | "onEvent" | "onReset" | "onStateChange"> {
  /** Connection state of one of the channels. */
  onStateChange?: (state: ConnectionState, channel: string) => void;
  /** Channels whose events change the state; all are subscribed before the state is loaded. */
  channels: string[];
  /** Reads the state and its snapshot in one REPEATABLE READ transaction (e.g. a fetch to your backend). */
  load: () => Promise<LoadedState<S>>;
  /** Folds one event into the state; return the new state (or the same one, mutated). */
  apply: (state: S, event: Envelope) => S;
  /** Called after every load and every applied event. */
  onState?: (state: S, change: { kind: "loaded" } | { kind: "event"; event: Envelope }) => void;
  /** Every event, applied or skipped because the loaded state already contained it. */
  onEvent?: (event: Envelope, applied: boolean) => void;
  /** A load failed; it is retried with backoff. */
  onLoadError?: (error: Error) => void;
}

export interface SyncedState<S> {
  /** The current state: undefined until the first load completes. */
  readonly state: S | undefined;
  /** Resolves with the first loaded state. */
  readonly ready: Promise<S>;
  readonly subscriptions: readonly Subscription[];
  /** Loads so far (1 + reloads after a reset). */
  readonly loads: number;
  close(): void;
}

/**
 * The app's initial state and the event stream, meeting with no gap and no
 * double count. Subscribes to every channel first and buffers; loads the state
 * with its Postgres snapshot; then applies, buffered and live alike, exactly
 * the events whose transaction the snapshot did not see. Every event is
 * checked (not only the buffered ones): a change committed before the
 * snapshot can still arrive later when the relay lags. Reconnects inside the
 * history window resume without reloading; a `reset` reloads through the same
 * path. Events without a transaction id (the publish API) are always applied.
 */
export function syncState<S>(options: SyncOptions<S>): SyncedState<S> {
  const { channels, load, apply, onState, onEvent, onLoadError, onStateChange, ...connectOptions } = options;
  if (channels.length === 0) throw new Error("syncState needs at least one channel");
  let state: S | undefined;
  let snapshot: ParsedSnapshot | undefined;
  // While a load runs, events wait here and are filtered by the new snapshot.
  let buffer: Envelope[] | undefined = [];
  let loading: Promise<void> | undefined;
  let loads = 0;
  let closed = false;
  let resolveReady!: (s: S) => void;
  const ready = new Promise<S>((r) => (resolveReady = r));
  const opened = new Set<string>();

  const applyOne = (event: Envelope) => {
    const seen = event.txid !== undefined && snapshot !== undefined && visibleInSnapshot(event.txid, snapshot);
    onEvent?.(event, !seen);
    if (seen) return;
    state = apply(state as S, event);
    onState?.(state, { kind: "event", event });
  };

  // Reload requests; a reset arriving while a load runs makes that load stale.
  let requested = 0;
  const reload = (): Promise<void> => {
    buffer ??= [];
    requested++;
    loading ??= (async () => {
      for (let attempt = 0; !closed;) {
        const serving = requested;
        try {
          const loaded = await load();
          if (closed) return;
          if (serving !== requested) continue; // events may have been missed after this snapshot: load again
          state = loaded.state;
          snapshot = parseSnapshot(loaded.snapshot);
          loads++;
          const waiting = buffer ?? [];
          buffer = undefined;
          onState?.(state, { kind: "loaded" });
          if (loads === 1) resolveReady(state);
          for (const e of waiting) applyOne(e);
          return;
        } catch (err) {
          onLoadError?.(err as Error);
          attempt++;
          await new Promise((r) => setTimeout(r, fullJitter(attempt, connectOptions.backoffBaseMs ?? 500, connectOptions.backoffMaxMs ?? 30_000)));
        }
      }
    })().finally(() => (loading = undefined));
    return loading;
  };

  const subscriptions = channels.map((channel) =>
    connect({
      ...connectOptions,
      channel,
      onStateChange: (s) => {
        // Load once every channel is subscribed: from then on no event can slip between state and stream.
        if (s === "open" && !opened.has(channel)) {
          opened.add(channel);
          if (opened.size === channels.length && loads === 0) void reload();
        }
        onStateChange?.(s, channel);
      },
      onEvent: (event) => {
        if (buffer) buffer.push(event);
        else applyOne(event);
      },
      // Events were missed: the state is reloaded (with a new snapshot) before this channel continues.
      onReset: () => reload(),
    }),
  );

  return {
    get state() {
      return state;
    },
    ready,
    subscriptions,
    get loads() {
      return loads;
    },
    close() {
      closed = true;
      for (const s of subscriptions) s.close();
    },
  };
}
