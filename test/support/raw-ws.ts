/**
 * A WebSocket client written from RFC 6455 on a bare TCP socket, for the
 * conformance suite: it sees exactly what crosses the wire (each frame,
 * the close frame and when it arrived, when the TCP connection ended),
 * which a WebSocket library hides (its `close` event waits for the TCP end).
 * Text and close frames only, no extensions (it offers none), client frames
 * masked as the RFC requires.
 */
import { createHash, randomBytes } from "node:crypto";
import { connect as tcpConnect, type Socket } from "node:net";
import { waitUntil } from "./wait";

export interface RawFrame {
  at: number;
  text: string;
  json: { type: string; [k: string]: unknown };
}

export class RawWs {
  readonly frames: RawFrame[] = [];
  /** The server's close frame, when it arrived. */
  closeFrame: { code: number; reason: string; at: number } | undefined;
  /** When the TCP connection ended (the server closed it, or it broke). */
  tcpEndAt: number | undefined;
  private buf = Buffer.alloc(0);

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    sock.on("close", () => (this.tcpEndAt ??= Date.now()));
    sock.on("error", () => undefined);
  }

  /** Opens `path` on `base` (http://host:port) with the upgrade; resolves with the client, or rejects with the HTTP status and body. */
  static open(base: string, path: string, headers: Record<string, string> = {}): Promise<RawWs> {
    const url = new URL(base);
    const key = randomBytes(16).toString("base64");
    const sock = tcpConnect(Number(url.port), url.hostname);
    const request = [
      `GET ${path} HTTP/1.1`,
      `Host: ${url.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ].join("\r\n");
    return new Promise((resolve, reject) => {
      let head = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const text = head.subarray(0, end).toString();
        const status = Number(text.split(" ")[1]);
        if (status !== 101) {
          // The body follows: Content-Length bytes (Workers answer errors with a length).
          const length = Number(/content-length:\s*(\d+)/i.exec(text)?.[1] ?? NaN);
          if (!(head.length >= end + 4 + length)) return;
          sock.destroy();
          return reject(Object.assign(new Error(`refused: ${status}`), { status, body: head.subarray(end + 4, end + 4 + length).toString(), head: text }));
        }
        sock.off("data", onData);
        const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
        if (!text.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) return reject(new Error("bad Sec-WebSocket-Accept"));
        const ws = new RawWs(sock);
        Object.assign(ws, { responseHead: text });
        const rest = head.subarray(end + 4);
        if (rest.length > 0) sock.emit("data", rest);
        resolve(ws);
      };
      sock.on("data", onData);
      sock.once("error", reject);
      sock.write(request);
    });
  }

  /** The upgrade response's head (status line and headers). */
  readonly responseHead = "";

  private parse(): void {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const opcode = b[0]! & 0x0f;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const payload = b.subarray(off, off + len);
      this.buf = b.subarray(off + len);
      const at = Date.now();
      if (opcode === 0x1) {
        const text = payload.toString("utf8");
        this.frames.push({ at, text, json: JSON.parse(text) as RawFrame["json"] });
      } else if (opcode === 0x8) {
        this.closeFrame ??= { code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005, reason: payload.subarray(2).toString("utf8"), at };
        this.sendFrame(0x8, payload.subarray(0, 2)); // the close reply
      }
    }
  }

  private sendFrame(opcode: number, payload: Buffer): void {
    if (this.sock.destroyed) return;
    const mask = randomBytes(4);
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : Buffer.alloc(4);
    if (len >= 126) {
      if (len > 0xffff) throw new Error("frames over 64 KiB are not needed here");
      head[0] = 0x80 | opcode;
      head[1] = 0x80 | 126;
      head.writeUInt16BE(len, 2);
    }
    const masked = Buffer.from(payload.map((x, i) => x ^ mask[i % 4]!));
    this.sock.write(Buffer.concat([head, mask, masked]));
  }

  send(text: string): void {
    this.sendFrame(0x1, Buffer.from(text, "utf8"));
  }

  sendBinary(data: Buffer): void {
    this.sendFrame(0x2, data);
  }

  /** Starts a client close. */
  close(code = 1000): void {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    this.sendFrame(0x8, p);
  }

  /** Ends the TCP connection without a close frame. */
  destroy(): void {
    this.sock.destroy();
  }

  of<T extends string>(type: T): RawFrame["json"][] {
    return this.frames.filter((f) => f.json.type === type).map((f) => f.json);
  }

  /** Seqs of every event received, in order. */
  get seqs(): number[] {
    return this.of("events").flatMap((f) => (f.events as { seq: number }[]).map((e) => e.seq));
  }

  waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    return waitUntil(
      what,
      check,
      timeoutMs,
      5,
      () => `frames: ${this.frames.map((f) => f.text.slice(0, 120)).join(" | ")}; close=${JSON.stringify(this.closeFrame)}`,
    );
  }

  waitForType(type: string, timeoutMs?: number): Promise<RawFrame["json"]> {
    return this.waitFor(`a ${type} frame`, () => this.of(type)[0], timeoutMs);
  }
}
