/**
 * Plays the Worker's ingest endpoint for relay tests: a real HTTP server that
 * verifies signatures exactly as the Worker does and records what it accepted.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { IngestBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, type ChangeEvent } from "../../../src/protocol";
import { verify } from "../../../src/signing";

export const RECEIVER_SECRET = "relay-test-secret-0123456789abcdef012345";

export type Behaviour = "ok" | "fail" | "hang";

export class Receiver {
  /** Every accepted event, in arrival order, duplicates included. */
  readonly deliveries: ChangeEvent[] = [];
  readonly rawBodies: string[] = [];
  requests = 0;
  rejectedSignatures = 0;
  behaviour: Behaviour = "ok";
  /** Larger batches are refused with 413, as the Worker does above INGEST_MAX_EVENTS. */
  maxEvents = Infinity;
  /** Event count of every batch accepted. */
  readonly batchSizes: number[] = [];
  private server!: Server;
  private hanging: ServerResponse[] = [];
  url = "";

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    const { port } = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${port}`;
    return this;
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    this.requests++;
    const sig = await verify([RECEIVER_SECRET], req.headers[TIMESTAMP_HEADER] as string, req.headers[SIGNATURE_HEADER] as string, body);
    if (!sig.ok) {
      this.rejectedSignatures++;
      res.writeHead(401).end(JSON.stringify({ error: { code: sig.code, message: sig.message } }));
      return;
    }
    if (this.behaviour === "hang") {
      this.hanging.push(res);
      return;
    }
    if (this.behaviour === "fail") {
      res.writeHead(500).end(JSON.stringify({ error: { code: "INTERNAL", message: "test failure" } }));
      return;
    }
    const batch = IngestBatch.parse(JSON.parse(body));
    if (batch.events.length > this.maxEvents) {
      res.writeHead(413).end(JSON.stringify({ error: { code: "TOO_MANY_EVENTS", message: `at most ${this.maxEvents} events` } }));
      return;
    }
    this.batchSizes.push(batch.events.length);
    this.rawBodies.push(body);
    this.deliveries.push(...batch.events);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ batchId: batch.batchId, accepted: batch.events.length, duplicates: 0, channels: {} }));
  }

  /** Distinct event ids, in first-arrival order. */
  get uniqueIds(): string[] {
    return [...new Set(this.deliveries.map((e) => e.id))];
  }

  forChannel(channel: string): ChangeEvent[] {
    const seen = new Set<string>();
    return this.deliveries.filter((e) => e.channel === channel && !seen.has(e.id) && seen.add(e.id));
  }

  async stop() {
    for (const r of this.hanging) r.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}
