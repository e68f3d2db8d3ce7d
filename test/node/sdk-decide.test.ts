import { describe, expect, it } from "vitest";
import { afterClose, afterLoadRefusal, afterRefusal } from "../../client/decide";

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
