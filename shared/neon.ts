/**
 * How the Worker reaches Postgres with @neondatabase/serverless: Neon's
 * endpoint in production; locally, NEON_WS_PROXY names a plain
 * WebSocket-to-TCP bridge (scripts/ws-bridge.ts) in front of a local
 * Postgres, the way Neon's own proxy works (that proxy ships only as a
 * container). The driver's settings are global to the isolate, so both
 * users (the rows route's reader and the demo's state route) set them here.
 */
import type { neonConfig as NeonConfig } from "@neondatabase/serverless";

export function useProxy(config: typeof NeonConfig, proxy: string | undefined): void {
  if (!proxy) return;
  config.wsProxy = (host, port) => `${proxy}?address=${host}:${port}`;
  config.useSecureWebSocket = false;
  config.pipelineTLS = false;
  config.pipelineConnect = false;
}
