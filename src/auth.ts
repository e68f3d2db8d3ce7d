/**
 * Client authentication (JWT via jose) and token extraction.
 */
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { z } from "zod";
import type { Config } from "./config";
import { BEARER_PROTOCOL_PREFIX } from "../shared/protocol";

/** The claims notifiws reads from a client token. */
export const Claims = z.object({
  sub: z.string().min(1).max(256),
  exp: z.number().int(),
  /** Channel patterns this subject may read (see channelAllowed). Default: none besides `user.<sub>`. */
  channels: z.array(z.string().max(128)).max(256).default([]),
  role: z.string().max(64).optional(),
});
export type Claims = z.infer<typeof Claims>;

export type TokenSource = "subprotocol" | "header" | "query";

/**
 * Finds the token: Sec-WebSocket-Protocol `bearer.<token>` (browsers), then
 * `Authorization: Bearer`, then `?token=` (least safe: URLs end up in logs).
 */
export function extractToken(req: Request): { token: string; source: TokenSource } | undefined {
  const protocols = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
  const fromProtocol = protocols.find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX));
  if (fromProtocol && fromProtocol.length > BEARER_PROTOCOL_PREFIX.length)
    return { token: fromProtocol.slice(BEARER_PROTOCOL_PREFIX.length), source: "subprotocol" };
  const authz = req.headers.get("authorization");
  const m = authz ? /^Bearer\s+(\S+)$/i.exec(authz) : null;
  if (m?.[1]) return { token: m[1], source: "header" };
  const q = new URL(req.url).searchParams.get("token");
  if (q) return { token: q, source: "query" };
  return undefined;
}

export class AuthError extends Error {
  constructor(
    readonly code: "TOKEN_MISSING" | "TOKEN_INVALID" | "TOKEN_EXPIRED",
    message: string,
  ) {
    super(message);
  }
}

// The remote JWKS is cached at module scope, so a warm isolate reuses keys
// across requests; jose refetches on unknown `kid` with its own cooldown.
const jwksCache = new Map<string, JWTVerifyGetKey>();
const secretCache = new Map<string, Uint8Array>();

function keyFor(config: Config): { key: Uint8Array | JWTVerifyGetKey; algorithms: string[] } {
  if (config.JWT_JWKS_URL) {
    let set = jwksCache.get(config.JWT_JWKS_URL);
    if (!set) {
      set = createRemoteJWKSet(new URL(config.JWT_JWKS_URL));
      jwksCache.set(config.JWT_JWKS_URL, set);
    }
    return { key: set, algorithms: ["RS256", "ES256"] };
  }
  const secret = config.JWT_SECRET as string;
  let key = secretCache.get(secret);
  if (!key) {
    key = new TextEncoder().encode(secret);
    secretCache.set(secret, key);
  }
  return { key, algorithms: ["HS256"] };
}

/** Verifies signature, exp (required), iss/aud when configured; returns the claims notifiws uses. */
export async function verifyToken(token: string, config: Config): Promise<Claims> {
  const { key, algorithms } = keyFor(config);
  try {
    const { payload } = await jwtVerify(token, key as Uint8Array, {
      algorithms,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      requiredClaims: ["exp", "sub"],
    });
    const claims = Claims.safeParse(payload);
    if (!claims.success) throw new AuthError("TOKEN_INVALID", "token claims are malformed (sub, exp, channels)");
    return claims.data;
  } catch (err) {
    if (err instanceof AuthError) throw err;
    if (err instanceof joseErrors.JWTExpired) throw new AuthError("TOKEN_EXPIRED", "token has expired");
    if (err instanceof joseErrors.JWTClaimValidationFailed) throw new AuthError("TOKEN_INVALID", `token claim check failed: ${err.claim}`);
    throw new AuthError("TOKEN_INVALID", "token signature or format is invalid");
  }
}
