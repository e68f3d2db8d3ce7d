import { describe, expect, it } from "vitest";
import { HttpErrorBody, IngestResult, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../../shared/protocol";
import { sign } from "../../shared/signing";
import { connect, event, fetchWorker, freshChannel, INGEST_SECRET, ingest, OLD_INGEST_SECRET, range, seqs } from "../support/worker-client";

const code = async (res: Response) => HttpErrorBody.parse(await res.json()).error.code;

describe("POST /internal/events", () => {
  it("applies a signed batch and reports each channel's head", async () => {
    const a = freshChannel();
    const b = freshChannel();
    const res = await ingest([event(a, 1), event(b, 1), event(a, 2)]);
    expect(res.status).toBe(200);
    const body = IngestResult.parse(await res.json());
    expect(body.accepted).toBe(3);
    expect(body.channels[a]).toEqual({ headSeq: 2 });
    expect(body.channels[b]).toEqual({ headSeq: 1 });
  });

  it("accepts the previous secret during rotation", async () => {
    const res = await ingest([event(freshChannel(), 1)], { secret: OLD_INGEST_SECRET });
    expect(res.status).toBe(200);
  });

  it("rejects a bad signature and applies nothing", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    const res = await ingest([event(ch, 1)], { secret: "wrong-secret-0123456789abcdef0123456789" });
    expect(res.status).toBe(401);
    expect(await code(res)).toBe("BAD_SIGNATURE");
    // A later good batch gets seq 1: the rejected one consumed nothing.
    await ingest([event(ch, 2)]);
    expect(seqs(await c.waitForEvents(1))).toEqual([1]);
    expect(c.events[0]!.id).toBe(`${ch}-2`);
    c.close();
  });

  it("rejects a body changed after signing", async () => {
    const body = JSON.stringify({ batchId: "b1", events: [event(freshChannel(), 1)] });
    const ts = Math.floor(Date.now() / 1000);
    const res = await fetchWorker("/internal/events", {
      method: "POST",
      headers: { [TIMESTAMP_HEADER]: String(ts), [SIGNATURE_HEADER]: await sign(INGEST_SECRET, ts, body) },
      body: body.replace('"n":1', '"n":2'),
    });
    expect(res.status).toBe(401);
  });

  it("rejects a stale timestamp", async () => {
    const res = await ingest([event(freshChannel(), 1)], { timestamp: Math.floor(Date.now() / 1000) - 301 });
    expect(res.status).toBe(401);
    expect(await code(res)).toBe("STALE_TIMESTAMP");
  });

  it("answers the same batch again 409 BATCH_REPLAYED, and stores events it never saw whatever their batch id", async () => {
    const ch = freshChannel();
    expect((await ingest([event(ch, 1)], { batchId: `batch-${ch}` })).status).toBe(200);
    const again = await ingest([event(ch, 1)], { batchId: `batch-${ch}` });
    expect(again.status).toBe(409);
    expect(await code(again)).toBe("BATCH_REPLAYED");
    // A batch id reused for a new event: ids decide what is new, so nothing committed is dropped.
    const reused = await ingest([event(ch, 2)], { batchId: `batch-${ch}` });
    expect(reused.status).toBe(200);
    expect(((await reused.json()) as { accepted: number }).accepted).toBe(1);
  });

  it.each([
    ["malformed JSON", "{not json", "BAD_JSON", 400],
    ["missing events", JSON.stringify({ batchId: "x" }), "INVALID_BATCH", 400],
    ["empty events", JSON.stringify({ batchId: "x", events: [] }), "INVALID_BATCH", 400],
    ["bad channel in an event", JSON.stringify({ batchId: "x", events: [{ ...event("ok", 1), channel: "bad name" }] }), "INVALID_BATCH", 400],
    ["too many events", JSON.stringify({ batchId: "x", events: range(1, 1001).map((n) => event("many", n)) }), "TOO_MANY_EVENTS", 413],
  ])("answers %s with a JSON reason", async (_name, body, expected, status) => {
    const res = await ingest([], { body });
    expect(res.status).toBe(status);
    expect(await code(res)).toBe(expected);
  });

  it("rejects an oversize body with 413 before verifying it", async () => {
    const huge = "x".repeat(4 * 1024 * 1024 + 1);
    const res = await ingest([], { body: huge });
    expect(res.status).toBe(413);
    expect(await code(res)).toBe("BATCH_TOO_LARGE");
  });
});
