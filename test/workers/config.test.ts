import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app";
import { mintToken } from "../../shared/token";
import { HttpErrorBody } from "../../shared/protocol";
import { TEST_BINDINGS } from "../support/bindings";

describe("bad configuration", () => {
  it("answers 500 CONFIG_INVALID naming every bad variable, without values", async () => {
    const app = createApp();
    const bad = { ...env, JWT_SECRET: "short-secret", INGEST_SECRETS: "", HISTORY_MAX_EVENTS: "lots" };
    const res = await app.request("/ws/sales", { headers: { upgrade: "websocket" } }, bad);
    expect(res.status).toBe(500);
    const { error } = HttpErrorBody.parse(await res.json());
    expect(error.code).toBe("CONFIG_INVALID");
    for (const v of ["JWT_SECRET", "INGEST_SECRETS", "HISTORY_MAX_EVENTS"]) expect(error.message).toContain(v);
    expect(error.message).not.toContain("short-secret");
  });

  it("keeps /health answering even when configuration is bad", async () => {
    const res = await createApp().request("/health", {}, { ...env, INGEST_SECRETS: "" });
    expect(res.status).toBe(200);
  });
});

describe("issuer and audience", () => {
  const withIss = { ...env, JWT_ISSUER: "https://auth.example", JWT_AUDIENCE: "notifiws" };
  const sign = (claims: { iss?: string; aud?: string }) =>
    mintToken({ secret: TEST_BINDINGS.JWT_SECRET, sub: "u", channels: ["*"], issuer: claims.iss, audience: claims.aud });

  it("refuses tokens without the configured iss/aud and accepts matching ones", async () => {
    const app = createApp();
    const ask = async (token: string) => app.request("/ws/sales", { headers: { authorization: `Bearer ${token}` } }, withIss);
    const none = await ask(await sign({}));
    expect(none.status).toBe(401);
    expect(HttpErrorBody.parse(await none.json()).error.code).toBe("TOKEN_INVALID");
    expect((await ask(await sign({ iss: "https://evil.example", aud: "notifiws" }))).status).toBe(401);
    // 426: credentials accepted, only the upgrade is missing.
    expect((await ask(await sign({ iss: "https://auth.example", aud: "notifiws" }))).status).toBe(426);
  });
});
