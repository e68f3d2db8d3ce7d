/** The client SDK against the real Worker under wrangler dev, fed by Postgres through the relay. */
import { describe, expect, it } from "vitest";
import { connect, type ConnectionState, type Envelope, type ResetInfo, type Subscription, type SubscriptionError } from "../../client/index";
import { devToken } from "../../scripts/stack";
import { useStack } from "../support/stack";
import { createPublisher, mintToken } from "../../client/server";
import { TcpProxy } from "../support/tcpproxy";
import { expectContiguous, waitUntil } from "../support/wait";
import { RawWs } from "../support/raw-ws";

const subs: Subscription[] = [];
const fx = useStack("sdk", { workerVars: { HISTORY_MAX_EVENTS: "30" }, relayEnv: { RELAY_BACKOFF_MAX_MS: "300" } }, () => subs.forEach((s) => s.close()));

const sale = async () => (await fx.db.query<{ id: string }>("INSERT INTO ventas (sku, quantity, total) VALUES ('CB-05', 1, 9.90) RETURNING id")).rows[0]!.id;

function subscribe(opts: Partial<Parameters<typeof connect>[0]> & { channel: string }) {
  const events: Envelope[] = [];
  const states: ConnectionState[] = [];
  const errors: SubscriptionError[] = [];
  const resets: ResetInfo[] = [];
  const sub = connect({
    url: fx.stack.workerUrl,
    getToken: () => devToken(fx.stack.secrets),
    backoffBaseMs: 50,
    backoffMaxMs: 500,
    onEvent: (e) => events.push(e),
    onStateChange: (s) => states.push(s),
    onError: (e) => errors.push(e),
    onReset: (r) => {
      resets.push(r);
    },
    ...opts,
  });
  subs.push(sub);
  return { sub, events, states, errors, resets };
}

const expectOnceInOrder = (events: Envelope[]) => expectContiguous(events.map((e) => e.seq));

