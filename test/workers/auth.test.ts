import { env, exports } from "cloudflare:workers";
import { listDurableObjectIds } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { HttpErrorBody } from "../../shared/protocol";
import { connect, fetchWorker, freshChannel, token } from "../support/worker-client";

async function upgrade(path: string, headers: Record<string, string> = {}) {
  const res = await fetchWorker(path, { headers: { upgrade: "websocket", ...headers } });
  const text = res.status === 101 ? "" : await res.text();
  const body = res.status === 101 ? undefined : HttpErrorBody.parse(JSON.parse(text));
  res.webSocket?.accept();
  res.webSocket?.close(1000);
  return { status: res.status, code: body?.error.code, text, res };
}

describe("GET /ws/:channel authentication", () => {
  it("refuses a request without a token with 401 TOKEN_MISSING", async () => {
    expect(await upgrade(`/ws/${freshChannel()}`)).toMatchObject({ status: 401, code: "TOKEN_MISSING" });
  });

  it("refuses a token signed with another secret", async () => {
    const t = await token({ secret: "some-other-secret-0123456789abcdef0123456789" });
    expect(await upgrade(`/ws/${freshChannel()}`, { authorization: `Bearer ${t}` })).toMatchObject({ status: 401, code: "TOKEN_INVALID" });
  });

  it("refuses an expired token with 401 TOKEN_EXPIRED", async () => {
    const t = await token({ expSeconds: -10 });
    expect(await upgrade(`/ws/${freshChannel()}`, { authorization: `Bearer ${t}` })).toMatchObject({ status: 401, code: "TOKEN_EXPIRED" });
  });

  it("refuses a garbage token without echoing it", async () => {
    const { text, status } = await upgrade(`/ws/${freshChannel()}?token=not.a.jwt`);
    expect(status).toBe(401);
    expect(text).not.toContain("not.a.jwt");
  });

  it("refuses a channel the token does not list with 403, and never creates its object", async () => {
    const ch = freshChannel("sales");
    const t = await token({ channels: ["inventory.*"] });
    expect(await upgrade(`/ws/${ch}`, { authorization: `Bearer ${t}` })).toMatchObject({ status: 403, code: "CHANNEL_FORBIDDEN" });
    const ids = await listDurableObjectIds(env.CHANNEL);
    expect(ids.some((id) => id.equals(env.CHANNEL.idFromName(ch)))).toBe(false);
  });

  it("allows wildcard patterns and the subject's own user channel", async () => {
    const t = await token({ sub: "alice", channels: ["inventory.*"] });
    const a = await connect(`inventory.alerts`, { token: t });
    const b = await connect(`user.alice`, { token: t });
    expect(await upgrade(`/ws/user.bob`, { authorization: `Bearer ${t}` })).toMatchObject({ status: 403 });
    a.close();
    b.close();
  });

  it("refuses a browser origin that is not allowed, accepts an allowed one", async () => {
    const t = await token();
    expect(await upgrade(`/ws/${freshChannel()}`, { authorization: `Bearer ${t}`, origin: "https://evil.example" })).toMatchObject({
      status: 403,
      code: "ORIGIN_NOT_ALLOWED",
    });
    const ok = await connect(freshChannel(), { token: t, origin: "https://app.example" });
    ok.close();
  });

  it("echoes only notifiws.v1 when the token rides in Sec-WebSocket-Protocol", async () => {
    const c = await connect(freshChannel(), { via: "protocol" });
    expect(c.response.headers.get("sec-websocket-protocol")).toBe("notifiws.v1");
    c.close();
  });

  it("requires notifiws.v1 among offered subprotocols", async () => {
    const t = await token();
    expect(await upgrade(`/ws/${freshChannel()}`, { "sec-websocket-protocol": `bearer.${t}` })).toMatchObject({ status: 400, code: "BAD_SUBPROTOCOL" });
  });

  it("accepts Authorization: Bearer and ?token= for non-browser clients", async () => {
    const a = await connect(freshChannel(), { via: "header" });
    const b = await connect(freshChannel(), { via: "query" });
    expect(a.messages[0]?.type).toBe("welcome");
    expect(b.messages[0]?.type).toBe("welcome");
    a.close();
    b.close();
  });

  it.each([
    ["/ws/bad%20name", "BAD_CHANNEL"],
    ["/ws/.leading-dot", "BAD_CHANNEL"],
    [`/ws/${"x".repeat(129)}`, "BAD_CHANNEL"],
    ["/ws/ok?since=-1", "BAD_SINCE"],
    ["/ws/ok?since=abc", "BAD_SINCE"],
    ["/ws/ok?filter=%7Bnope", "BAD_FILTER"],
    [`/ws/ok?filter=${encodeURIComponent(JSON.stringify({ where: [{ field: "a", op: "regex", value: 1 }] }))}`, "BAD_FILTER"],
    // 449 characters but 1,249 UTF-8 bytes: over MAX_FILTER_BYTES (1024), which counts bytes.
    [`/ws/ok?filter=${encodeURIComponent(JSON.stringify({ where: [{ field: "a", op: "eq", value: "€".repeat(400) }] }))}`, "BAD_FILTER"],
  ])("answers %s with 400 %s", async (path, code) => {
    const t = await token();
    expect(await upgrade(path, { authorization: `Bearer ${t}` })).toMatchObject({ status: 400, code });
  });

  it("has no demo in the deployed Worker: /api/demo/state is 404 NOT_FOUND (npm run dev serves src/demo.ts)", async () => {
    const res = await exports.default.fetch(new Request("https://x/api/demo/state", { headers: { authorization: `Bearer ${await token()}` } }));
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");
  });

  it("answers a plain GET with 426 when the credentials are good, so clients can diagnose refusals", async () => {
    const t = await token({ channels: ["sales"] });
    const ok = await exports.default.fetch(new Request("https://x/ws/sales", { headers: { authorization: `Bearer ${t}` } }));
    expect(ok.status).toBe(426);
    const denied = await exports.default.fetch(new Request("https://x/ws/other", { headers: { authorization: `Bearer ${t}` } }));
    expect(denied.status).toBe(403);
    expect((await exports.default.fetch(new Request("https://x/ws/sales"))).status).toBe(401);
  });
});

describe("health", () => {
  it("GET /health is public", async () => {
    const res = await fetchWorker("/health");
    expect(await res.json()).toEqual({ ok: true });
  });
  it("unknown routes answer JSON 404", async () => {
    const res = await fetchWorker("/nope");
    expect(res.status).toBe(404);
    expect(HttpErrorBody.parse(await res.json()).error.code).toBe("NOT_FOUND");
  });
});
