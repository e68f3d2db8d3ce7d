/** Flow-control accounting (durable-objects/flow.ts): what counts as stale, what an ack releases, which sockets an object closes. */
import { describe, expect, it } from "vitest";
import { SocketFlow, slowest } from "../../durable-objects/flow";

describe("SocketFlow", () => {
  it("counts only bytes older than the grace period as stale, and an ack releases every frame up to its seq", () => {
    const f = new SocketFlow();
    f.sent(3, 100, 0);
    f.sent(5, 200, 1000);
    f.sent(9, 400, 2000);
    expect(f.unacked).toBe(700);
    expect(f.stale(2500, 1000)).toBe(300); // frames sent at 0 and 1000
    expect(f.stale(5000, 1000)).toBe(700);
    expect(f.ack(5)).toBe(true);
    expect(f.unacked).toBe(400);
    expect(f.stale(5000, 1000)).toBe(400);
    expect(f.ack(4)).toBe(false); // not news
    expect(f.ack(9)).toBe(true);
    expect([f.unacked, f.stale(9000, 1000)]).toEqual([0, 0]);
  });

  it("an ack in the middle of a frame keeps that frame (the client has not read all of it)", () => {
    const f = new SocketFlow();
    f.sent(10, 100, 0);
    f.ack(7);
    expect(f.unacked).toBe(100);
    f.ack(10);
    expect(f.unacked).toBe(0);
  });

  it("stays exact across many frames, acks and compactions", () => {
    const f = new SocketFlow();
    let now = 0;
    for (let seq = 1; seq <= 5000; seq++) {
      f.sent(seq, seq % 7, now);
      now += 3;
      if (seq % 10 === 0) f.ack(seq - 5);
    }
    let expected = 0;
    for (let seq = 4996; seq <= 5000; seq++) expected += seq % 7;
    expect(f.unacked).toBe(expected);
    expect(f.stale(now + 10_000, 1000)).toBe(expected);
  });
});

describe("slowest(stale, objectBytes)", () => {
  it.each([
    [
      "under the budget: none",
      [
        ["a", 10],
        ["b", 20],
      ],
      100,
      [],
    ],
    [
      "over: the slowest first, until the rest fit",
      [
        ["a", 10],
        ["b", 80],
        ["c", 50],
      ],
      100,
      ["b"],
    ],
    [
      "over by a lot: several",
      [
        ["a", 60],
        ["b", 80],
        ["c", 50],
      ],
      60,
      ["b", "a"],
    ],
    [
      "sockets with nothing stale are never closed",
      [
        ["a", 0],
        ["b", 200],
      ],
      100,
      ["b"],
    ],
  ] as const)("%s", (_what, stale, budget, expected) => {
    expect(slowest(stale as unknown as [string, number][], budget)).toEqual(expected);
  });
});
