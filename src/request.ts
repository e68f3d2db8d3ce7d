/** Request helpers shared by the routes: client authentication and JSON bodies, as ApiErrors. */
import { extractToken } from "./auth";
import { AuthError, verifyToken, type Claims } from "../shared/auth";
import type { Config } from "../shared/worker-config";
import { ApiError } from "./errors";
import type { HttpErrorCode } from "../shared/protocol";
import { parseJsonExact, type ExactMode } from "../shared/exact-json";

/** Finds and verifies the client token; 401 with a stable code otherwise. */
export async function authenticate(req: Request, config: Config): Promise<Claims> {
  const found = extractToken(req);
  if (!found) throw new ApiError("TOKEN_MISSING", "send a token as subprotocol bearer.<jwt>, Authorization: Bearer, or ?token=");
  try {
    return await verifyToken(found.token, config);
  } catch (err) {
    if (err instanceof AuthError) throw new ApiError(err.code, err.message);
    throw err;
  }
}

/**
 * Parses JSON without rounding a number (shared/exact-json.ts; "raw" by
 * default: numbers travel on as written), or answers 400 with `code`
 * (default BAD_JSON); `what` names the input in the message.
 */
export function parseJson(text: string, code: HttpErrorCode = "BAD_JSON", what = "body", mode: ExactMode = "raw"): unknown {
  try {
    return parseJsonExact(text, mode);
  } catch {
    throw new ApiError(code, `${what} is not valid JSON`);
  }
}
