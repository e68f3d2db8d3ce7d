/**
 * A connection's token refresh (the `refresh` client message,
 * docs/protocol.md): the new token must be valid, for the same subject, and
 * still allow the channel; the socket's expiry moves to the new token's
 * (earlier or later) and the object's alarm follows it.
 */
import { AuthError, verifyToken } from "../shared/auth";
import { channelAllowed } from "../shared/channels";
import { CloseCode } from "../shared/protocol";
import type { ChannelParts } from "./parts";

export async function refreshSession(ws: WebSocket, token: string, host: ChannelParts): Promise<void> {
  const { sockets, store } = host;
  try {
    const claims = await verifyToken(token, host.config());
    const state = sockets.state(ws);
    if (!state) return;
    if (claims.sub !== state.sub || !channelAllowed(store.channel ?? "", claims.channels, claims.sub)) {
      sockets.close(ws, CloseCode.FORBIDDEN, "refresh token is not valid for this subject or channel");
      return;
    }
    sockets.save(ws, { ...state, exp: claims.exp });
    sockets.send(ws, { type: "refreshed", expiresAt: claims.exp });
    await host.armAlarm(claims.exp * 1000);
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    sockets.close(ws, CloseCode.FORBIDDEN, `refresh rejected: ${err.code}`);
  }
}
