import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app";
import { HttpErrorBody } from "../../src/protocol";

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
