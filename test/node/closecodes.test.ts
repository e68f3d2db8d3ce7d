import { describe, expect, it } from "vitest";
import { closeReason, closeReplyCode } from "../../durable-objects/closecodes";

describe("close codes", () => {
  it.each([
    [1005, 1000],
    [1006, 1000],
    [1015, 1000],
    [1000, 1000],
    [1001, 1001],
    [4008, 4008],
    [999, 1000],
  ])("received %i -> reply %i", (received, reply) => {
    expect(closeReplyCode(received)).toBe(reply);
  });
  it("caps reasons at 123 bytes of UTF-8", () => {
    expect(new TextEncoder().encode(closeReason("é".repeat(100))).length).toBeLessThanOrEqual(123);
    expect(closeReason("short")).toBe("short");
  });
});
