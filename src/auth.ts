/**
 * Where the Worker finds credentials in a request: the client token
 * (subprotocol, Authorization or ?token=) and bearer keys. Verification is
 * shared/auth.ts.
 */
import { BEARER_PROTOCOL_PREFIX } from "../shared/protocol";

export type TokenSource = "subprotocol" | "header" | "query";

/** The protocols a client offered in Sec-WebSocket-Protocol, in order. */
export const offeredProtocols = (header: string | null | undefined): string[] =>
  (header ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** The credential in `Authorization: Bearer <credential>`, or undefined. */
export function bearerCredential(header: string | null | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
}

/**
 * Finds the token: Sec-WebSocket-Protocol `bearer.<token>` (browsers), then
 * `Authorization: Bearer`, then `?token=` (least safe: URLs end up in logs).
 */
export function extractToken(req: Request): { token: string; source: TokenSource } | undefined {
  const fromProtocol = offeredProtocols(req.headers.get("sec-websocket-protocol")).find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX));
  if (fromProtocol && fromProtocol.length > BEARER_PROTOCOL_PREFIX.length)
    return { token: fromProtocol.slice(BEARER_PROTOCOL_PREFIX.length), source: "subprotocol" };
  const fromHeader = bearerCredential(req.headers.get("authorization"));
  if (fromHeader) return { token: fromHeader, source: "header" };
  const q = new URL(req.url).searchParams.get("token");
  if (q) return { token: q, source: "query" };
  return undefined;
}
