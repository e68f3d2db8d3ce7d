/**
 * Socket bookkeeping for an object that holds hibernatable WebSockets: the
 * per-socket state (its hibernation attachment), sending with failure
 * isolation, fan-out by filter (frames: frames.ts), flow control (flow.ts),
 * and what /stats and presence (presence.ts) read of the connections.
 */
import type { Filter, Envelope, ServerMessage } from "../shared/protocol";
import { packFrames, parseEnvelope, type Frame } from "./frames";
import { CloseCode } from "../shared/protocol";
import { matchesFilter } from "../shared/filter";
import { utf8Length } from "../shared/limits";
import type { EventStore } from "./event-store";
import { errorFields, log } from "../shared/log";
import { closeReason } from "./closecodes";
import { gapSeq } from "./envelope";
import { Flows, type FlowLimits } from "./flow";
import type { Bucket } from "./ratelimit";
import type { PresenceConn } from "./presence-view";
import type { ConnectRequest } from "../src/channel-contract";

/** Per-socket state; serialized as the hibernation attachment (our cap ATTACHMENT_MAX_BYTES, 8 KiB; the platform's 16 KiB). */
export interface SocketState {
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
  /** The client acknowledges what it processed (connected with `ack=1`): flow control applies (flow.ts). */
  ack?: boolean;
  /** The client subscribed to the channel's presence (`presence=1`; presence.ts). */
  presence?: boolean;
  /** On presence channels: what this connection's member shows of its token (src/presence-claims.ts). */
  shown?: PresenceConn["shown"];
  /** Presence metadata (JSON text, at most PRESENCE_META_BYTES), when it was set, and its rate-limit bucket. */
  meta?: string;
  metaAt?: number;
  metaBucket?: Bucket;
}

/** A new connection's state, from what the Worker forwarded (src/channel-contract.ts). */
export function socketState(req: ConnectRequest, burst: number, now: number): SocketState {
  return {
    id: crypto.randomUUID(),
    sub: req.sub,
    role: req.role,
    exp: req.exp,
    filter: req.filter,
    filterKey: req.filter ? JSON.stringify(req.filter) : "",
    bucket: { tokens: burst, at: now },
    connectedAt: now,
    ...(req.ack ? { ack: true } : {}),
    ...(req.presence ? { presence: true } : {}),
    ...(req.shown ? { shown: req.shown } : {}),
  };
}

export class Sockets {
  /** In-memory mirror of attachments, rebuilt lazily after hibernation. */
  private readonly states = new Map<WebSocket, SocketState>();

  /** Flow control: unacknowledged frames of the sockets that acknowledge (flow.ts). */
  readonly flows: Flows;

  constructor(
    private readonly ctx: DurableObjectState,
    /** Where sends are counted (the object's persisted counters). */
    private readonly counters: () => { messagesSent: number; sendErrors: number },
    /** Fields that identify the object in logs. */
    private readonly where: () => Record<string, unknown>,
    flowLimits: () => FlowLimits,
  ) {
    this.flows = new Flows((ws) => this.state(ws)?.ack === true, flowLimits);
  }

  /**
   * Open sockets, kept as a set so the capacity checks on every connect are
   * O(1): `getWebSockets()` builds an array of every socket, which made a
   * connect storm O(n²) (bench/profile-run.ts measured it at over half of the
   * isolate's time for 1,000 connects). Rebuilt from the runtime once after
   * hibernation; our own close and the close/error handlers remove a socket.
   */
  private live: Set<WebSocket> | undefined;

  private liveSet(): Set<WebSocket> {
    return (this.live ??= new Set(this.ctx.getWebSockets().filter((ws) => ws.readyState === WebSocket.OPEN)));
  }

  /** How many sockets are open. */
  count(): number {
    return this.liveSet().size;
  }

  /** Open sockets (one whose close is being handled is still listed by the runtime). */
  open(): WebSocket[] {
    return [...this.liveSet()];
  }

