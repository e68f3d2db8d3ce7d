/**
 * `notifiws/react`: hooks over the SDK. React is a peer dependency.
 *
 * A subscription is opened after the component commits and closed on unmount
 * or when the channel (or URL, or filter) changes. Opening is deferred by one
 * task, so React StrictMode's mount → unmount → mount in development opens
 * exactly one connection.
 */
import { useEffect, useRef, useState } from "react";
import {
  connect,
  liveTable,
  SdkErrorCode,
  syncState,
  type ConnectionState,
  type ConnectOptions,
  type Envelope,
  type LiveTableOptions,
  type Row,
  type SubscriptionError,
  type SyncOptions,
  type Subscription,
  type PresenceState,
  EMPTY_PRESENCE,
} from "./index";

export interface UseChannelOptions extends Omit<ConnectOptions, "channel" | "onEvent" | "onStateChange" | "onError"> {
  /** Keep at most this many events (the newest). Default 100. */
  maxEvents?: number;
  /** Also called for every event. */
  onEvent?: (event: Envelope) => void;
}

export interface ChannelView {
  /** The newest events, oldest first. */
  events: Envelope[];
  status: ConnectionState;
  /** now − committedAt of the last event, ms. */
  lagMs: number | undefined;
  /** The last error reported (permanent ones close the subscription). */
  error: SubscriptionError | undefined;
  lastSeq: number;
}

/** Live events of one channel. */
const INITIAL: ChannelView = { events: [], status: "connecting", lagMs: undefined, error: undefined, lastSeq: 0 };

export function useChannel(channel: string, options: UseChannelOptions): ChannelView {
  const latest = useRef(options);
  latest.current = options;
  const filterKey = options.filter ? JSON.stringify(options.filter) : "";
  // The view belongs to one stream: after a channel change, the old stream's
  // events and status are never shown, not even for the render before the effect.
  const key = JSON.stringify([channel, options.url, filterKey]);
  const [state, setState] = useState<{ key: string; view: ChannelView }>({ key, view: INITIAL });
  const currentKey = useRef(key);
  currentKey.current = key;
  const setView = (update: (v: ChannelView) => ChannelView) => {
    if (key !== currentKey.current) return; // a late callback of a stream this component left
    setState((s) => ({ key, view: update(s.key === key ? s.view : INITIAL) }));
  };
  useEffect(() => {
    let sub: ReturnType<typeof connect> | undefined;
    const start = setTimeout(() => {
      const { maxEvents = 100, onEvent, ...rest } = latest.current;
      sub = connect({
        ...rest,
        channel,
        onEvent: (e) => {
          latest.current.onEvent?.(e);
          setView((v) => ({ ...v, events: [...v.events, e].slice(-maxEvents), lagMs: sub?.lagMs, lastSeq: e.seq }));
        },
        onStateChange: (status) => setView((v) => ({ ...v, status })),
        onError: (error) => setView((v) => ({ ...v, error })),
      });
    }, 0);
    return () => {
      clearTimeout(start);
      sub?.close();
    };
    // Reconnect only when what identifies the stream changes, not on every render's new options object.
  }, [key]);
  return state.key === key ? state.view : INITIAL;
}

export interface UseSyncedStateOptions<S> extends Omit<SyncOptions<S>, "onState" | "onStateChange"> {}

export interface SyncedView<S> {
  /** Undefined until the first load completes. */
  state: S | undefined;
  /** "open" once every channel is open. */
  status: ConnectionState;
  /** The last error reported by a subscription or a failed load (permanent ones close the subscription), as useChannel gives it. */
  error: SubscriptionError | undefined;
}

/** Initial state plus live events with no gap and no double count (see syncState). */
export function useSyncedState<S>(options: UseSyncedStateOptions<S>): SyncedView<S> {
  const [view, setView] = useState<SyncedView<S>>({ state: undefined, status: "connecting", error: undefined });
  const latest = useRef(options);
  latest.current = options;
  const key = JSON.stringify([options.url, options.channels, options.filter ?? null]);
  useEffect(() => {
    const states = new Map<string, ConnectionState>();
    let synced: ReturnType<typeof syncState<S>> | undefined;
    const start = setTimeout(() => {
      synced = syncState<S>({
        ...latest.current,
        load: () => latest.current.load(),
        apply: (s, e) => latest.current.apply(s, e),
        // A new object each time, so React re-renders even when apply mutated the state in place.
        onState: (state) =>
          setView((v) => ({ ...v, state: Array.isArray(state) ? ([...state] as S) : typeof state === "object" && state !== null ? { ...state } : state })),
        onError: (error) => {
          latest.current.onError?.(error);
          setView((v) => ({ ...v, error }));
        },
        onLoadError: (err) => {
          latest.current.onLoadError?.(err);
          setView((v) => ({ ...v, error: { code: SdkErrorCode.LOAD_FAILED, message: err.message, permanent: false } }));
        },
        onStateChange: (s, channel) => {
          states.set(channel, s);
          const all = [...states.values()];
          const status: ConnectionState =
            all.length === latest.current.channels.length && all.every((x) => x === "open") ? "open" : s === "open" ? "connecting" : s;
          setView((v) => ({ ...v, status }));
        },
      });
    }, 0);
    return () => {
      clearTimeout(start);
      synced?.close();
    };
  }, [key]);
  return view;
}

