/**
 * Which of a token's claims a presence member shows (docs/protocol.md,
 * "Presence"): `sub` always, `role` and other claims only when
 * PRESENCE_CLAIMS names them. Only strings (at most 128 bytes), numbers and
 * booleans are shown; anything else is left out rather than refused, so a
 * token's shape never blocks a connection.
 */
import type { Claims } from "../shared/auth";
import { utf8Length } from "../shared/limits";

export const MAX_CLAIM_VALUE_BYTES = 128;

export function shownClaims(claims: Claims, names: readonly string[]): { role?: string; claims?: Record<string, string | number | boolean> } {
  const out: Record<string, string | number | boolean> = {};
  let role: string | undefined;
  for (const name of names) {
    const v = (claims as Record<string, unknown>)[name];
    if (typeof v === "string" ? utf8Length(v) > MAX_CLAIM_VALUE_BYTES : typeof v !== "number" && typeof v !== "boolean") continue;
    if (name === "role") role = v as string;
    else out[name] = v as string | number | boolean;
  }
  return { ...(role !== undefined ? { role } : {}), ...(Object.keys(out).length > 0 ? { claims: out } : {}) };
}
