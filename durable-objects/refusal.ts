/**
 * The error frame for a client message that parsed as JSON but is not a
 * valid ClientMessage: BAD_MESSAGE for a known type with bad fields,
 * UNKNOWN_TYPE for anything else, including a `type` that is not a string
 * (an object whose toString is not a function, an array, null, a number).
 * A pure function: it never throws, whatever the client sent.
 */
import type { ServerMessage } from "../shared/protocol";

const KNOWN_TYPES: readonly string[] = ["ping", "resume", "refresh"];

export function refusal(json: unknown): Extract<ServerMessage, { type: "error" }> {
  const type = typeof json === "object" && json !== null && !Array.isArray(json) && Object.hasOwn(json, "type") ? (json as { type: unknown }).type : undefined;
  if (typeof type === "string" && KNOWN_TYPES.includes(type)) return { type: "error", code: "BAD_MESSAGE", message: `invalid ${type} message` };
  return { type: "error", code: "UNKNOWN_TYPE", message: `unknown message type ${describe(type)}; expected one of ${KNOWN_TYPES.join(", ")}` };
}

function describe(type: unknown): string {
  if (type === undefined) return "(none)";
  if (typeof type === "string") return JSON.stringify(type.slice(0, 40));
  if (type === null) return "null";
  return `(a ${Array.isArray(type) ? "array" : typeof type}, not a string)`;
}
