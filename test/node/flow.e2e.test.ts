/**
 * Slow consumers across the real stack (Worker under wrangler dev, real TCP):
 * an SDK subscription whose TCP reading is paused while the channel
 * publishes incompressible events is closed by the server with 4009 once
 * over its flow-control budget; a bystander on the same channel gets every
 * event meanwhile; when the paused client reads again it resumes from its
 * last seq with no gap, no duplicate and no reset. And the SDK sends nothing
 * while no events arrive, so an idle channel's object can hibernate.
 */
import { randomBytes } from "node:crypto";
import WS from "ws";
import { describe, expect, it } from "vitest";
import { connect, type Envelope, type ResetInfo, type Subscription } from "../../client/index";
import { createPublisher } from "../../client/server";
import { devToken } from "../../scripts/stack";
import { CloseCode } from "../../shared/protocol";
import { useStack } from "../support/stack";
import { expectContiguous, waitUntil } from "../support/wait";

/** A `ws` client the test can stop reading from TCP (as a frozen tab or a stuck script does), recording what the SDK sends. */
class PausableSocket extends WS {
  static last: PausableSocket | undefined;
  readonly sent: string[] = [];
  closeCode: number | undefined;
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols);
    PausableSocket.last = this;
    this.on("close", (code) => (this.closeCode = code));
  }
  override send(data: string): void {
    this.sent.push(String(data));
    super.send(data);
  }
  /** Stops (or restarts) reading the TCP socket: the kernel's buffers fill, then the server's. */
  reading(on: boolean): void {
    const tcp = (this as unknown as { _socket: import("node:net").Socket })._socket;
    if (on) tcp.resume();
    else tcp.pause();
  }
}

const subs: Subscription[] = [];
const fx = useStack(
  "flow", // The SDK acks 1 s after the first unacknowledged event: a 2 s grace keeps a reading client clear of the budget.
  { workerVars: { FLOW_SOCKET_BYTES: String(256 * 1024), FLOW_GRACE_MS: "2000" }, relayEnv: { RELAY_BACKOFF_MAX_MS: "300" } },
  () => subs.forEach((s) => s.close()),
);

function subscribe(channel: string, WebSocket?: typeof globalThis.WebSocket) {
  const events: Envelope[] = [];
  const resets: ResetInfo[] = [];
  const sub = connect({
    url: fx.stack.workerUrl,
    channel,
    getToken: () => devToken(fx.stack.secrets),
    backoffBaseMs: 50,
    backoffMaxMs: 300,
    onEvent: (e) => events.push(e),
    onReset: (r) => void resets.push(r),
    ...(WebSocket ? { WebSocket } : {}),
  });
  subs.push(sub);
  return { sub, events, resets };
}

describe("slow consumers", () => {
  it("a paused reader is closed with 4009, a bystander is unaffected, and the paused one resumes with nothing lost", async () => {
    const channel = "flow.paused";
    const bystander = subscribe(channel);
    const paused = subscribe(channel, PausableSocket as unknown as typeof globalThis.WebSocket);
    await waitUntil("both open", () => bystander.sub.state === "open" && paused.sub.state === "open");
    const socket = PausableSocket.last!;
    socket.reading(false);

    const publisher = createPublisher({ url: fx.stack.workerUrl, key: fx.stack.secrets.PUBLISH_KEY });
    const N = 60;
    for (let i = 1; i <= N; i++) {
      // 64 KB of random hex per event: ~3.8 MB in all, incompressible enough that no layer shrinks it below the budget.
      await publisher.publish(channel, { id: `blob-${i}`, data: { i, blob: randomBytes(32 * 1024).toString("hex") } });
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 500)); // 3 s in all: past the grace period, so what waits counts
    }
    // The bystander got everything while the other client was still not reading.
    await waitUntil("the bystander's events", () => bystander.events.length >= N, 30_000);
    expectContiguous(bystander.events.map((e) => e.seq));
    expect(socket.closeCode).toBeUndefined(); // it has not read the close yet: it reads nothing
    expect(bystander.sub.attempts).toBe(1); // never closed: it read and acknowledged

    socket.reading(true);
    await waitUntil("the paused client's close", () => socket.closeCode !== undefined, 30_000);
    expect(socket.closeCode).toBe(CloseCode.SLOW_CONSUMER);
    await waitUntil("the paused client's events", () => paused.events.length >= N, 30_000);
    expectContiguous(paused.events.map((e) => e.seq));
    expect(paused.events.map((e) => e.data?.i)).toEqual(bystander.events.map((e) => e.data?.i));
    expect(paused.resets).toEqual([]);
    expect(paused.sub.attempts).toBeGreaterThanOrEqual(2);
  });

  it("the SDK acknowledges while events arrive and sends nothing while the channel is idle", async () => {
    const channel = "flow.idle";
    const s = subscribe(channel, PausableSocket as unknown as typeof globalThis.WebSocket);
    await waitUntil("open", () => s.sub.state === "open");
    const socket = PausableSocket.last!;
    const publisher = createPublisher({ url: fx.stack.workerUrl, key: fx.stack.secrets.PUBLISH_KEY });
    for (let i = 1; i <= 5; i++) await publisher.publish(channel, { id: `idle-${i}`, data: { i } });
    await waitUntil("the events", () => s.events.length >= 5);
    await waitUntil("the ack of the last one", () => socket.sent.includes(`{"type":"ack","seq":${s.events.at(-1)!.seq}}`), 5_000);
    const sentBefore = socket.sent.length;
    await new Promise((r) => setTimeout(r, 1_500)); // six ack intervals with no event
    expect(socket.sent.slice(sentBefore)).toEqual([]);
  });
});