describe("client SDK", () => {
  it("reconnects after the server drops the socket and resumes with no gap or duplicate", async () => {
    const s = subscribe({ channel: "sales" });
    await waitUntil("open", () => s.sub.state === "open");
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await sale());
    await waitUntil("10 events", () => s.events.length >= 10);
    await fx.stack.worker!.stop();
    await waitUntil("reconnecting", () => s.sub.state === "reconnecting");
    for (let i = 0; i < 10; i++) ids.push(await sale());
    await fx.stack.startWorker();
    await waitUntil("all 20 sales", () => s.events.length >= 20, 30_000);
    expect(s.events.map((e) => e.data!.id)).toEqual(ids);
    expectOnceInOrder(s.events);
    expect(s.sub.attempts).toBeGreaterThan(1);
    expect(s.states).toContain("reconnecting");
    s.sub.close();
  });

  it("calls the reset handler when the resume point is older than the history", async () => {
    for (let i = 0; i < 40; i++) await sale();
    await waitUntil("outbox drained", async () => (await fx.db.query("SELECT 1 FROM notifiws.outbox LIMIT 1")).rowCount === 0);
    const s = subscribe({ channel: "sales", since: 1 });
    const [reset] = await waitUntil("a reset", () => (s.resets.length ? s.resets : undefined));
    expect(reset!.reason).toBe("history_expired");
    const id = await sale();
    await waitUntil("a live event after the reset", () => s.events.some((e) => e.data!.id === id));
    expect(s.events[0]!.seq).toBe(reset!.headSeq + 1);
    s.sub.close();
  });

  it("reports a refusal (403) once and does not retry it", async () => {
    const narrow = await devToken(fx.stack.secrets, { channels: ["inventory"] });
    const s = subscribe({ channel: "sales", getToken: undefined, token: narrow });
    await waitUntil("closed", () => s.sub.state === "closed");
    expect(s.errors).toEqual([expect.objectContaining({ status: 403, code: "CHANNEL_FORBIDDEN", permanent: true })]);
    expect(s.sub.attempts).toBe(1);
  });

  it("refreshes the token before it expires without reconnecting", async () => {
    let minted = 0;
    const s = subscribe({
      channel: "sales",
      getToken: () => {
        minted++;
        return devToken(fx.stack.secrets, { expSeconds: 3 });
      },
      refreshBeforeSeconds: 2,
    });
    await waitUntil("two refreshes", () => minted >= 3, 10_000);
    const id = await sale();
    await waitUntil("an event on the refreshed connection", () => s.events.some((e) => e.data!.id === id));
    expect(s.sub.attempts).toBe(1);
    expect(s.sub.state).toBe("open");
    s.sub.close();
  });

  it("at a token's expiry (wrangler dev): the 4001 close frame within 2 s; the SDK ends the connection itself within 2 s and resumes with a new token, losing nothing", async () => {
    const short = await devToken(fx.stack.secrets, { expSeconds: 3 });
    const exp = (JSON.parse(Buffer.from(short.split(".")[1]!, "base64url").toString()) as { exp: number }).exp * 1000;
    const raw = await RawWs.open(fx.stack.workerUrl, "/ws/sales", { "Sec-WebSocket-Protocol": `notifiws.v1, bearer.${short}` });
    const stateAt: [ConnectionState, number][] = [];
    const s = subscribe({
      channel: "sales",
      getToken: () => (Date.now() < exp ? short : devToken(fx.stack.secrets)),
      onStateChange: (st) => stateAt.push([st, Date.now()]),
    });
    await waitUntil("open", () => s.sub.state === "open");
    const before = await sale();
    await waitUntil("the first sale", () => s.events.some((e) => e.data!.id === before));
    await waitUntil("the expiry", () => Date.now() > exp + 100, 10_000);
    const during = await sale(); // committed after exp, before the SDK reconnects
    await raw.waitFor("the raw close frame", () => raw.closeFrame, 5000);
    expect(raw.closeFrame!.code).toBe(4001);
    expect(raw.closeFrame!.at - exp).toBeLessThan(2000);
    await waitUntil("the SDK reconnected", () => s.sub.attempts >= 2 && s.sub.state === "open", 10_000);
    const ended = stateAt.find(([st, at]) => st === "reconnecting" && at > exp - 1000);
    expect(ended![1] - exp).toBeLessThan(2000);
    await waitUntil("the sale committed during the expiry", () => s.events.some((e) => e.data!.id === during));
    expectOnceInOrder(s.events);
    raw.destroy();
    s.sub.close();
  });

  it("detects a dead connection by heartbeat and reconnects", async () => {
    const proxy = await new TcpProxy({ host: "127.0.0.1", port: Number(new URL(fx.stack.workerUrl).port) }).start();
    try {
      const s = subscribe({ channel: "sales", url: `http://127.0.0.1:${proxy.port}`, heartbeatMs: 200, heartbeatTimeoutMs: 400 });
      await waitUntil("open", () => s.sub.state === "open");
      proxy.freezeExisting(); // packets stop, nothing closes: a half-open connection
      await waitUntil("a second connection", () => s.sub.attempts >= 2 && s.sub.state === "open", 10_000);
      const id = await sale();
      await waitUntil("an event after reconnecting", () => s.events.some((e) => e.data!.id === id));
      expectOnceInOrder(s.events);
      s.sub.close();
    } finally {
      await proxy.stop();
    }
  });

  it("reports lag from commit time", async () => {
    const s = subscribe({ channel: "sales" });
    await waitUntil("open", () => s.sub.state === "open");
    await sale();
    await waitUntil("an event", () => s.events.length >= 1);
    expect(s.sub.lagMs).toBeGreaterThanOrEqual(0);
    expect(s.sub.lagMs).toBeLessThan(10_000);
    s.sub.close();
  });

  it("accepts a token from notifiws/server's mintToken for its channels and refuses it for another", async () => {
    const token = await mintToken({ secret: fx.stack.secrets.JWT_SECRET, sub: "app-user", channels: ["sales"], ttlSeconds: 600 });
    const ok = subscribe({ channel: "sales", getToken: undefined, token });
    await waitUntil("the sales subscription open", () => ok.sub.state === "open");
    const denied = subscribe({ channel: "inventory", getToken: undefined, token });
    await waitUntil("the refusal", () => denied.errors.length > 0);
    expect(denied.errors[0]).toMatchObject({ status: 403, code: "CHANNEL_FORBIDDEN", permanent: true });
    expect(denied.sub.state).toBe("closed");
  });

  it("publishes from a backend with notifiws/server's createPublisher, once per id across retries", async () => {
    const s = subscribe({ channel: "alerts.ops" });
    await waitUntil("open", () => s.sub.state === "open");
    const publisher = createPublisher({ url: fx.stack.workerUrl, key: fx.stack.secrets.PUBLISH_KEY });
    // A bigint goes out as an exact JSON number and comes back as the same bigint.
    const first = await publisher.publish("alerts.ops", { id: "deploy-42", data: { text: "deploy finished", build: 9007199254740993n } });
    const again = await publisher.publish("alerts.ops", { id: "deploy-42", data: { text: "deploy finished", build: 9007199254740993n } });
    expect(first).toMatchObject({ id: "deploy-42", duplicate: false });
    expect(again).toMatchObject({ id: "deploy-42", duplicate: true, headSeq: first.headSeq });
    await waitUntil("the published event", () => s.events.length >= 1);
    expect(s.events.map((e) => e.data)).toEqual([{ text: "deploy finished", build: 9007199254740993n }]);
    const bad = createPublisher({ url: fx.stack.workerUrl, key: "not-a-key" });
    await expect(bad.publish("alerts.ops", { data: {} })).rejects.toMatchObject({ code: "KEY_INVALID", status: 401 });
  });
});
