/** What the channel object does with one client message (durable-objects/client-message.ts), as a table. */
import { describe, expect, it } from "vitest";
import { decideMessage, refusal, type MessageAction } from "../../durable-objects/client-message";
import { CloseCode } from "../../shared/protocol";

const limits = { maxBytes: 64, ratePerSec: 10, burst: 2 };
const NOW = 1_000_000;
const fresh = { bucket: { tokens: 2, at: NOW }, exp: NOW / 1000 + 60, acked: 10, head: 50 };
const empty = { ...fresh, bucket: { tokens: 0.5, at: NOW } };

describe("decideMessage", () => {
  const cases: [string, string | ArrayBuffer, typeof fresh, MessageAction["kind"], unknown][] = [
    ["ping", '{"type":"ping"}', fresh, "pong", undefined],
    ["resume", '{"type":"resume","since":7}', fresh, "resume", { since: 7 }],
    ["refresh", '{"type":"refresh","token":"t"}', fresh, "refresh", { token: "t" }],
    ["over the size cap, in UTF-8 bytes (22 characters, 66 bytes)", `{"type":"${"€".repeat(22)}"}`, fresh, "close", { code: CloseCode.MESSAGE_TOO_BIG }],
    ["no token left in the bucket", '{"type":"ping"}', { ...fresh, bucket: { tokens: 0.5, at: NOW } }, "close", { code: CloseCode.RATE_LIMITED }],
    ["an expired token", '{"type":"ping"}', { ...fresh, exp: NOW / 1000 }, "close", { code: CloseCode.TOKEN_EXPIRED }],
    ["a binary frame", new TextEncoder().encode('{"type":"ping"}').buffer as ArrayBuffer, fresh, "refuse", { error: { code: "BAD_MESSAGE" } }],
    ["not JSON", "{oops", fresh, "refuse", { error: { code: "BAD_JSON" } }],
    ["a known type with bad fields", '{"type":"resume","since":"x"}', fresh, "refuse", { error: { code: "BAD_MESSAGE" } }],
    ["an unknown type", '{"type":"launch"}', fresh, "refuse", { error: { code: "UNKNOWN_TYPE" } }],
    ["a type whose toString is not a function", '{"type":{"toString":1}}', fresh, "refuse", { error: { code: "UNKNOWN_TYPE" } }],
    ["an ack that moves forward", '{"type":"ack","seq":11}', fresh, "ack", { seq: 11 }],
    ["an ack that moves forward, with no token left: not rate limited", '{"type":"ack","seq":40}', empty, "ack", { seq: 40 }],
    ["an ack that is not news, with no token left: rate limited", '{"type":"ack","seq":10}', empty, "close", { code: CloseCode.RATE_LIMITED }],
    ["an ack written another way, with no token left: counted", '{ "type": "ack", "seq": 12 }', empty, "close", { code: CloseCode.RATE_LIMITED }],
    ["an ack beyond the channel's head, with no token left: counted", '{"type":"ack","seq":51}', empty, "close", { code: CloseCode.RATE_LIMITED }],
    [
      "an ack from a socket without ack=1, with no token left: counted",
      '{"type":"ack","seq":11}',
      { ...empty, acked: Infinity },
      "close",
      { code: CloseCode.RATE_LIMITED },
    ],
    ["an ack with an expired token", '{"type":"ack","seq":11}', { ...fresh, exp: NOW / 1000 }, "close", { code: CloseCode.TOKEN_EXPIRED }],
    ["an ack with a bad seq", '{"type":"ack","seq":-1}', fresh, "refuse", { error: { code: "BAD_MESSAGE" } }],
  ];
  it.each(cases)("%s → %s", (_name, message, socket, kind, fields) => {
    const { action } = decideMessage(message, socket, NOW, limits);
    expect(action.kind).toBe(kind);
    if (fields) expect(action).toMatchObject(fields as object);
  });

  it("acks that move forward never cost a token", () => {
    let bucket = { tokens: 1, at: NOW };
    for (let seq = 11; seq < 1000; seq++) {
      const r = decideMessage(`{"type":"ack","seq":${seq}}`, { bucket, exp: fresh.exp, acked: seq - 1, head: 1000 }, NOW, limits);
      expect(r.action.kind).toBe("ack");
      bucket = r.bucket;
    }
    expect(bucket.tokens).toBe(1);
  });

  it("takes a token per message that passes the size cap, refilling at the rate", () => {
    let bucket = { tokens: 2, at: NOW };
    const kinds: string[] = [];
    for (const at of [NOW, NOW, NOW, NOW + 100]) {
      const r = decideMessage('{"type":"ping"}', { bucket, exp: fresh.exp, acked: 0, head: 0 }, at, limits);
      bucket = r.bucket;
      kinds.push(r.action.kind);
    }
    expect(kinds).toEqual(["pong", "pong", "close", "pong"]);
    // An oversize message closes before it costs a token.
    const big = decideMessage("x".repeat(100), fresh, NOW, limits);
    expect(big.bucket).toBe(fresh.bucket);
  });
});

describe("refusal", () => {
  const cases: [string, unknown, string][] = [
    ["known type, bad fields", { type: "resume", since: "x" }, "BAD_MESSAGE"],
    ["unknown string type", { type: "launch" }, "UNKNOWN_TYPE"],
    ["object type with a toString that is not a function", { type: { toString: 1 } }, "UNKNOWN_TYPE"],
    ["array type", { type: ["ping"] }, "UNKNOWN_TYPE"],
    ["number type", { type: 5 }, "UNKNOWN_TYPE"],
    ["null type", { type: null }, "UNKNOWN_TYPE"],
    ["no type", {}, "UNKNOWN_TYPE"],
    ["an array", [1, 2], "UNKNOWN_TYPE"],
    ["a string", "ping", "UNKNOWN_TYPE"],
    ["null", null, "UNKNOWN_TYPE"],
    ["inherited type only", Object.create({ type: "ping" }), "UNKNOWN_TYPE"],
  ];
  it.each(cases)("%s → %s", (_name, json, code) => {
    const r = refusal(json);
    expect(r).toMatchObject({ type: "error", code });
    expect(r.message.length).toBeLessThan(200);
  });
});