  /** A socket just accepted with `ctx.acceptWebSocket`. */
  accepted(ws: WebSocket, state: SocketState): void {
    this.liveSet().add(ws);
    this.save(ws, state);
  }

  state(ws: WebSocket): SocketState | undefined {
    let s = this.states.get(ws);
    if (!s) {
      s = ws.deserializeAttachment() as SocketState | undefined;
      if (s) this.states.set(ws, s);
    }
    return s;
  }

  save(ws: WebSocket, state: SocketState): void {
    this.states.set(ws, state);
    ws.serializeAttachment(state);
  }

  /** Called when a socket is forgotten (presence.ts counts who is left). */
  onForget: () => void = () => {};

  forget(ws: WebSocket): void {
    this.states.delete(ws);
    this.live?.delete(ws);
    this.flows.forget(ws);
    this.onForget();
  }

  /** Sends one events frame; for a socket that acknowledges, counts it and closes the socket (4009) past its budget (flow.ts). */
  private sendFrame(ws: WebSocket, state: SocketState, frame: Frame, now: number): boolean {
    if (!this.sendRaw(ws, frame.text)) return false;
    const over = state.ack ? this.flows.sent(ws, frame.lastSeq, frame.bytes, now) : undefined;
    if (over === undefined) return true;
    this.slow(ws, over);
    return false;
  }

  private slow(ws: WebSocket, stale: number): void {
    const grace = this.flows.limits().graceMs;
    this.close(ws, CloseCode.SLOW_CONSUMER, `slow consumer: ${stale} bytes unacknowledged for over ${grace} ms; resume from your last seq`);
  }

  /** Bytes of a state as an attachment. */
  static attachmentBytes(state: SocketState): number {
    return utf8Length(JSON.stringify(state));
  }

  send(ws: WebSocket, msg: ServerMessage): boolean {
    return this.sendRaw(ws, JSON.stringify(msg));
  }

  /** A failed send closes that socket with 1011 and is counted; it never affects the others. */
  sendRaw(ws: WebSocket, data: string): boolean {
    const counters = this.counters();
    try {
      ws.send(data);
      counters.messagesSent++;
      return true;
    } catch (err) {
      counters.sendErrors++;
      log("warn", "send failed; closing socket", { ...this.where(), ...errorFields(err) });
      this.close(ws, CloseCode.INTERNAL_ERROR, "send failed");
      return false;
    }
  }

  close(ws: WebSocket, code: number, reason: string): void {
    this.forget(ws);
    try {
      ws.close(code, closeReason(reason));
    } catch {
      // The socket is already closing; the close handler will clean up.
    }
  }

  /** Sends every retained event after `since` (filtered), or a reset when that is impossible. */
  replay(ws: WebSocket, state: SocketState, store: EventStore, since: number, maxFrameBytes: number): void {
    const head = store.counters.headSeq;
    const oldest = store.oldestSeq();
    if (since > head) this.send(ws, { type: "reset", reason: "ahead_of_head", headSeq: head, oldestSeq: oldest });
    else if (since < oldest - 1) this.send(ws, { type: "reset", reason: "history_expired", headSeq: head, oldestSeq: oldest });
    else {
      const bodies = [...store.after(since)];
      // The source lost events after `since`: no replay can fill that (envelope.ts).
      if (bodies.some((b) => gapSeq(b) !== undefined)) this.send(ws, { type: "reset", reason: "source_gap", headSeq: head, oldestSeq: oldest });
      // The replay is complete: what follows is live (docs/protocol.md, "caught_up").
      else if (this.sendEvents(ws, state, bodies, maxFrameBytes)) this.send(ws, { type: "caught_up", headSeq: head });
    }
  }

  /** Sends events to one socket, filtered by its state; false when the socket was closed on the way (flow.ts). */
  sendEvents(ws: WebSocket, state: SocketState, bodies: readonly string[], maxFrameBytes: number): boolean {
    const kept = state.filter ? bodies.filter((b) => matchesFilter(parseEnvelope(b), state.filter)) : bodies;
    const now = Date.now();
    for (const frame of packFrames(
      kept,
      kept.map((b) => utf8Length(b)),
      maxFrameBytes,
    ))
      if (!this.sendFrame(ws, state, frame, now)) return false;
    return true;
  }

