/**
 * A watched table's rows, loaded from the edge and kept equal to the
 * database (docs/live-tables.md): GET /v1/channels/:channel/rows gives the
 * rows, the snapshot they were read under and `fromSeq`; the subscription
 * starts there and applies exactly the events the snapshot did not see
 * (the rule syncState uses, shared/snapshot.ts). A `reset` (events were
 * missed) loads the rows again through the same path.
 *
 * One state value changed only through `set`, which tells listeners:
 * status, rows, error and the load count move together.
 */
import { fullJitter } from "../shared/backoff";
import { parseJsonExact } from "../shared/exact-json";
import { parseSnapshot, visibleInSnapshot, type ParsedSnapshot, type PgSnapshot } from "../shared/snapshot";
import type { Envelope } from "../shared/types";
import { connect } from "./connect";
import { afterLoadRefusal } from "./decide";
import { SdkErrorCode } from "./errors";
import type { ConnectionState, ConnectOptions, Subscription, SubscriptionError } from "./types";
import { decodeRow } from "./values";

export type Row = Record<string, unknown>;

export interface LiveTableOptions extends Omit<ConnectOptions, "since" | "filter" | "onEvent" | "onReset" | "onStateChange" | "onError"> {
  /** Every change of rows, status or error (after it is applied). */
  onChange?: (table: LiveTable) => void;
  /** Every error: a refused or failed load, or the subscription's. */
  onError?: (error: SubscriptionError) => void;
}

export interface LiveTable<R extends Row = Row> {
  /** The rows, keyed by rowKey() of their key columns; loaded rows in key order, later inserts after them. */
  readonly rows: ReadonlyMap<string, R>;
  /** The key columns (from the watch), once loaded. */
  readonly key: readonly string[] | undefined;
  /** "connecting" until the rows are loaded and the subscription is open. */
  readonly status: ConnectionState;
  /** The last error; a permanent one closed the table. */
  readonly error: SubscriptionError | undefined;
  /** Loads so far (1 + one per reset). */
  readonly loads: number;
  /** Resolves once the first rows are loaded. */
  readonly ready: Promise<void>;
  /** Calls `listener` after every change; returns the unsubscribe function (React's useSyncExternalStore shape). */
  subscribe(listener: () => void): () => void;
  close(): void;
}

/** What GET /v1/channels/:channel/rows answers. */
interface RowsBody {
  rows: Row[];
  types: Record<string, string>;
  key: string[];
  table: string;
  snapshot: PgSnapshot;
  fromSeq: number;
}

/** The map key of a row: the key column's value as text, or the key columns' values as a JSON array. */
export function rowKey(row: Row, key: readonly string[]): string {
  if (key.length === 1) return String(row[key[0]!]);
  return JSON.stringify(key.map((k) => (typeof row[k] === "bigint" ? String(row[k]) : row[k])));
}

/** What an event does to a live table's rows (pure; table-tested in test/node/live-table.test.ts). */
export function applyChange(rows: Map<string, Row>, key: readonly string[], event: Pick<Envelope, "op" | "data">): boolean {
  if (!event.data) return false;
  switch (event.op) {
    case "insert":
    case "update":
    case "enter":
      rows.set(rowKey(event.data, key), event.data);
      return true;
    case "delete":
    case "leave":
      return rows.delete(rowKey(event.data, key));
    default:
      return false; // publish: not a row of the table
  }
}

interface State {
  status: ConnectionState;
  rows: Map<string, Row>;
  key: string[] | undefined;
  error: SubscriptionError | undefined;
  loads: number;
}

