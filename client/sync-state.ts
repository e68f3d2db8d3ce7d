/**
 * Initial state plus live events with no gap and no double count: subscribe
 * first, load the app's state with its Postgres snapshot, then apply exactly
 * the events the snapshot did not see (docs/protocol.md, "Snapshot, then live").
 */
import { fullJitter } from "../shared/backoff";
import type { Envelope } from "../shared/types";
import { parseSnapshot, visibleInSnapshot, type ParsedSnapshot, type PgSnapshot } from "../shared/snapshot";
import { connect } from "./connect";
import type { ConnectionState, ConnectOptions, Subscription } from "./types";

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
