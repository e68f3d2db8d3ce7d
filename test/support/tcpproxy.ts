/**
 * A TCP proxy on 127.0.0.1 that can play a network partition: `freeze()`
 * stops forwarding in both directions while every socket stays open (no FIN,
 * no RST), exactly what a peer behind a dead link or a paused VM looks like.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class TcpProxy {
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  private frozen = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    this.server = createServer((client) => {
      this.sockets.add(client);
      client.on("close", () => this.sockets.delete(client));
      client.on("error", () => undefined);
      if (this.frozen) {
        client.pause(); // accepted, never answered
        return;
      }
      const upstream = connect(this.target.port, this.target.host);
      this.sockets.add(upstream);
      upstream.on("close", () => this.sockets.delete(upstream));
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      const forward = (from: Socket, to: Socket) =>
        from.on("data", (d) => {
          if (!this.frozen) to.write(d); // frozen: bytes vanish, as on a dead link
        });
      forward(client, upstream);
      forward(upstream, client);
      client.on("end", () => !this.frozen && upstream.end());
      upstream.on("end", () => !this.frozen && client.end());
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  /** Rewrites a postgres:// URL to go through this proxy. */
  url(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  freeze(): void {
    this.frozen = true;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}
