/**
 * Presence as pure functions (table-tested in test/node/presence-view.test.ts):
 * connections grouped into members, members of several objects merged, the
 * grace period, the capped list every subscriber sees, the diff between two
 * lists, and the metadata rules. presence.ts runs them at the right times.
 *
 * A member's metadata is kept as its JSON text (exact: a number in it prints
 * back as the client wrote it) and becomes JSON only in the frame (frameText).
 */
import type { PresenceMember } from "../shared/types";
import { utf8Length } from "../shared/limits";
import { take, type Bucket } from "./ratelimit";

/** What presence reads of one connection (a subset of its socket state, sockets.ts). */
export interface PresenceConn {
  sub: string;
  shown?: { role?: string; claims?: Record<string, string | number | boolean> };
  /** The connection's metadata as JSON text, and when it was set. */
  meta?: string;
  metaAt?: number;
  connectedAt: number;
}

/** A member as an object counts it: on the wire fields, plus what merging and ordering need. */
export interface Member {
  sub: string;
  role?: string;
  claims?: Record<string, string | number | boolean>;
  connections: number;
  /** JSON text. */
  meta?: string;
  /** When `meta` was set (the latest wins across connections and objects). */
  metaAt: number;
  /** The member's earliest connection. */
  since: number;
}

/** Groups connections by subject. */
export function membersOf(conns: Iterable<PresenceConn>): Member[] {
  const bySub = new Map<string, Member>();
  for (const c of conns) {
    const m = bySub.get(c.sub);
    const mine: Member = {
      sub: c.sub,
      ...c.shown,
      connections: 1,
      ...(c.meta !== undefined ? { meta: c.meta } : {}),
      metaAt: c.meta !== undefined ? (c.metaAt ?? 0) : -1,
      since: c.connectedAt,
    };
    bySub.set(c.sub, m ? combine(m, mine) : mine);
  }
  return [...bySub.values()];
}

/** Two parts of one member: connections add up, the earliest `since` and the latest metadata win. */
function combine(a: Member, b: Member): Member {
  const newer = b.metaAt > a.metaAt ? b : a;
  const { meta: _a, ...base } = a.since <= b.since ? a : b;
  return {
    ...base,
    connections: a.connections + b.connections,
    ...(newer.meta !== undefined ? { meta: newer.meta } : {}),
    metaAt: newer.metaAt,
    since: Math.min(a.since, b.since),
  };
}

/** Merges the members of several objects (the fan-out tree) by subject. */
export function merge(sources: Iterable<readonly Member[]>): Map<string, Member> {
  const out = new Map<string, Member>();
  for (const members of sources)
    for (const m of members) {
      const seen = out.get(m.sub);
      out.set(m.sub, seen ? combine(seen, m) : m);
    }
  return out;
}

/** Members who left, still shown until `until` (the grace period). */
export type Lingering = Map<string, { member: Member; until: number }>;

/**
 * Applies the grace period: a member missing from `present` that was there
 * before keeps being shown, unchanged, for `graceMs`; one that comes back in
 * time is simply present again. Returns who is shown and when the next
 * lingering member expires (Infinity: none). Updates `lingering`.
 */
export function withGrace(
  present: Map<string, Member>,
  before: Map<string, Member>,
  lingering: Lingering,
  now: number,
  graceMs: number,
): { shown: Map<string, Member>; nextExpiry: number } {
  if (graceMs > 0) for (const [sub, m] of before) if (!present.has(sub) && !lingering.has(sub)) lingering.set(sub, { member: m, until: now + graceMs });
  const shown = new Map(present);
  let nextExpiry = Infinity;
  for (const [sub, l] of lingering) {
    if (present.has(sub) || l.until <= now) lingering.delete(sub);
    else {
      shown.set(sub, l.member);
      nextExpiry = Math.min(nextExpiry, l.until);
    }
  }
  return { shown, nextExpiry };
}

/** What every presence subscriber of a channel sees: at most `cap` members, exact counts. */
export interface View {
  members: Member[];
  users: number;
  connections: number;
}

/**
 * The listed members are the `cap` who arrived first (their earliest
 * connection, then subject), so a member stays listed until they leave and
 * every object computes the same list from the same members.
 */
