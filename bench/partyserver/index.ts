/**
 * The same-platform peer in `npm run bench`: PartyServer with one room per
 * channel (hibernatable sockets, PartyServer's own `broadcast`), fed by the
 * same relay, the same signed batches and the same rows as notifiws.
 *
 * What it leaves out, on purpose, because a minimal PartyServer app would:
 * no per-socket token (anyone may join a room), no sequence numbers, no
 * history, no resume, no storage. Each batch is one frame per room, the shape
 * notifiws sends (`{type:"events",events}`), so the clients parse the same bytes.
 * Ingest keeps the HMAC check (shared/signing.ts) so the relay's path is equal.
 */
import { Server, getServerByName, routePartykitRequest } from "partyserver";
import { IngestBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../../shared/protocol";
import { verify } from "../../shared/signing";

interface PeerEnv extends Cloudflare.Env {
  Rooms: DurableObjectNamespace<BenchRoom>;
  INGEST_SECRETS: string;
}

export class BenchRoom extends Server<PeerEnv> {
  static options = { hibernate: true };

  /** The Worker hands a room its channel's events of one batch, in order. */
  async onRequest(request: Request): Promise<Response> {
    this.broadcast(`{"type":"events","events":${await request.text()}}`);
    return new Response(null, { status: 204 });
  }
}

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

export default {
  async fetch(request: Request, env: PeerEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/health") return json(200, { ok: true });
    if (url.pathname === "/internal/events" && request.method === "POST") {
      const body = await request.text();
      const sig = await verify(env.INGEST_SECRETS.split(","), request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), body);
      if (!sig.ok) return json(401, { error: { code: sig.code, message: sig.message } });
      const parsed = IngestBatch.safeParse(JSON.parse(body));
      if (!parsed.success) return json(400, { error: { code: "INVALID_BATCH", message: "invalid batch" } });
      const byChannel = new Map<string, unknown[]>();
      for (const ev of parsed.data.events) {
        const list = byChannel.get(ev.channel) ?? [];
        list.push(ev);
        byChannel.set(ev.channel, list);
      }
      await Promise.all(
        [...byChannel].map(async ([channel, events]) => {
          const room = await getServerByName(env.Rooms, channel);
          await room.fetch(new Request("https://room/broadcast", { method: "POST", body: JSON.stringify(events) }));
        }),
      );
      return json(200, { batchId: parsed.data.batchId });
    }
    return (await routePartykitRequest(request, env)) ?? json(404, { error: { code: "NOT_FOUND", message: "not found" } });
  },
} satisfies ExportedHandler<PeerEnv>;