  /**
   * One frame set per distinct filter, built once and sent to every socket
   * that shares it, so a burst costs one send per frame per socket. Sockets
   * whose token expired are closed with 4001 instead.
   */
  fanOut(bodies: string[], sizes: number[], now: number, maxFrameBytes: number): void {
    // A gap marker (envelope.ts) is sent as a reset to every socket, in its place among the events.
    const cut = bodies.findIndex((b) => gapSeq(b) !== undefined);
    if (cut >= 0) {
      const seq = gapSeq(bodies[cut]!)!;
      if (cut > 0) this.fanOut(bodies.slice(0, cut), sizes.slice(0, cut), now, maxFrameBytes);
      for (const ws of this.liveSet()) if (this.state(ws)) this.send(ws, { type: "reset", reason: "source_gap", headSeq: seq, oldestSeq: seq });
      if (cut + 1 < bodies.length) this.fanOut(bodies.slice(cut + 1), sizes.slice(cut + 1), now, maxFrameBytes);
      return;
    }
    const byFilter = new Map<string, Frame[]>();
    let events: Envelope[] | undefined;
    // The kept set, not getWebSockets(): that builds an array of every socket on each batch.
    for (const ws of this.liveSet()) {
      const state = this.state(ws);
      if (!state) continue;
      if (state.exp * 1000 <= now) {
        this.close(ws, CloseCode.TOKEN_EXPIRED, "token expired");
        continue;
      }
      let frames = byFilter.get(state.filterKey);
      if (!frames) {
        if (state.filter) {
          // Parsed only when some socket has a filter to evaluate.
          events ??= bodies.map(parseEnvelope);
          const keep = events.map((e) => matchesFilter(e, state.filter));
          frames = packFrames(
            bodies.filter((_, i) => keep[i]),
            sizes.filter((_, i) => keep[i]),
            maxFrameBytes,
          );
        } else frames = packFrames(bodies, sizes, maxFrameBytes);
        byFilter.set(state.filterKey, frames);
      }
      for (const frame of frames) if (!this.sendFrame(ws, state, frame, now)) break;
    }
    if (this.flows.size > 0) for (const [ws, stale] of this.flows.overObjectBudget(now)) this.slow(ws, stale);
  }

  /** Closes sockets whose token expired; returns the earliest expiry still ahead (ms) and whether any closed. */
  expire(now: number): { next: number; expired: boolean } {
    let next = Infinity;
    let expired = false;
    for (const ws of this.ctx.getWebSockets()) {
      const s = this.state(ws);
      if (!s) continue;
      if (s.exp * 1000 <= now) {
        this.close(ws, CloseCode.TOKEN_EXPIRED, "token expired");
        expired = true;
      } else next = Math.min(next, s.exp * 1000);
    }
    return { next, expired };
  }

  /** What presence reads of every open connection (presence-view.ts). */
  *presenceConns(): Iterable<PresenceConn> {
    for (const ws of this.liveSet()) {
      const s = this.state(ws);
      if (s) yield s;
    }
  }

  /** The open sockets that subscribed to presence. */
  *presenceSubscribers(): Iterable<WebSocket> {
    for (const ws of this.liveSet()) if (this.state(ws)?.presence) yield ws;
  }

  /** Open connections, by role, and their distinct subjects. */
  census(): { connections: number; connectionsByRole: Record<string, number>; users: Set<string> } {
    const connectionsByRole: Record<string, number> = {};
    const users = new Set<string>();
    const sockets = this.open();
    for (const ws of sockets) {
      const s = this.state(ws);
      if (!s) continue;
      const role = s.role ?? "none";
      connectionsByRole[role] = (connectionsByRole[role] ?? 0) + 1;
      users.add(s.sub);
    }
    return { connections: sockets.length, connectionsByRole, users };
  }
}
