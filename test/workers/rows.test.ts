/**
 * GET /v1/channels/:channel/rows refuses before it costs a database read or
 * an object request: no token, a token for another channel, a bad channel
 * name, a browser origin not allowed, the route switched off. (Reads from a
 * real Postgres are in test/node/live-tables.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { HttpErrorBody } from "../../shared/protocol";
import { fetchWorker, freshChannel, token } from "../support/worker-client";

async function rows(channel: string, headers: Record<string, string> = {}) {
  const res = await fetchWorker(`/v1/channels/${channel}/rows`, { headers });
  return { status: res.status, code: HttpErrorBody.parse(await res.json()).error.code, res };
}

describe("GET /v1/channels/:channel/rows refusals", () => {
  it("needs a token, one that allows the channel", async () => {
    expect(await rows(freshChannel())).toMatchObject({ status: 401, code: "TOKEN_MISSING" });
    const narrow = await token({ channels: ["orders.*"] });
    expect(await rows("inventory", { authorization: `Bearer ${narrow}` })).toMatchObject({ status: 403, code: "CHANNEL_FORBIDDEN" });
    expect(await rows("inventory", { authorization: "Bearer forged.token.value" })).toMatchObject({ status: 401, code: "TOKEN_INVALID" });
  });

  it("refuses a bad channel name and a browser origin not in ALLOWED_ORIGINS", async () => {
    const t = await token();
    expect(await rows("bad%20name", { authorization: `Bearer ${t}` })).toMatchObject({ status: 400, code: "BAD_CHANNEL" });
    expect(await rows("inventory", { authorization: `Bearer ${t}`, origin: "https://evil.example" })).toMatchObject({
      status: 403,
      code: "ORIGIN_NOT_ALLOWED",
    });
  });

  it("answers 503 ROWS_DISABLED when ROWS_DATABASE_URL is not set, with CORS for the app's origin", async () => {
    const t = await token();
    const { status, code, res } = await rows("inventory", { authorization: `Bearer ${t}`, origin: "https://app.example" });
    expect({ status, code }).toEqual({ status: 503, code: "ROWS_DISABLED" });
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example");
  });
});
