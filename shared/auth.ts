/**
 * Client token verification (JWT via jose), shared by the Worker (every
 * connect and read) and the channel object (a `refresh` on an open socket).
 * Minting lives in shared/token.ts.
 */
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from "jose";
// A namespace import lets the bundler keep only what is used (`import { z }` pulls all of zod, locales included: ~450 KB minified).
import * as z from "zod";
import type { Config } from "./worker-config";

/** The claims notifiws reads from a client token. */
export const Claims = z.looseObject({
  sub: z.string().min(1).max(256),
  exp: z.number().int(),
  /** Channel patterns this subject may read (see channelAllowed). Default: none besides `user.<sub>`. */
  channels: z.array(z.string().max(128)).max(256).default([]),
  role: z.string().max(64).optional(),
  /** `false`: this subject may not subscribe to presence (docs/protocol.md, "Presence"); it is still counted. */
  presence: z.boolean().optional(),
  // Other claims are kept: PRESENCE_CLAIMS may show some of them (src/presence-claims.ts).
});
export type Claims = z.infer<typeof Claims>;

/** The configuration verification reads. */
type TokenConfig = Pick<Config, "JWT_SECRET" | "JWT_JWKS_URL" | "JWT_ISSUER" | "JWT_AUDIENCE">;

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
// The HMAC key is imported once per secret: given the secret's bytes, jose
// imports them with crypto.subtle.importKey on every verify, a native call
// and a promise turn on each connect (docs/benchmarks.md, "Connect").
const secretCache = new Map<string, Promise<CryptoKey>>();

function keyFor(config: TokenConfig): { key: Promise<CryptoKey> | JWTVerifyGetKey; algorithms: string[] } {
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
    key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    secretCache.set(secret, key);
  }
  return { key, algorithms: ["HS256"] };
}

/** Verifies signature, exp (required), iss/aud when configured; returns the claims notifiws uses. */
export async function verifyToken(token: string, config: TokenConfig): Promise<Claims> {
  const { key, algorithms } = keyFor(config);
  try {
    const { payload } = await jwtVerify(token, typeof key === "function" ? key : await key, {
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