export interface UseLiveTableOptions extends Omit<LiveTableOptions, "channel" | "onChange"> {}

export interface LiveTableView<R extends Row = Row> {
  /** The rows: loaded rows in key order, later inserts after them. */
  rows: R[];
  /** The same rows by rowKey() of their key columns. */
  byKey: ReadonlyMap<string, R>;
  /** The key columns, once loaded. */
  key: readonly string[] | undefined;
  /** "open" once the rows are loaded and the subscription is open. */
  status: ConnectionState;
  /** The last error (a refused load, or the subscription's); permanent ones close the table. */
  error: SubscriptionError | undefined;
}

const NO_ROWS: LiveTableView = { rows: [], byKey: new Map(), key: undefined, status: "connecting", error: undefined };

/** A watched table's rows, loaded from the edge and kept equal to the database (see liveTable). */
export function useLiveTable<R extends Row = Row>(channel: string, options: UseLiveTableOptions): LiveTableView<R> {
  const latest = useRef(options);
  latest.current = options;
  const key = JSON.stringify([channel, options.url]);
  const [state, setState] = useState<{ key: string; view: LiveTableView<R> }>({ key, view: NO_ROWS as LiveTableView<R> });
  const currentKey = useRef(key);
  currentKey.current = key;
  useEffect(() => {
    let table: ReturnType<typeof liveTable<R>> | undefined;
    const start = setTimeout(() => {
      table = liveTable<R>({
        ...latest.current,
        channel,
        getToken: latest.current.getToken ? () => latest.current.getToken!() : undefined,
        onError: (error) => latest.current.onError?.(error),
        onChange: (t) =>
          // A late change of a table this component left (its close) is not shown.
          key === currentKey.current &&
          setState({
            key,
            view: { rows: [...(t.rows.values() as Iterable<R>)], byKey: t.rows as ReadonlyMap<string, R>, key: t.key, status: t.status, error: t.error },
          }),
      });
    }, 0);
    return () => {
      clearTimeout(start);
      table?.close();
    };
  }, [key]);
  return state.key === key ? state.view : (NO_ROWS as LiveTableView<R>);
}

export interface UsePresenceOptions extends Omit<ConnectOptions, "channel" | "presence" | "onPresence" | "onStateChange" | "onError"> {
  /** This user's metadata (for example `{ viewing: "orders" }`), sent again whenever its JSON changes. */
  meta?: Record<string, unknown>;
}

export interface PresenceView extends PresenceState {
  status: ConnectionState;
  error: SubscriptionError | undefined;
}

const NOBODY: PresenceView = { ...EMPTY_PRESENCE, status: "connecting", error: undefined };

/**
 * Who is connected to a presence channel (docs/protocol.md, "Presence"), on a
 * subscription of its own with `presence: true`: it also receives the
 * channel's events (pass `onEvent`, or a `filter` to receive fewer).
 */
export function usePresence(channel: string, options: UsePresenceOptions): PresenceView {
  const latest = useRef(options);
  latest.current = options;
  const key = JSON.stringify([channel, options.url, options.filter ?? null]);
  const [state, setState] = useState<{ key: string; view: PresenceView }>({ key, view: NOBODY });
  const currentKey = useRef(key);
  currentKey.current = key;
  const sub = useRef<Subscription | undefined>(undefined);
  const setView = (update: (v: PresenceView) => PresenceView) => {
    if (key !== currentKey.current) return; // a late callback of a subscription this component left
    setState((s) => ({ key, view: update(s.key === key ? s.view : NOBODY) }));
  };
  useEffect(() => {
    const start = setTimeout(() => {
      const { meta, ...rest } = latest.current;
      sub.current = connect({
        ...rest,
        channel,
        presence: true,
        onPresence: (p) => setView((v) => ({ ...v, ...p })),
        onStateChange: (status) => setView((v) => ({ ...v, status })),
        onError: (error) => setView((v) => ({ ...v, error })),
      });
      if (meta) sub.current.setPresence(meta);
    }, 0);
    return () => {
      clearTimeout(start);
      sub.current?.close();
      sub.current = undefined;
    };
  }, [key]);
  const metaKey = options.meta ? JSON.stringify(options.meta) : "";
  useEffect(() => {
    if (options.meta) sub.current?.setPresence(options.meta);
  }, [metaKey]);
  return state.key === key ? state.view : NOBODY;
}
