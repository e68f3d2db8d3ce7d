import { describe, expect, it } from "vitest";
import { channelAllowed } from "../../shared/channels";

describe("channelAllowed", () => {
  const cases: [string, string[], string | undefined, boolean][] = [
    ["sales", ["sales"], "u", true],
    ["sales", ["inventory"], "u", false],
    ["inventory.alerts", ["inventory.*"], "u", true],
    ["inventory", ["inventory.*"], "u", false],
    ["inventoryx", ["inventory.*"], "u", false],
    ["anything", ["*"], "u", true],
    ["user.u", [], "u", true],
    ["user.v", [], "u", false],
  ];
  it.each(cases)("%s with %j for %s -> %s", (channel, patterns, sub, expected) => {
    expect(channelAllowed(channel, patterns, sub)).toBe(expected);
  });
});
