import { describe, expect, it, vi } from "vitest";
import { createAcker } from "../../client/ack";
import { afterClose, afterDiagnosis, afterLoadRefusal, afterRefusal } from "../../client/decide";

describe("afterClose: what a subscription does when its socket ends", () => {
  it.each([
    ["closed by the user", { code: 1006, welcomed: true, closedByUser: true }, "stop"],
    ["4003 FORBIDDEN (permanent)", { code: 4003, welcomed: true, closedByUser: false }, "stop"],
    ["closed before welcome: ask why over HTTP", { code: 1006, welcomed: false, closedByUser: false }, "diagnose"],
    ["4001 token expired: at once, with a new token", { code: 4001, welcomed: true, closedByUser: false }, "reconnect-now"],
    ["1011 server error", { code: 1011, welcomed: true, closedByUser: false }, "backoff"],
    ["1001 going away (deploy)", { code: 1001, welcomed: true, closedByUser: false }, "backoff"],
    ["1006 network loss", { code: 1006, welcomed: true, closedByUser: false }, "backoff"],
    ["4008 rate limited", { code: 4008, welcomed: true, closedByUser: false }, "backoff"],
  ])("%s → %s", (_name, e, action) => {
    expect(afterClose({ reason: "", ...e }).action).toBe(action);
  });

  it("reports 4003 as a permanent error with the server's reason", () => {
    expect(afterClose({ code: 4003, reason: "refresh rejected", welcomed: true, closedByUser: false })).toEqual({
      action: "stop",
      permanent: { code: "FORBIDDEN", message: "refresh rejected" },
    });
  });
});

describe("afterRefusal: a refused handshake", () => {
  it.each([
    [401, true, 0, "retry"], // one more try with a fresh token
    [401, true, 1, "stop"],
    [401, false, 0, "stop"], // a fixed token will be refused again
    [403, true, 0, "stop"],
    [400, true, 0, "stop"],
    [503, false, 5, "retry"],
    [undefined, false, 0, "retry"], // network error while asking
  ])("status %s, can refresh %s, refused %i times before → %s", (status, canRefreshToken, refusalsBefore, verdict) => {
    expect(afterRefusal({ status, canRefreshToken, refusalsBefore })).toBe(verdict);
  });
});

describe("afterLoadRefusal: a refused rows load", () => {
  it.each([
    [401, "TOKEN_EXPIRED", true, 0, "retry"], // one more try with a fresh token
    [401, "TOKEN_EXPIRED", true, 1, "stop"],
    [401, "TOKEN_INVALID", false, 0, "stop"],
    [403, "CHANNEL_FORBIDDEN", true, 0, "stop"],
    [404, "CHANNEL_NOT_A_TABLE", true, 0, "stop"],
    [409, "TABLE_HAS_NO_KEY", true, 0, "stop"],
    [422, "TABLE_TOO_LARGE", true, 0, "stop"],
    [503, "ROWS_DISABLED", true, 0, "stop"], // waits for a configuration change
    [503, "ROWS_MISCONFIGURED", true, 0, "stop"],
    [503, "DATABASE_UNAVAILABLE", true, 3, "retry"],
    [503, "CHANNEL_UNAVAILABLE", false, 0, "retry"],
    [500, "INTERNAL", false, 0, "retry"],
    [429, "SERVER_ERROR", false, 0, "retry"],
  ])("%i %s, can refresh %s, refused %i times before → %s", (status, code, canRefreshToken, refusalsBefore, verdict) => {
    expect(afterLoadRefusal({ status, code, canRefreshToken, refusalsBefore })).toBe(verdict);
  });
});

describe("afterDiagnosis: why a handshake failed, asked over HTTP", () => {
  const e = { base: "https://rt.example", canRefreshToken: true, refusalsBefore: 0 };
  it.each([
    ["unreachable: report, back off", { kind: "unreachable", message: "ECONNREFUSED" }, e, "backoff", "UNREACHABLE", false],
    ["no fetch here: back off quietly", { kind: "unknown" }, e, "backoff", undefined, false],
    ["426 (credentials fine, not upgraded): report, back off", { kind: "answered", status: 426 }, e, "backoff", "HTTP_426", true],
    ["503 CHANNEL_FULL: report, back off", { kind: "answered", status: 503, code: "CHANNEL_FULL" }, e, "backoff", "CHANNEL_FULL", false],
    ["401 with a token source, first time: report, back off", { kind: "answered", status: 401, code: "TOKEN_EXPIRED" }, e, "backoff", "TOKEN_EXPIRED", true],
    ["401 again: stop", { kind: "answered", status: 401, code: "TOKEN_EXPIRED" }, { ...e, refusalsBefore: 1 }, "stop", "TOKEN_EXPIRED", true],
    ["403: stop", { kind: "answered", status: 403, code: "CHANNEL_FORBIDDEN" }, e, "stop", "CHANNEL_FORBIDDEN", true],
  ] as const)("%s", (_what, why, ctx, action, code, refused) => {
    const d = afterDiagnosis(why as Parameters<typeof afterDiagnosis>[0], ctx);
    expect(d.action).toBe(action);
    expect(d.error?.code).toBe(code);
    expect(d.refused).toBe(refused);
    if (d.action === "stop") expect(d.error?.permanent).toBe(true);
  });
});

describe("createAcker: the SDK's acknowledgements", () => {
  it("acks at once after everyEvents, else everyMs after the first waiting event, and never while idle", () => {
    vi.useFakeTimers();
    try {
      const sent: string[] = [];
      const acker = createAcker((f) => sent.push(f), { everyEvents: 10, everyMs: 250 });
      acker.delivered(4, 4);
      expect(sent).toEqual([]);
      acker.delivered(12, 8); // 12 waiting: at once
      expect(sent).toEqual(['{"type":"ack","seq":12}']);
      acker.delivered(13, 1);
      vi.advanceTimersByTime(249);
      expect(sent).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(sent.at(-1)).toBe('{"type":"ack","seq":13}');
      vi.advanceTimersByTime(60_000); // idle: nothing more
      expect(sent).toHaveLength(2);
      acker.delivered(14, 0); // all duplicates (a replay overlap): not news
      vi.advanceTimersByTime(1000);
      expect(sent).toHaveLength(2);
      acker.delivered(15, 1);
      acker.stop(); // the connection ended before the timer
      vi.advanceTimersByTime(1000);
      expect(sent).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
