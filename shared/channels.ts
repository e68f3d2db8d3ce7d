/**
 * Channel authorization rules. A token's `channels` claim lists patterns:
 * - `*` matches every channel;
 * - `inventory.*` matches `inventory.alerts`, `inventory.eu.low` (not `inventory` itself);
 * - anything else matches exactly.
 * `user.<sub>` is always allowed to its own subject, so per-user notification
 * channels need no claim.
 */
export function channelAllowed(channel: string, patterns: readonly string[], sub: string | undefined): boolean {
  if (sub !== undefined && channel === `user.${sub}`) return true;
  for (const p of patterns) {
    if (p === "*" || p === channel) return true;
    if (p.endsWith(".*") && channel.startsWith(p.slice(0, -1))) return true;
  }
  return false;
}
