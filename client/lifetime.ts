/**
 * A connection's token lifetime (docs/protocol.md, "Writing a client"):
 * `refreshBeforeSeconds` before `expiresAt` a fresher token (from getToken)
 * is sent as `refresh`; and 1 s after `expiresAt`, if no `refreshed` moved
 * it, the connection is ended here. The server closes it with 4001 at
 * `expiresAt`, but the runtime may keep the TCP connection of a socket the
 * server closed open for about 10 s more (docs/protocol.md, "Close codes"),
 * and a WebSocket's `close` event waits for it.
 */
import { SdkErrorCode } from "./errors";
import { tokenExpiry } from "./token-expiry";
import type { SubscriptionError } from "./types";

export interface LifetimeHooks {
  later: (ms: number, fn: () => void) => void;
  /** Still the same connection, with the same expiry. */
  current: () => boolean;
  /** A fresher token, when the subscription can get one. */
  nextToken: (() => Promise<string>) | undefined;
  send: (frame: string) => void;
  /** Ends the connection as an expired one (close code 4001). */
  expire: () => void;
  report: (err: SubscriptionError) => void;
  refreshBeforeSeconds: number;
}

/** Plans the refresh and the end of a connection whose token expires at `expiresAt` (epoch seconds). */
export function planLifetime(expiresAt: number, h: LifetimeHooks, now = Date.now()): void {
  // A server whose clock is behind ours may welcome a token our clock calls expired: its own 4001 will come.
  if (expiresAt * 1000 > now) h.later(expiresAt * 1000 - now + 1000, () => h.current() && h.expire());
  const nextToken = h.nextToken;
  if (!nextToken) return;
  h.later(Math.max(0, (expiresAt - h.refreshBeforeSeconds) * 1000 - now), async () => {
    if (!h.current()) return;
    try {
      const fresh = await nextToken();
      const exp = tokenExpiry(fresh);
      if (exp !== undefined && exp <= expiresAt) return; // not newer; try again at reconnect
      h.send(JSON.stringify({ type: "refresh", token: fresh }));
    } catch (err) {
      h.report({ code: SdkErrorCode.TOKEN_UNAVAILABLE, message: (err as Error).message, permanent: false });
    }
  });
}