export function viewOf(shown: Map<string, Member>, cap: number): View {
  let connections = 0;
  for (const m of shown.values()) connections += m.connections;
  const members = [...shown.values()].sort((a, b) => a.since - b.since || (a.sub < b.sub ? -1 : a.sub > b.sub ? 1 : 0)).slice(0, cap);
  return { members, users: shown.size, connections };
}

export interface Diff {
  joins: Member[];
  updates: Member[];
  leaves: string[];
  users: number;
  connections: number;
}

/** What a subscriber holding `prev` must apply to hold `next`; undefined when nothing a subscriber sees differs. */
export function diffViews(prev: View, next: View): Diff | undefined {
  const before = new Map(prev.members.map((m) => [m.sub, m]));
  const after = new Set(next.members.map((m) => m.sub));
  const joins: Member[] = [];
  const updates: Member[] = [];
  for (const m of next.members) {
    const old = before.get(m.sub);
    if (!old) joins.push(m);
    else if (!sameOnWire(old, m)) updates.push(m);
  }
  const leaves = prev.members.filter((m) => !after.has(m.sub)).map((m) => m.sub);
  if (joins.length + updates.length + leaves.length === 0 && prev.users === next.users && prev.connections === next.connections) return undefined;
  return { joins, updates, leaves, users: next.users, connections: next.connections };
}

const sameOnWire = (a: Member, b: Member) => memberJson(a) === memberJson(b);

/**
 * A member as the protocol shows it (PresenceMember), as JSON text. The
 * metadata is spliced in as the text it was stored as (JSON.rawJSON takes
 * only primitives), so its numbers go out as the client wrote them.
 */
export function memberJson(m: Member): string {
  const fields: Omit<PresenceMember, "meta"> = {
    sub: m.sub,
    ...(m.role !== undefined ? { role: m.role } : {}),
    ...(m.claims !== undefined ? { claims: m.claims } : {}),
    connections: m.connections,
  };
  const text = JSON.stringify(fields);
  return m.meta === undefined ? text : `${text.slice(0, -1)},"meta":${m.meta}}`;
}

const list = (members: Member[]) => `[${members.map(memberJson).join(",")}]`;

/** The `presence` frame (the whole state) for a view. */
export const stateFrame = (v: View): string => `{"type":"presence","members":${list(v.members)},"users":${v.users},"connections":${v.connections}}`;

/** The `presence_diff` frame. */
export const diffFrame = (d: Diff): string =>
  `{"type":"presence_diff","joins":${list(d.joins)},"updates":${list(d.updates)},"leaves":${JSON.stringify(d.leaves)},"users":${d.users},"connections":${d.connections}}`;

export interface MetaLimits {
  maxBytes: number;
  perSec: number;
}

/** Metadata updates a connection may send at once before the rate applies. */
export const META_BURST = 5;

export type MetaDecision =
  { ok: true; bucket: Bucket } | { ok: false; code: "PRESENCE_DISABLED" | "PRESENCE_TOO_LARGE" | "PRESENCE_RATE_LIMITED"; message: string; bucket?: Bucket };

/** Whether a connection may set this metadata now: it subscribed to presence, the text fits, the rate allows. */
export function decideMeta(metaJson: string, conn: { presence?: boolean; metaBucket?: Bucket }, now: number, limits: MetaLimits): MetaDecision {
  if (!conn.presence) return { ok: false, code: "PRESENCE_DISABLED", message: "connect with presence=1 on a presence channel to set presence metadata" };
  const bytes = utf8Length(metaJson);
  if (bytes > limits.maxBytes) return { ok: false, code: "PRESENCE_TOO_LARGE", message: `presence metadata is ${bytes} bytes; at most ${limits.maxBytes}` };
  const { allowed, bucket } = take(conn.metaBucket ?? { tokens: META_BURST, at: now }, now, limits.perSec, META_BURST);
  if (!allowed) return { ok: false, code: "PRESENCE_RATE_LIMITED", message: `more than ${limits.perSec} presence updates/s; this one was dropped`, bucket };
  return { ok: true, bucket };
}
