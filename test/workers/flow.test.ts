/**
 * Flow control in the channel object (docs/protocol.md, "Flow control";
 * durable-objects/flow.ts), with the test bindings' budgets (16 KiB per
 * socket, 64 KiB per object, 200 ms grace): a client that connected with
 * ack=1 and stops acknowledging is closed with 4009 once over budget and
 * resumes from its last seq with nothing lost; a client that acknowledges is
 * never closed under a burst; a bystander gets everything; clients that
 * never opted in are not held to it; fan-out objects apply the same rule.
 */
import { describe, expect, it } from "vitest";
import { CloseCode } from "../../shared/protocol";
import { connect, event, freshChannel, ingest, range, seqs, type Client } from "../support/worker-client";
import { waitUntil } from "../support/wait";

/** Incompressible text of about `bytes` (random hex), so no layer can shrink what is in flight. */
function noise(bytes: number): string {
  const b = new Uint8Array(bytes / 2);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Events of ~4 KB each, `n` of them from `from`. */
const big = (channel: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => event(channel, from + i, { data: { n: from + i, blob: noise(4000) } }));

/** Acknowledges every events frame as it arrives, as the SDK does (it batches). */
function autoAck(c: Client): void {
  c.ws.addEventListener("message", (e) => {
    const m = JSON.parse(e.data as string) as { type: string; events?: { seq: number }[] };
    if (m.type === "events") c.send(JSON.stringify({ type: "ack", seq: m.events!.at(-1)!.seq }));
  });
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("flow control", () => {
  it("closes a client that stops acknowledging with 4009 once over budget; it resumes from its last seq with nothing lost; a bystander gets everything", async () => {
    const ch = freshChannel("flow");
    const stuck = await connect(ch, { ack: true });
    const bystander = await connect(ch, { ack: true });
    autoAck(bystander);
    const legacy = await connect(ch); // never opted in: not held to the budget
    // 3 × 4 KB now: under 16 KiB; then, past the grace period, more: over it.
    expect((await ingest(big(ch, 1, 3))).status).toBe(200);
    await pause(300);
    expect((await ingest(big(ch, 4, 3))).status).toBe(200);
    await pause(300);
    expect((await ingest(big(ch, 7, 3))).status).toBe(200);
    const closed = await stuck.waitForClose();
    expect(closed.code).toBe(CloseCode.SLOW_CONSUMER);
    expect(closed.reason).toMatch(/slow consumer/);
    // What the stuck client got before the close, it keeps; it resumes from there.
    const last = stuck.events.at(-1)?.seq ?? 0;
    const again = await connect(ch, { ack: true, since: last });
    autoAck(again);
    await again.waitForEvents(9 - last);
    expect([...seqs(stuck.events), ...seqs(again.events)]).toEqual(range(1, 9));
    expect(seqs(await bystander.waitForEvents(9))).toEqual(range(1, 9));
    expect(seqs(await legacy.waitForEvents(9))).toEqual(range(1, 9));
    expect(bystander.closed).toBeUndefined();
    expect(legacy.closed).toBeUndefined();
  });

  it("never closes a client that acknowledges, under a burst far over the budget", async () => {
    const ch = freshChannel("flow");
    const healthy = await connect(ch, { ack: true });
    autoAck(healthy);
    for (let round = 0; round < 4; round++) {
      expect((await ingest(big(ch, 1 + round * 25, 25))).status).toBe(200); // 100 KB at once, 6x the budget
      await waitUntil("the round's events", () => healthy.events.length >= (round + 1) * 25);
      await pause(250); // past the grace period: anything unacknowledged by now would count
    }
    expect(seqs(healthy.events)).toEqual(range(1, 100));
    expect(healthy.closed).toBeUndefined();
  });

  it("an acknowledgement that is not news counts against the rate limit; acks that move forward do not", async () => {
    const ch = freshChannel("flow");
    const c = await connect(ch, { ack: true });
    expect((await ingest(big(ch, 1, 1).map((e) => ({ ...e, data: { n: 1 } })))).status).toBe(200);
    await c.waitForEvents(1);
    c.send('{"type":"ack","seq":1}');
    // 40 repeats of an old ack: the burst allowance (20) is spent and the socket closes with 4008.
    for (let i = 0; i < 40; i++) c.send('{"type":"ack","seq":1}');
    expect((await c.waitForClose()).code).toBe(CloseCode.RATE_LIMITED);
  });

  it("an ack beyond the channel's head releases nothing: a client that acks what was never sent is still closed once over budget", async () => {
    const ch = freshChannel("flow");
    const liar = await connect(ch, { ack: true });
    for (let round = 0; round < 3; round++) {
      expect((await ingest(big(ch, 1 + round * 3, 3))).status).toBe(200);
      await liar.waitForEvents(3 * (round + 1));
      liar.send(JSON.stringify({ type: "ack", seq: 1_000_000 + round })); // ahead of anything sent
      await pause(300);
    }
    expect((await ingest(big(ch, 10, 3))).status).toBe(200);
    expect((await liar.waitForClose()).code).toBe(CloseCode.SLOW_CONSUMER);
  });

  it("fan-out objects apply the same rule", async () => {
    const ch = `tree.${freshChannel("flow")}`;
    const stuck = await connect(ch, { ack: true });
    const bystander = await connect(ch, { ack: true });
    autoAck(bystander);
    expect((await ingest(big(ch, 1, 3))).status).toBe(200);
    await stuck.waitForEvents(3);
    await pause(300);
    expect((await ingest(big(ch, 4, 3))).status).toBe(200);
    await pause(300);
    expect((await ingest(big(ch, 7, 3))).status).toBe(200);
    expect((await stuck.waitForClose()).code).toBe(CloseCode.SLOW_CONSUMER);
    expect(seqs(await bystander.waitForEvents(9))).toEqual(range(1, 9));
  });
});
