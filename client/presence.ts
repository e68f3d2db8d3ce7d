/**
 * Presence in the SDK (docs/protocol.md, "Presence"): the members a
 * subscription shows, kept from the server's `presence` (the whole state)
 * and `presence_diff` frames, and the connection's own metadata, sent again
 * after every reconnect. `applyPresence` is the rule, as a pure function; a
 * client in another language implements exactly it.
 */
import type { PresenceMember, ServerMessage } from "../shared/types";

export type { PresenceMember };

export interface PresenceState {
  /** Listed members (the first to arrive, at most PRESENCE_MAX_MEMBERS); the order of the list carries no meaning. */
  members: PresenceMember[];
  /** Exact totals, also beyond the listed members. */
  users: number;
  connections: number;
}

export const EMPTY_PRESENCE: PresenceState = { members: [], users: 0, connections: 0 };

type PresenceFrame = Extract<ServerMessage, { type: "presence" | "presence_diff" }>;

/** The state after one frame: `presence` replaces it; `presence_diff` removes leaves, replaces updates and appends joins. */
export function applyPresence(state: PresenceState, frame: PresenceFrame): PresenceState {
  if (frame.type === "presence") return { members: frame.members, users: frame.users, connections: frame.connections };
  const gone = new Set(frame.leaves);
  const updated = new Map(frame.updates.map((m) => [m.sub, m]));
  const members = state.members.filter((m) => !gone.has(m.sub)).map((m) => updated.get(m.sub) ?? m);
  const listed = new Set(members.map((m) => m.sub));
  for (const m of frame.joins) if (!listed.has(m.sub)) members.push(m);
  return { members, users: frame.users, connections: frame.connections };
}

/** What a Subscription exposes as `presence`. */
export interface Presence extends PresenceState {
  /** Called after every change; returns a function that stops it. */
  onChange(listener: (state: PresenceState) => void): () => void;
}

/** One subscription's presence: the state, its listeners, and the metadata to send on every connection. */
export function createPresence(onPresence?: (state: PresenceState) => void) {
  let state = EMPTY_PRESENCE;
  let meta: Record<string, unknown> | undefined;
  const listeners = new Set<(s: PresenceState) => void>();
  if (onPresence) listeners.add(onPresence);
  const frame = () => JSON.stringify({ type: "presence", meta });
  const view: Presence = {
    get members() {
      return state.members;
    },
    get users() {
      return state.users;
    },
    get connections() {
      return state.connections;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return {
    view,
    apply(msg: PresenceFrame): void {
      state = applyPresence(state, msg);
      for (const l of listeners) l(state);
    },
    /** A connection was welcomed: the metadata set so far goes with it. */
    welcomed(send: (frame: string) => void): void {
      if (meta !== undefined) send(frame());
    },
    /** Sets the metadata; sent now when connected (`send`), else at the next welcome. */
    set(next: Record<string, unknown>, send: ((frame: string) => void) | undefined): void {
      meta = next;
      send?.(frame());
    },
  };
}
