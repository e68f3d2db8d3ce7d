import { describe, expect, it } from "vitest";
import { BoundedQueue } from "../../durable-objects/queue";

/** A step that finishes when the test says so. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe("BoundedQueue (the fan-out tree's hand-offs)", () => {
  it("runs steps one at a time in the order pushed", async () => {
    const q = new BoundedQueue(8, () => undefined);
    const log: string[] = [];
    const gates = [gate(), gate(), gate()];
    gates.forEach(
      (g, i) =>
        void q.push(async () => {
          log.push(`start ${i}`);
          await g.opened;
          log.push(`end ${i}`);
        }),
    );
    gates[2]!.open();
    gates[1]!.open();
    gates[0]!.open();
    await q.drained();
    expect(log).toEqual(["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]);
    expect(q.size).toBe(0);
  });

  it.each([
    { max: 0, pushed: 1, waits: [false] },
    { max: 0, pushed: 2, waits: [false, true] },
    { max: 2, pushed: 3, waits: [false, false, false] },
    { max: 2, pushed: 5, waits: [false, false, false, true, true] },
  ])("with max $max waiting, the caller of push $pushed waits: $waits", async ({ max, pushed, waits }) => {
    const q = new BoundedQueue(max, () => undefined);
    const hold = gate();
    const settled: boolean[] = [];
    const pushes = Array.from({ length: pushed }, (_, i) => {
      settled[i] = false;
      return q.push(() => hold.opened).then(() => void (settled[i] = true));
    });
    // Let every push that does not wait settle (a few microtask turns), while the first step holds the queue.
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(settled.map((s) => !s)).toEqual(waits);
    expect(q.size).toBe(pushed);
    hold.open();
    await Promise.all(pushes);
    await q.drained();
    expect(q.size).toBe(0);
  });

  it("reports a failed step and runs the ones after it", async () => {
    const errors: unknown[] = [];
    const q = new BoundedQueue(4, (err) => errors.push(err));
    const ran: number[] = [];
    void q.push(async () => {
      throw new Error("fan-out object unreachable");
    });
    void q.push(async () => void ran.push(2));
    await q.drained();
    expect(ran).toEqual([2]);
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe("fan-out object unreachable");
  });
});
