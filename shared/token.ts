/**
 * Client tokens (HS256 JWTs with the `channels` claim the Worker checks), on
 * jose. For app backends, the CLI, the local stack and the tests alike.
 */
import { SignJWT } from "jose";

export interface MintTokenOptions {
  /** The Worker's JWT_SECRET (at least 32 characters). */
  secret: string;
  /** The user; `user.<sub>` is always allowed to them. */
  sub: string;
  /** Channel patterns: `sales`, `inventory.*`, `*`. */
  channels: string[];
  role?: string;
  /** Lifetime in seconds (negative: already expired, for tests). Default 3600. */
  ttlSeconds?: number;
  issuer?: string;
  audience?: string;
  /**
   * More claims, for example `name` to show in presence (PRESENCE_CLAIMS) or `presence: false`
   * (docs/protocol.md, "Presence"). sub, exp, iat and channels are set by the options above.
   */
  claims?: Record<string, unknown>;
}

export async function mintToken(o: MintTokenOptions): Promise<string> {
  if (o.secret.length < 32) throw new Error("mintToken: the secret must be at least 32 characters (the Worker refuses shorter ones)");
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ ...o.claims, channels: o.channels, ...(o.role ? { role: o.role } : {}) })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(o.sub)
    .setIssuedAt(now)
    .setExpirationTime(now + (o.ttlSeconds ?? 3600));
  if (o.issuer) jwt.setIssuer(o.issuer);
  if (o.audience) jwt.setAudience(o.audience);
  return jwt.sign(new TextEncoder().encode(o.secret));
}
