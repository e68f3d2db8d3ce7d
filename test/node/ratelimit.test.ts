import { describe, expect, it } from "vitest";
import { take } from "../../durable-objects/ratelimit";

describe("rate limit bucket", () => {
  it("allows a burst then refuses until refilled", () => {
    let b = { tokens: 3, at: 0 };
    const results: boolean[] = [];
    for (let i = 0; i < 4; i++) {
      const r = take(b, 0, 10, 3);
      results.push(r.allowed);
      b = r.bucket;
    }
    expect(results).toEqual([true, true, true, false]);
    expect(take(b, 100, 10, 3).allowed).toBe(true); // 100 ms at 10/s refills one token
  });
});
