/** A real WebSocket client (the `ws` package) that records frames and waits on conditions. */
import WebSocket from "ws";
import { waitUntil } from "./wait";
import { ServerMessage, type Envelope } from "../../shared/protocol";

export class WsClient {
  readonly messages: ServerMessage[] = [];
  readonly raw: string[] = [];
  closed: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const text = data.toString();
      this.raw.push(text);
      this.messages.push(ServerMessage.parse(JSON.parse(text)));
    });
    ws.on("close", (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  static connect(baseUrl: string, channel: string, token: string, opts: { since?: number; filter?: unknown; presence?: boolean } = {}): Promise<WsClient> {
    const url = new URL(`/ws/${channel}`, baseUrl.replace(/^http/, "ws"));
    if (opts.since !== undefined) url.searchParams.set("since", String(opts.since));
    if (opts.filter !== undefined) url.searchParams.set("filter", JSON.stringify(opts.filter));
    if (opts.presence) url.searchParams.set("presence", "1");
    const ws = new WebSocket(url, ["notifiws.v1", `bearer.${token}`]);
    const client = new WsClient(ws);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no welcome from ${url.pathname} within 10s`)), 10_000);
      ws.once("unexpected-response", (_req, res) => {
        clearTimeout(t);
        let body = "";
        res.on("data", (d: Buffer) => (body += d));
        res.on("end", () => reject(Object.assign(new Error(`refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })));
      });
      ws.once("error", (err) => {
        clearTimeout(t);
        reject(err);
      });
      const onMessage = () => {
        if (client.messages[0]?.type === "welcome") {
          clearTimeout(t);
          ws.off("message", onMessage);
          resolve(client);
        }
      };
      ws.on("message", onMessage);
    });
  }

  get events(): Envelope[] {
    return this.messages.flatMap((m) => (m.type === "events" ? m.events : []));
  }

  get lastSeq(): number {
    const evs = this.events;
    return evs.length ? evs[evs.length - 1]!.seq : ((this.messages[0] as { headSeq?: number } | undefined)?.headSeq ?? 0);
  }

  waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
    return waitUntil(what, check, timeoutMs, 10, () => `have ${this.events.length} events, closed=${JSON.stringify(this.closed)}`);
  }

  close(): void {
    this.ws.close(1000);
  }

  terminate(): void {
    this.ws.terminate();
  }
}
