import { describe, expect, it } from "vitest";
import { HttpErrorBody } from "../../shared/protocol";
import { TEST_BINDINGS } from "../support/bindings";
import { connect, event, fetchWorker, freshChannel, ingest } from "../support/worker-client";

const publish = (ch: string, body: unknown, key = "test-publish-key") =>
  fetchWorker(`/api/channels/${ch}/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

describe("POST /api/channels/:channel/publish", () => {
  it("delivers a published event through the same sequence", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    await ingest([event(ch, 1)]);
    const res = await publish(ch, { id: "p1", data: { hello: "world" } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: "p1", duplicate: false, headSeq: 2 });
    const evs = await c.waitForEvents(2);
    expect(evs[1]).toMatchObject({ seq: 2, op: "publish", data: { hello: "world" } });
    expect(await (await publish(ch, { id: "p1", data: { hello: "again" } })).json()).toMatchObject({ duplicate: true, headSeq: 2 });
  });

  it("refuses a wrong key with 401 and a missing one with 401", async () => {
    const bad = await publish(freshChannel(), { data: {} }, "wrong");
    expect(bad.status).toBe(401);
    expect(HttpErrorBody.parse(await bad.json()).error.code).toBe("KEY_INVALID");
    const none = await fetchWorker(`/api/channels/x/publish`, { method: "POST", body: "{}" });
    expect(none.status).toBe(401);
    expect(HttpErrorBody.parse(await none.json()).error.code).toBe("KEY_MISSING");
  });

  it("limits a key to its channel patterns: orders.* may publish to orders.eu, not to user.alice", async () => {
    const orders = freshChannel("orders");
    const c = await connect(orders);
    const ok = await publish(orders, { data: { total: 5 } }, "test-orders-key");
    expect(ok.status).toBe(200);
    expect(await c.waitForEvents(1)).toMatchObject([{ data: { total: 5 } }]);
    expect((await publish("audit", { data: {} }, "test-orders-key")).status).toBe(200);
    for (const ch of ["user.alice", "orders", "auditing"]) {
      const res = await publish(ch, { data: { x: 1 } }, "test-orders-key");
      expect(res.status, ch).toBe(403);
      expect(HttpErrorBody.parse(await res.json()).error.code).toBe("KEY_FORBIDDEN_CHANNEL");
    }
  });

  it("refuses a publish body over PUBLISH_MAX_BYTES, measured in bytes", async () => {
    // 200,000 "€" is 200,000 UTF-16 units but 600,000 bytes: over PUBLISH_MAX_BYTES (256 KiB).
    const res = await publish(freshChannel(), { data: { text: "€".repeat(200_000) } });
    expect(res.status).toBe(413);
    expect(HttpErrorBody.parse(await res.json()).error.code).toBe("BODY_TOO_LARGE");
  });

  it("answers bad bodies with 400 and a reason", async () => {
    expect(HttpErrorBody.parse(await (await publish(freshChannel(), "nope")).json()).error.code).toBe("BAD_JSON");
    expect(HttpErrorBody.parse(await (await publish(freshChannel(), { data: 5 })).json()).error.code).toBe("INVALID_EVENT");
  });
});

describe("GET /stats and /metrics", () => {
  const admin = { authorization: `Bearer ${TEST_BINDINGS.ADMIN_TOKEN}` };

  it("reports per-channel connections, events and messages, and totals", async () => {
    const ch = freshChannel();
    const clients = await Promise.all([connect(ch), connect(ch)]);
    await ingest([event(ch, 1), event(ch, 2)]);
    for (const c of clients) await c.waitForEvents(2);
    const res = await fetchWorker("/stats", { headers: admin });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { channels: { channel: string }[]; totals: { connections: number; events: number } };
    const mine = body.channels.find((s) => s.channel === ch);
    // 2 welcome frames + 1 events frame per socket
    expect(mine).toMatchObject({ channel: ch, connections: 2, events: 2, headSeq: 2, sendErrors: 0, messagesSent: 4 });
    expect(body.totals.connections).toBeGreaterThanOrEqual(2);
    expect(body.totals.events).toBeGreaterThanOrEqual(2);
  });

  it("exposes Prometheus text", async () => {
    const ch = freshChannel();
    await ingest([event(ch, 1)]);
    const res = await fetchWorker("/metrics", { headers: admin });
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toContain("# TYPE notifiws_events_total counter");
    expect(text).toContain(`notifiws_events_total{channel="${ch}"} 1`);
  });

  it("refuses requests without the admin token", async () => {
    const res = await fetchWorker("/stats");
    expect(res.status).toBe(401);
    expect(HttpErrorBody.parse(await res.json()).error.code).toBe("UNAUTHORIZED");
    expect((await fetchWorker("/metrics", { headers: { authorization: "Bearer nope" } })).status).toBe(401);
  });
});
