/**
 * Flow control per socket (docs/protocol.md, "Flow control"). workerd gives
 * no `bufferedAmount` or other backpressure signal for server-side sockets
 * (workerd#988): every frame sent to a client that stopped reading stays
 * queued in the isolate, whose memory is 128 MB in production. So clients
 * that connect with `ack=1` acknowledge the last seq they processed, and the
 * object keeps, per socket, the frames sent and not yet acknowledged.
 *
 * Only bytes older than FLOW_GRACE_MS count against a budget ("stale"): a
 * healthy client acknowledges within its ack interval plus a round trip, so
 * a burst to a fast reader is never held against it. A socket whose stale
 * bytes pass FLOW_SOCKET_BYTES is closed with 4009; while the stale bytes of
 * all the object's sockets pass FLOW_OBJECT_BYTES, the slowest are closed
 * first. The client resumes from its last seq (nothing is lost while the
 * history holds it). The accounting lives in memory only: after the object
 * hibernates (an idle channel: nothing is in flight) it starts from zero.
 */

/** Frames sent to one socket and not yet acknowledged, oldest first. */
export class SocketFlow {
  /** lastSeq, bytes and send time of each unacknowledged frame. */
  private readonly seqs: number[] = [];
  private readonly bytes: number[] = [];
  private readonly at: number[] = [];
  private head = 0;
  /** Frames before this index are stale (sent more than the grace period ago). */
  private staleEnd = 0;
  private staleSum = 0;
  /** The highest seq the client acknowledged. */
  acked = 0;
  /** Bytes sent and not acknowledged, stale or not. */
  unacked = 0;

  sent(lastSeq: number, bytes: number, now: number): void {
    this.seqs.push(lastSeq);
    this.bytes.push(bytes);
    this.at.push(now);
    this.unacked += bytes;
  }

  /** The client processed everything up to `seq`; false when that is not news (a repeated or stale ack). */
  ack(seq: number): boolean {
    if (seq <= this.acked) return false;
    this.acked = seq;
    while (this.head < this.seqs.length && this.seqs[this.head]! <= seq) {
      const b = this.bytes[this.head]!;
      this.unacked -= b;
      if (this.head < this.staleEnd) this.staleSum -= b;
      this.head++;
    }
    this.staleEnd = Math.max(this.staleEnd, this.head);
    if (this.head > 256 && this.head * 2 > this.seqs.length) this.compact();
    return true;
  }

  /** Bytes sent at least `graceMs` before `now` and not acknowledged (amortized O(1): time only moves forward). */
  stale(now: number, graceMs: number): number {
    while (this.staleEnd < this.seqs.length && this.at[this.staleEnd]! <= now - graceMs) this.staleSum += this.bytes[this.staleEnd++]!;
    return this.staleSum;
  }

  private compact(): void {
    for (const a of [this.seqs, this.bytes, this.at]) a.splice(0, this.head);
    this.staleEnd -= this.head;
    this.head = 0;
  }
}

/**
 * Which sockets to close so the object's stale bytes fit `objectBytes`:
 * none while they fit, else the slowest (most stale bytes) first, until the
 * rest fit. Pure; table-tested in test/node/flow.test.ts.
 */
export function slowest<K>(stale: readonly (readonly [K, number])[], objectBytes: number): K[] {
  let total = stale.reduce((n, [, b]) => n + b, 0);
  if (total <= objectBytes) return [];
  const out: K[] = [];
  for (const [k, b] of [...stale].sort((x, y) => y[1] - x[1])) {
    if (total <= objectBytes || b === 0) break;
    out.push(k);
    total -= b;
  }
  return out;
}

/** The flow-control budgets (FLOW_* in shared/worker-config.ts). */
export interface FlowLimits {
  socketBytes: number;
  objectBytes: number;
  graceMs: number;
}

/** The accounting of one object's sockets that opted in (`ack=1`), kept by sockets.ts. */
export class Flows {
  private readonly flows = new Map<WebSocket, SocketFlow>();
  private budgets: FlowLimits | undefined;

  constructor(
    /** Whether the socket connected with `ack=1` (its attachment says so, also after hibernation). */
    private readonly optedIn: (ws: WebSocket) => boolean,
    private readonly readLimits: () => FlowLimits,
  ) {}

  /** The budgets, read once: the configuration cannot change while the object lives, and this runs per frame per socket. */
  limits(): FlowLimits {
    return (this.budgets ??= this.readLimits());
  }

  get size(): number {
    return this.flows.size;
  }

  forget(ws: WebSocket): void {
    this.flows.delete(ws);
  }

  /** The client processed every event up to `seq`; false when that is not news or the socket did not opt in. */
  ack(ws: WebSocket, seq: number): boolean {
    return this.flow(ws)?.ack(seq) ?? false;
  }

  /** The highest seq this socket acknowledged; Infinity for a socket without `ack=1` (no ack of its is news). */
  acked(ws: WebSocket): number {
    return this.flow(ws)?.acked ?? Infinity;
  }

  /** Counts a frame sent to an opted-in socket; returns its stale bytes when they pass its budget (close it), else undefined. */
  sent(ws: WebSocket, lastSeq: number, bytes: number, now: number): number | undefined {
    const flow = this.flow(ws);
    if (!flow) return undefined;
    flow.sent(lastSeq, bytes, now);
    const { socketBytes, graceMs } = this.limits();
    const stale = flow.stale(now, graceMs);
    return stale > socketBytes ? stale : undefined;
  }

  /** The sockets to close, slowest first, while the object's stale bytes pass its budget, with their stale bytes. */
  overObjectBudget(now: number): (readonly [WebSocket, number])[] {
    const { objectBytes, graceMs } = this.limits();
    const stale = [...this.flows].map(([ws, f]) => [ws, f.stale(now, graceMs)] as const);
    const bytes = new Map(stale);
    return slowest(stale, objectBytes).map((ws) => [ws, bytes.get(ws)!] as const);
  }

  /** The accounting of a socket that opted in (created on first use, also after hibernation). */
  private flow(ws: WebSocket): SocketFlow | undefined {
    let flow = this.flows.get(ws);
    if (!flow && this.optedIn(ws)) this.flows.set(ws, (flow = new SocketFlow()));
    return flow;
  }
}