export function liveTable<R extends Row = Row>(options: LiveTableOptions): LiveTable<R> {
  const { onChange, onError, ...connectOptions } = options;
  const doFetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
  if (!doFetch) throw new Error("no fetch implementation: pass options.fetch");
  if (!options.token && !options.getToken) throw new Error("pass token or getToken");
  const rowsUrl = `${options.url.replace(/^ws/, "http").replace(/\/$/, "")}/v1/channels/${encodeURIComponent(options.channel)}/rows`;

  const state: State = { status: "connecting", rows: new Map(), key: undefined, error: undefined, loads: 0 };
  const listeners = new Set<() => void>();
  let closed = false;
  let subscription: Subscription | undefined;
  let snapshot: ParsedSnapshot | undefined;
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));
  let retry: ReturnType<typeof setTimeout> | undefined;
  /** Events of the current task, applied to a copy of the rows; `generation` counts loads. */
  let pending: { rows: Map<string, Row>; changed: boolean; generation: number } | undefined;
  let generation = 0;

  const table: LiveTable<R> = {
    get rows() {
      return state.rows as unknown as ReadonlyMap<string, R>;
    },
    get key() {
      return state.key;
    },
    get status() {
      return state.status;
    },
    get error() {
      return state.error;
    },
    get loads() {
      return state.loads;
    },
    ready,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      closed = true;
      clearTimeout(retry);
      subscription?.close();
      subscription = undefined;
      set({ status: "closed" });
    },
  };

  /** The one setter. A new Map for every change of rows (one per frame of events), so renders can compare by identity. */
  function set(patch: Partial<State>): void {
    Object.assign(state, patch);
    onChange?.(table as LiveTable);
    for (const l of listeners) l();
  }

  function fail(error: SubscriptionError): void {
    onError?.(error);
    set({ error, ...(error.permanent ? { status: "closed" as const } : {}) });
    if (error.permanent) table.close();
  }

  async function token(): Promise<string> {
    return options.getToken ? options.getToken() : (options.token as string);
  }

  /** Loads the rows and (re)starts the subscription from their fromSeq; retries with backoff. */
  async function load(attempt = 0, refusals = 0): Promise<void> {
    if (closed) return;
    // Detached before it is closed, so its last status change is not this table's.
    const previous = subscription;
    subscription = undefined;
    previous?.close();
    let res: Response;
    try {
      res = await doFetch!(rowsUrl, { headers: { authorization: `Bearer ${await token()}` } });
    } catch (err) {
      return again({ code: SdkErrorCode.UNREACHABLE, message: (err as Error).message, permanent: false }, attempt, refusals);
    }
    const text = await res.text().catch(() => "");
    if (closed) return;
    if (!res.ok) {
      const body = (() => {
        try {
          return (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
        } catch {
          return undefined;
        }
      })();
      const code = body?.code ?? (res.status >= 500 ? SdkErrorCode.SERVER_ERROR : SdkErrorCode.LOAD_FAILED);
      const decision = afterLoadRefusal({ status: res.status, code, canRefreshToken: Boolean(options.getToken), refusalsBefore: refusals });
      const error = { status: res.status, code, message: body?.message ?? `rows request answered ${res.status}`, permanent: decision === "stop" };
      if (decision === "stop") return fail(error);
      return again(error, attempt, refusals + (res.status === 401 ? 1 : 0));
    }
    const body = parseJsonExact(text, "value") as RowsBody;
    const rows = new Map<string, Row>();
    for (const raw of body.rows) {
      const row = decodeRow(raw, body.types, options.values) as Row;
      rows.set(rowKey(row, body.key), row);
    }
    snapshot = parseSnapshot(body.snapshot);
    const key = body.key;
    generation++;
    pending = undefined;
    set({ rows, key, loads: state.loads + 1, error: undefined });
    resolveReady();
    subscribe(body.fromSeq, key);
  }

  function again(error: SubscriptionError, attempt: number, refusals: number): void {
    onError?.(error);
    set({ error });
    retry = setTimeout(() => void load(attempt + 1, refusals), fullJitter(attempt + 1, options.backoffBaseMs ?? 500, options.backoffMaxMs ?? 30_000));
  }

  function subscribe(fromSeq: number, key: string[]): void {
    const sub = connect({
      ...connectOptions,
      since: fromSeq,
      onStateChange: (status) => {
        if (sub === subscription) set({ status });
      },
      onError: (error) => {
        if (error.permanent) fail(error);
        else {
          onError?.(error);
          set({ error });
        }
      },
      onEvent: (event) => {
        // Already part of the loaded rows: the snapshot saw its transaction.
        if (event.txid !== undefined && snapshot && visibleInSnapshot(event.txid, snapshot)) return;
        // The events of one frame arrive in one task: they change one copy of the rows, shown once.
        if (!pending) {
          const batch = { rows: new Map(state.rows), changed: false, generation };
          pending = batch;
          queueMicrotask(() => {
            pending = undefined;
            // A load since then replaced the rows: this batch belongs to the old ones.
            if (batch.changed && batch.generation === generation) set({ rows: batch.rows });
          });
        }
        if (applyChange(pending.rows, key, event)) pending.changed = true;
      },
      // Events were missed: load the rows again (a new snapshot and fromSeq) and subscribe from there.
      onReset: () => {
        set({ status: "connecting" });
        void load();
      },
    });
    subscription = sub;
  }

  void load();
  return table;
}
