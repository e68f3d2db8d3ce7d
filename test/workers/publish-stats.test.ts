import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ChannelObject } from "./worker";
import { STATS_STORE, type ChannelStats } from "../../src/channel-contract";
import type { StatsReport } from "../../src/metrics";
import { waitUntil } from "../support/wait";
import { HttpErrorBody } from "../../shared/protocol";
import { TEST_BINDINGS } from "../support/bindings";
import { connect, event, fetchWorker, freshChannel, ingest, token } from "../support/worker-client";

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

const stubFor = (ch: string) => env.CHANNEL.get(env.CHANNEL.idFromName(ch));

describe("GET /stats and /metrics", () => {
  const admin = { authorization: `Bearer ${TEST_BINDINGS.ADMIN_TOKEN}` };
  const stats = async () => (await (await fetchWorker("/stats", { headers: admin })).json()) as StatsReport;
  /** Channel roll-ups arrive within STATS_ROLLUP_MS (100 ms in the test bindings). */
  const statsOf = (ch: string, until: (s: ChannelStats) => boolean) =>
    waitUntil(`the roll-up of ${ch}`, async () => (await stats()).channels.find((s) => s.channel === ch && until(s)), 5000);

  it("reports per-channel connections by role, unique users, events and messages, and totals", async () => {
    const ch = freshChannel();
    const clients = await Promise.all([
      connect(ch, { token: await token({ sub: "ana", role: "admin" }) }),
      connect(ch, { token: await token({ sub: "ana", role: "admin" }) }),
      connect(ch, { token: await token({ sub: "bo", role: "viewer" }) }),
      connect(ch, { token: await token({ sub: "cy" }) }),
    ]);
    await ingest([event(ch, 1), event(ch, 2)]);
    for (const c of clients) await c.waitForEvents(2);
    // 1 welcome frame + 1 events frame per socket
    const mine = await statsOf(ch, (s) => s.events === 2 && s.messagesSent === 8);
    expect(mine).toMatchObject({
      channel: ch,
      connections: 4,
      uniqueUsers: 3,
      connectionsByRole: { admin: 2, viewer: 1, none: 1 },
      events: 2,
      headSeq: 2,
      sendErrors: 0,
    });
    clients[3]!.close();
    await statsOf(ch, (s) => s.connections === 3 && s.connectionsByRole.none === undefined);
    const body = await stats();
    expect(body.totals.connections).toBeGreaterThanOrEqual(3);
    expect(body.totals.connectionsByRole.admin).toBeGreaterThanOrEqual(2);
    expect(body.totals.uniqueUsers).toBeGreaterThanOrEqual(2);
    expect(body.totals.events).toBeGreaterThanOrEqual(2);
  });

  it("serves /stats from roll-ups without waking a hibernated channel", async () => {
    const ch = freshChannel();
    const c = await connect(ch);
    await ingest([event(ch, 1)]);
    await c.waitForEvents(1);
    await statsOf(ch, (s) => s.events === 1 && s.connections === 1);
    await evictDurableObject(stubFor(ch)); // hibernation: the object goes, the socket stays
    const before = ChannelObject.constructed;
    for (let i = 0; i < 3; i++) expect((await stats()).channels.find((s) => s.channel === ch)).toMatchObject({ connections: 1, events: 1 });
    await fetchWorker("/metrics", { headers: admin });
    expect(ChannelObject.constructed).toBe(before);
    // The counter does see a wake-up: an event for the channel starts the object again.
    await ingest([event(ch, 2)]);
    expect(ChannelObject.constructed).toBe(before + 1);
  });

  it("exposes Prometheus text with histograms", async () => {
    const ch = freshChannel();
    await ingest([event(ch, 1, { committedAt: Date.now() - 30 })]);
    await statsOf(ch, (s) => s.events === 1);
    const res = await fetchWorker("/metrics", { headers: admin });
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toContain("# TYPE notifiws_events_total counter");
    expect(text).toContain(`notifiws_events_total{channel="${ch}"} 1`);
    expect(text).toContain("# TYPE notifiws_commit_to_stored_seconds histogram");
    expect(text).toContain(`notifiws_commit_to_stored_seconds_count{channel="${ch}"} 1`);
    expect(text).toContain(`notifiws_commit_to_stored_seconds_bucket{channel="${ch}",le="+Inf"} 1`);
    expect(text).toContain(`notifiws_commit_to_stored_seconds_bucket{channel="${ch}",le="0.01"} 0`); // it took >= 30 ms
    expect(text).toContain(`notifiws_batch_events_count{channel="${ch}"} 1`);
  });

  it("forgets a channel with no connections and no events for STATS_RETENTION_SECONDS", async () => {
    const control = env.STATS.get(env.STATS.idFromName(STATS_STORE));
    const idle = freshChannel("idle");
    const hist = { bounds: [1], counts: [0, 0], sum: 0, count: 0 };
    const stats = {
      channel: idle,
      connections: 0,
      connectionsByRole: {},
      uniqueUsers: 0,
      headSeq: 3,
      events: 3,
      duplicates: 0,
      messagesSent: 3,
      sendErrors: 0,
      lastEventAt: 1,
      historySize: 3,
      rowsLoads: 0,
      rowsReads: 0,
      sqlRowsRead: 0,
      sqlRowsWritten: 0,
    };
    const twoHoursAgo = Date.now() - 2 * 3600_000;
    await control.report({ source: "", stats, users: [], histograms: { commitToStored: hist, batchEvents: hist }, at: twoHoursAgo });
    const names = async (retention: number) => (await control.snapshot(retention)).map((e) => e.stats.channel);
    expect(await names(7 * 86_400)).toContain(idle); // inside the retention period
    expect(await names(3600)).not.toContain(idle); // idle for two hours: forgotten
    expect(await names(7 * 86_400)).not.toContain(idle); // and gone for good
  });

  it("refuses requests without the admin token", async () => {
    const res = await fetchWorker("/stats");
    expect(res.status).toBe(401);
    expect(HttpErrorBody.parse(await res.json()).error.code).toBe("UNAUTHORIZED");
    expect((await fetchWorker("/metrics", { headers: { authorization: "Bearer nope" } })).status).toBe(401);
  });
});
