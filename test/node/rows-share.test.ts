/** When a channel object may hand its latest read of a live table to another load (durable-objects/rows.ts, shareable()). */
import { describe, expect, it } from "vitest";
import { shareable, type KeptRows } from "../../durable-objects/rows";

const kept: KeptRows = { body: "{}", fromSeq: 100, at: 1_000_000 };
const shareMs = 30_000;

describe("shareable(kept, now, shareMs, oldestSeq, lastGapSeq)", () => {
  it.each([
    ["nothing kept", undefined, 1_000_000, 1, 0, false],
    ["just read, history from the start", kept, 1_000_000, 1, 0, true],
    ["at the age limit", kept, 1_030_000, 1, 0, true],
    ["past the age limit", kept, 1_030_001, 1, 0, false],
    ["history starts right after fromSeq", kept, 1_000_500, 101, 0, true],
    ["history lost the event after fromSeq", kept, 1_000_500, 102, 0, false],
    ["a gap marker at or before fromSeq", kept, 1_000_500, 1, 100, true],
    ["a gap marker after fromSeq", kept, 1_000_500, 1, 101, false],
  ] as const)("%s", (_what, k, now, oldestSeq, lastGapSeq, expected) => {
    expect(shareable(k, now, shareMs, oldestSeq, lastGapSeq)).toBe(expected);
  });

  it("with ROWS_SHARE_SECONDS 0, a read is not handed to a later load", () => {
    expect(shareable(kept, kept.at + 1, 0, 1, 0)).toBe(false);
  });
});
