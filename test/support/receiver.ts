/**
 * Plays the Worker's ingest endpoint for relay tests: a real HTTP server that
 * verifies signatures exactly as the Worker does and records what it accepted.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { IngestBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, type ChangeEvent } from "../../shared/protocol";
import { verify } from "../../shared/signing";
import { storedEventBytes } from "../../shared/limits";

export const RECEIVER_SECRET = "relay-test-secret-0123456789abcdef012345";

/**
 * ok: store and answer 200; fail: 500; hang: never answer (the body is still recorded);
 * lose-ack: store, then cut the connection without answering (a lost acknowledgement);
 * refuse: answer `refusal` (a permanent 4xx).
 */
export type Behaviour = "ok" | "fail" | "hang" | "lose-ack" | "refuse";

export class Receiver {
  /** Every accepted event, in arrival order, duplicates included. */
  readonly deliveries: ChangeEvent[] = [];
  /** Channels of every accepted gap marker (a lost replication slot), in arrival order. */
  readonly gaps: string[] = [];
  readonly rawBodies: string[] = [];
  requests = 0;
  /** Batches stored whose answer was cut off (behaviour "lose-ack"). */
  lostAcks = 0;
  rejectedSignatures = 0;
  behaviour: Behaviour = "ok";
  /** Larger batches are refused with 413, as the Worker does above INGEST_MAX_EVENTS. */
  maxEvents = Infinity;
  /** Event count of every batch accepted. */
  readonly batchSizes: number[] = [];
  /** Bodies of requests that were left hanging. */
  readonly hungBodies: string[] = [];
  /** Bodies over this many bytes are refused with 413 BATCH_TOO_LARGE (no ids), as the Worker's INGEST_MAX_BYTES. */
  maxBodyBytes = Infinity;
  /** Events over this many bytes (as the Worker measures them) are refused with 413 EVENT_TOO_LARGE. */
  maxEventBytes = Infinity;
  /** Channels whose events are not stored: 503 CHANNEL_UNAVAILABLE naming them, the rest stored. */
  readonly failChannels = new Set<string>();
  /** Answer for behaviour "refuse". */
  refusal: { status: number; body: unknown } = { status: 400, body: { error: { code: "INVALID_BATCH", message: "refused by the test" } } };
  /** Batch ids stored, for 409 BATCH_REPLAYED, as the Worker's batch ledger does. */
  private readonly storedBatches = new Set<string>();
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
      this.hungBodies.push(body);
      this.hanging.push(res);
      return;
    }
    if (this.behaviour === "fail") {
      res.writeHead(500).end(JSON.stringify({ error: { code: "INTERNAL", message: "test failure" } }));
      return;
    }
    if (this.behaviour === "refuse") {
      res.writeHead(this.refusal.status, { "content-type": "application/json" }).end(JSON.stringify(this.refusal.body));
      return;
    }
    if (Buffer.byteLength(body) > this.maxBodyBytes) {
      res.writeHead(413, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "BATCH_TOO_LARGE", message: "body too large" } }));
      return;
    }
    const batch = IngestBatch.parse(JSON.parse(body));
    const json = (status: number, value: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
    if (this.storedBatches.has(batch.batchId)) {
      json(409, { error: { code: "BATCH_REPLAYED", message: `batch ${batch.batchId} was already applied` } });
      return;
    }
    if (batch.events.length > this.maxEvents) {
      json(413, { error: { code: "TOO_MANY_EVENTS", message: `at most ${this.maxEvents} events` } });
      return;
    }
    const tooLarge = batch.events.filter((e) => storedEventBytes(e) > this.maxEventBytes).map((e) => e.id);
    if (tooLarge.length > 0) {
      json(413, { error: { code: "EVENT_TOO_LARGE", message: "too large", eventIds: tooLarge } });
      return;
    }
    const stored = batch.events.filter((e) => !this.failChannels.has(e.channel));
    this.batchSizes.push(stored.length);
    this.rawBodies.push(body);
    this.deliveries.push(...stored);
    this.gaps.push(...(batch.gaps ?? []).filter((c) => !this.failChannels.has(c)));
    const failed = [...new Set([...batch.events.map((e) => e.channel), ...(batch.gaps ?? [])].filter((c) => this.failChannels.has(c)))];
    if (failed.length > 0) {
      json(503, { error: { code: "CHANNEL_UNAVAILABLE", message: "test failure", failedChannels: failed, channels: {} } });
      return;
    }
    this.storedBatches.add(batch.batchId);
    if (this.behaviour === "lose-ack") {
      this.lostAcks++;
      res.socket?.destroy();
      return;
    }
    json(200, { batchId: batch.batchId, accepted: batch.events.length, duplicates: 0, channels: {} });
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
