/**
 * What to do with one message from a client: a pure function of the frame,
 * the socket's rate-limit bucket and token expiry, and the limits, so every
 * rule is table-tested (test/node/client-message.test.ts) and the runtime
 * hook only acts on the answer. In order: the size cap (close 1009; the
 * platform takes frames up to 32 MiB, we read far less), the rate limit
 * (close 4008), token expiry (close 4001), then the message itself; a bad
 * message gets an error frame and the connection stays open. An `ack` that
 * moves the socket's acknowledged seq forward is not counted against the
 * rate limit (flow control must never close a healthy client: the SDK acks
 * only news, at most a few times a second while events arrive); any other
 * ack is counted like every other message.
 */
import { ClientMessage, CloseCode, type ServerMessage } from "../shared/protocol";
import { utf8Length } from "../shared/limits";
import { parseJsonExact } from "../shared/exact-json";
import { take, type Bucket } from "./ratelimit";

export interface MessageLimits {
  maxBytes: number;
  ratePerSec: number;
  burst: number;
}

export type MessageAction =
  | { kind: "close"; code: number; reason: string }
  | { kind: "refuse"; error: Extract<ServerMessage, { type: "error" }> }
  | { kind: "pong" }
  | { kind: "resume"; since: number }
  | { kind: "refresh"; token: string }
  | { kind: "ack"; seq: number }
  /** Presence metadata, as exact JSON text (presence.ts checks it). */
  | { kind: "presence"; metaJson: string };

const KNOWN_TYPES: readonly string[] = ["ping", "resume", "refresh", "ack", "presence"];

/**
 * An ack that moves `acked` forward without passing `head` (nothing beyond
 * the channel's head was sent, so a client cannot mint exempt acks), or
 * undefined. A cheap prefix test first: acks are the frequent message.
 */
function freshAck(message: string, acked: number, head: number): number | undefined {
  if (!message.startsWith('{"type":"ack"')) return undefined;
  try {
    const parsed = ClientMessage.safeParse(JSON.parse(message));
    return parsed.success && parsed.data.type === "ack" && parsed.data.seq > acked && parsed.data.seq <= head ? parsed.data.seq : undefined;
  } catch {
    return undefined;
  }
}

/** The action, and the socket's bucket after this message (store it when it changed). */
export function decideMessage(
  message: string | ArrayBuffer,
  /** `acked`: the socket's acknowledged seq (Infinity without `ack=1`); `head`: the channel's head seq. */
  socket: { bucket: Bucket; exp: number; acked: number; head: number },
  now: number,
  limits: MessageLimits,
): { bucket: Bucket; action: MessageAction } {
  const size = typeof message === "string" ? utf8Length(message) : message.byteLength;
  if (size > limits.maxBytes)
    return { bucket: socket.bucket, action: { kind: "close", code: CloseCode.MESSAGE_TOO_BIG, reason: `message exceeds ${limits.maxBytes} bytes` } };
  const ack = typeof message === "string" ? freshAck(message, socket.acked, socket.head) : undefined;
  if (ack !== undefined && socket.exp * 1000 > now) return { bucket: socket.bucket, action: { kind: "ack", seq: ack } };
  const { allowed, bucket } = take(socket.bucket, now, limits.ratePerSec, limits.burst);
  if (!allowed) return { bucket, action: { kind: "close", code: CloseCode.RATE_LIMITED, reason: `more than ${limits.ratePerSec} messages/s` } };
  if (socket.exp * 1000 <= now) return { bucket, action: { kind: "close", code: CloseCode.TOKEN_EXPIRED, reason: "token expired" } };
  if (typeof message !== "string") return { bucket, action: refuse("BAD_MESSAGE", "binary frames are not supported") };
  let json: unknown;
  try {
    json = JSON.parse(message);
  } catch {
    return { bucket, action: refuse("BAD_JSON", "message is not valid JSON") };
  }
  const parsed = ClientMessage.safeParse(json);
  if (!parsed.success) return { bucket, action: { kind: "refuse", error: refusal(json) } };
  const msg = parsed.data;
  switch (msg.type) {
    case "ping":
      return { bucket, action: { kind: "pong" } };
    case "resume":
      return { bucket, action: { kind: "resume", since: msg.since } };
    case "refresh":
      return { bucket, action: { kind: "refresh", token: msg.token } };
    case "ack":
      return { bucket, action: { kind: "ack", seq: msg.seq } };
    case "presence":
      // Parsed again, exactly: a number in the metadata goes out as the client wrote it.
      return { bucket, action: { kind: "presence", metaJson: JSON.stringify((parseJsonExact(message, "raw") as { meta: unknown }).meta) } };
  }
}

const refuse = (code: "BAD_JSON" | "BAD_MESSAGE", message: string): MessageAction => ({ kind: "refuse", error: { type: "error", code, message } });

/**
 * The error frame for JSON that is not a valid ClientMessage: BAD_MESSAGE for
 * a known type with bad fields, UNKNOWN_TYPE for anything else, including a
 * `type` that is not a string (an object whose toString is not a function, an
 * array, null, a number). Never throws, whatever the client sent.
 */
export function refusal(json: unknown): Extract<ServerMessage, { type: "error" }> {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    return {
      type: "error",
      code: "UNKNOWN_TYPE",
      message: `a message is a JSON object with a string "type" (one of ${KNOWN_TYPES.join(", ")}); got ${kindOf(json)}`,
    };
  const type = typeof json === "object" && json !== null && !Array.isArray(json) && Object.hasOwn(json, "type") ? (json as { type: unknown }).type : undefined;
  if (typeof type === "string" && KNOWN_TYPES.includes(type)) return { type: "error", code: "BAD_MESSAGE", message: `invalid ${type} message` };
  return { type: "error", code: "UNKNOWN_TYPE", message: `unknown message type ${describe(type)}; expected one of ${KNOWN_TYPES.join(", ")}` };
}

function describe(type: unknown): string {
  if (type === undefined) return "(none)";
  if (typeof type === "string") return JSON.stringify(type.slice(0, 40));
  if (type === null) return "null";
  return `(${kindOf(type)}, not a string)`;
}

const kindOf = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "an array" : `a ${typeof v}`);
