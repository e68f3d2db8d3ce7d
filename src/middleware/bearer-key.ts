/**
 * `Authorization: Bearer <key>` checked against configured keys with Hono's
 * timing-safe compare, for the admin token and the publish API keys. Sets
 * `keyIndex` to the key that matched.
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { timingSafeEqual } from "hono/utils/buffer";
import { ApiError } from "../errors";
import { bearerCredential } from "../auth";
import type { AppEnv } from "../env";
import type { HttpErrorCode } from "../../shared/protocol";

export interface BearerKeyOptions {
  /** What the key is, for messages ("admin token", "publish API key"). */
  what: string;
  missingCode: HttpErrorCode;
  invalidCode: HttpErrorCode;
  /** The configured keys; throw an ApiError when the feature is off. */
  keys: (c: Context<AppEnv>) => readonly string[];
  /** Keys are configured as lowercase hex SHA-256 of the secret (so the Worker never stores it). */
  hashed?: boolean;
}

export function bearerKey(options: BearerKeyOptions) {
  if (!options.what) throw new Error("bearerKey: `what` is required");
  return createMiddleware<AppEnv>(async (c, next) => {
    const credential = bearerCredential(c.req.header("authorization"));
    if (!credential) throw new ApiError(options.missingCode, `send the ${options.what} as Authorization: Bearer <key>`);
    const keys = options.keys(c);
    const presented = options.hashed ? await sha256Hex(credential) : credential;
    let found = -1;
    // Every key is compared, so the time taken does not depend on which one matched.
    for (const [i, key] of keys.entries()) if ((await timingSafeEqual(presented, key)) && found < 0) found = i;
    if (found < 0) throw new ApiError(options.invalidCode, `${options.what} is not valid`);
    c.set("keyIndex", found);
    await next();
  });
}

async function sha256Hex(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}
