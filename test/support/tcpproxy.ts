/**
 * A TCP proxy on 127.0.0.1 that can play a dead network path: frozen
 * connections stop forwarding in both directions while every socket stays
 * open (no FIN, no RST), exactly what a peer behind a dead link or a paused
 * VM looks like.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class TcpProxy {
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  private readonly links: { frozen: boolean }[] = [];
  /** New connections are accepted and never answered (a partition). */
  private partitioned = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    this.server = createServer((client) => {
      this.track(client);
      if (this.partitioned) {
        client.pause(); // accepted, never answered
        return;
      }
      const upstream = connect(this.target.port, this.target.host);
      this.track(upstream);
      const link = { frozen: false };
      this.links.push(link);
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      const forward = (from: Socket, to: Socket) =>
        from.on("data", (d) => {
          if (!link.frozen) to.write(d); // frozen: bytes vanish, as on a dead link
        });
      forward(client, upstream);
      forward(upstream, client);
      client.on("end", () => !link.frozen && upstream.end());
      upstream.on("end", () => !link.frozen && client.end());
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => undefined);
  }

  /** Rewrites a URL (postgres://, http://) to go through this proxy. */
  url(target: string): string {
    const u = new URL(target);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  /** Existing connections go silent; new ones still work (a half-open connection, then a good reconnect). */
  freezeExisting(): void {
    for (const link of this.links) link.frozen = true;
  }

  /** Everything goes silent, new connections too (a partition). */
  freeze(): void {
    this.partitioned = true;
    this.freezeExisting();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}
