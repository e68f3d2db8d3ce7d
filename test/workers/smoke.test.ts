import { describe, expect, it } from "vitest";
import { connect, event, freshChannel, ingest, seqs } from "./helpers";

describe("smoke", () => {
  it("delivers an ingested event to a subscriber", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    const res = await ingest([event(ch, 1)]);
    expect(res.status).toBe(200);
    expect(seqs(await c.waitForEvents(1))).toEqual([1]);
    c.close();
  });
});
