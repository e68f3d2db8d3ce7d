import { exports } from "cloudflare:workers";
import { mintToken } from "../../shared/token";
import { waitUntil } from "./wait";
import { ServerMessage, type ChangeEvent, type Envelope, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../../shared/protocol";
import { sign } from "../../shared/signing";
import { TEST_BINDINGS } from "./bindings";

export const BASE = "https://notifiws.test";
export const INGEST_SECRET = TEST_BINDINGS.INGEST_SECRETS.split(",")[0]!;
export const OLD_INGEST_SECRET = TEST_BINDINGS.INGEST_SECRETS.split(",")[1]!;

export function fetchWorker(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(new Request(BASE + path, init));
}

let uniq = 0;
/** A channel name unique to this test run, so tests never share state. */
export function freshChannel(prefix = "t"): string {
  return `${prefix}.${Date.now().toString(36)}${(uniq++).toString(36)}`;
}

export function token(
  claims: { sub?: string; channels?: string[]; expSeconds?: number; secret?: string; role?: string; extra?: Record<string, unknown> } = {},
): Promise<string> {
  return mintToken({
    claims: claims.extra,
    secret: claims.secret ?? TEST_BINDINGS.JWT_SECRET,
    sub: claims.sub ?? "user-1",
    channels: claims.channels ?? ["*"],
    role: claims.role,
    ttlSeconds: claims.expSeconds ?? 3600,
  });
}

export function event(channel: string, n: number, extra: Partial<ChangeEvent> = {}): ChangeEvent {
  return { id: `${channel}-${n}`, channel, op: "insert", table: "public.ventas", data: { n }, committedAt: Date.now(), ...extra };
}

export async function ingest(
  events: ChangeEvent[],
  opts: { batchId?: string; secret?: string; timestamp?: number; body?: string; gaps?: string[] } = {},
): Promise<Response> {
  const body = opts.body ?? JSON.stringify({ batchId: opts.batchId ?? crypto.randomUUID(), events, ...(opts.gaps ? { gaps: opts.gaps } : {}) });
  const ts = opts.timestamp ?? Math.floor(Date.now() / 1000);
  return fetchWorker("/internal/events", {
    method: "POST",
    headers: { "content-type": "application/json", [TIMESTAMP_HEADER]: String(ts), [SIGNATURE_HEADER]: await sign(opts.secret ?? INGEST_SECRET, ts, body) },
    body,
  });
}

/** A connected test client that records every frame and can wait for one. */
export class Client {
  readonly messages: ServerMessage[] = [];
  /** Every frame as received, for size checks. */
  readonly raw: string[] = [];
  closed: { code: number; reason: string } | undefined;

  constructor(
    readonly ws: WebSocket,
    readonly response: Response,
  ) {
    ws.addEventListener("message", (e) => {
      this.raw.push(e.data as string);
      this.messages.push(ServerMessage.parse(JSON.parse(e.data as string)));
    });
    ws.addEventListener("close", (e) => {
      this.closed = { code: e.code, reason: e.reason };
    });
  }

  /** Every event received so far, in arrival order. */
  get events(): Envelope[] {
    return this.messages.flatMap((m) => (m.type === "events" ? m.events : []));
  }

  waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
    return waitUntil(what, check, timeoutMs, 5, () => `got ${JSON.stringify(this.messages).slice(0, 500)} closed=${JSON.stringify(this.closed)}`);
  }

  waitForEvents(n: number, timeoutMs?: number): Promise<Envelope[]> {
    return this.waitFor(`${n} events`, () => (this.events.length >= n ? this.events : undefined), timeoutMs);
  }

  waitForClose(timeoutMs?: number): Promise<{ code: number; reason: string }> {
    return this.waitFor("the socket to close", () => this.closed, timeoutMs);
  }

  waitForType<K extends ServerMessage["type"]>(type: K, timeoutMs?: number): Promise<Extract<ServerMessage, { type: K }>> {
    return this.waitFor(`a ${type} message`, () => this.messages.find((m) => m.type === type) as Extract<ServerMessage, { type: K }> | undefined, timeoutMs);
  }

  send(data: string) {
    this.ws.send(data);
  }
  close() {
    try {
      this.ws.close(1000, "done");
    } catch {
      /* already closed */
    }
  }
}

export async function connect(
  channel: string,
  opts: {
    token?: string | null;
    since?: number;
    filter?: unknown;
    via?: "protocol" | "header" | "query";
    origin?: string;
    continent?: string;
    ack?: boolean;
    presence?: boolean;
  } = {},
): Promise<Client> {
  const t = opts.token === undefined ? await token() : opts.token;
  const params = new URLSearchParams();
  if (opts.ack) params.set("ack", "1");
  if (opts.presence) params.set("presence", "1");
  if (opts.since !== undefined) params.set("since", String(opts.since));
  if (opts.filter !== undefined) params.set("filter", JSON.stringify(opts.filter));
  const headers: Record<string, string> = { upgrade: "websocket" };
  if (opts.origin) headers.origin = opts.origin;
  const via = opts.via ?? "protocol";
  if (t !== null) {
    if (via === "protocol") headers["sec-websocket-protocol"] = `notifiws.v1, bearer.${t}`;
    else if (via === "header") headers.authorization = `Bearer ${t}`;
    else params.set("token", t);
  }
  const qs = params.toString();
  const res = await fetchWorker(`/ws/${channel}${qs ? `?${qs}` : ""}`, { headers, ...(opts.continent ? { cf: { continent: opts.continent } } : {}) });
  if (res.status !== 101 || !res.webSocket) throw new Error(`upgrade refused: ${res.status} ${await res.text()}`);
  res.webSocket.accept();
  const client = new Client(res.webSocket, res);
  await client.waitForType("welcome");
  return client;
}

export const seqs = (events: Envelope[]) => events.map((e) => e.seq);
export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
