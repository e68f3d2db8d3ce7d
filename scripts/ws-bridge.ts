/**
 * WebSocket-to-TCP bridge for local development: lets the Worker reach the
 * local Postgres through @neondatabase/serverless's WebSocket transport, the
 * way Neon's own proxy does in production (that proxy ships only as a
 * container, which this machine cannot run). It forwards raw Postgres
 * protocol bytes and only to the one allowed address.
 */
import { connect as tcpConnect } from "node:net";
import { WebSocketServer } from "ws";

export interface Bridge {
  port: number;
  /** Connections opened through the bridge so far: one per database session the Worker starts. */
  readonly connections: number;
  close(): Promise<void>;
}

export function startBridge(opts: { port: number; host?: string; allow: string }): Promise<Bridge> {
  const wss = new WebSocketServer({ port: opts.port, host: opts.host ?? "127.0.0.1" });
  let connections = 0;
  wss.on("connection", (ws, req) => {
    connections++;
    const address = new URL(req.url ?? "/", "http://bridge").searchParams.get("address");
    if (address !== opts.allow) {
      ws.close(1008, "address not allowed");
      return;
    }
    const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
    const tcp = tcpConnect({ host, port });
    const pending: Buffer[] = [];
    let connected = false;
    tcp.on("connect", () => {
      connected = true;
      for (const b of pending.splice(0)) tcp.write(b);
    });
    tcp.on("data", (d) => ws.readyState === ws.OPEN && ws.send(d));
    tcp.on("close", () => ws.close());
    tcp.on("error", () => ws.close(1011, "upstream error"));
    ws.on("message", (data) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
      if (connected) tcp.write(buf);
      else pending.push(buf);
    });
    ws.on("close", () => tcp.destroy());
    ws.on("error", () => tcp.destroy());
  });
  return new Promise((resolve, reject) => {
    wss.once("error", reject);
    wss.once("listening", () =>
      resolve({
        port: (wss.address() as { port: number }).port,
        get connections() {
          return connections;
        },
        close: () =>
          new Promise<void>((r) => {
            for (const c of wss.clients) c.terminate();
            wss.close(() => r());
          }),
      }),
    );
  });
}
