/**
 * HMAC-SHA256 request signing between the relay and the Worker.
 * Signature = hex(HMAC-SHA256(secret, `${timestamp}.${body}`)), sent as
 * `v1=<hex>`. WebCrypto is used directly (available in workerd and Node 20+):
 * jose covers JWS/JWT, not raw HMAC over an exact byte string, and
 * crypto.subtle.verify compares in constant time.
 */
import { SIGNATURE_TOLERANCE_SECONDS } from "./protocol";

const enc = new TextEncoder();
const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let k = keyCache.get(secret);
  if (!k) {
    k = crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keyCache.set(secret, k);
  }
  return k;
}

function toHex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[0-9a-f]*$/i.test(hex) || hex.length % 2) return undefined;
  const out = new Uint8Array(new ArrayBuffer(hex.length / 2));
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** What is signed: the timestamp and the exact body (the relay signs the same with node:crypto: relay/post.ts). */
export function signatureInput(timestamp: number, body: string): string {
  return `${timestamp}.${body}`;
}

/** The signature's scheme prefix; several may be sent, comma-separated. */
export const SIGNATURE_VERSION = "v1=";

export async function sign(secret: string, timestamp: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), enc.encode(signatureInput(timestamp, body)));
  return `${SIGNATURE_VERSION}${toHex(mac)}`;
}

export type VerifyResult = { ok: true } | { ok: false; code: "BAD_SIGNATURE" | "STALE_TIMESTAMP"; message: string };

/**
 * Accepts when any `v1=` signature in the header matches any of the secrets
 * (two secrets at once allow rotation without downtime).
 */
export async function verify(
  secrets: readonly string[],
  timestampHeader: string | null | undefined,
  signatureHeader: string | null | undefined,
  body: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<VerifyResult> {
  const ts = Number(timestampHeader);
  if (!timestampHeader || !Number.isInteger(ts)) return { ok: false, code: "BAD_SIGNATURE", message: "missing or malformed timestamp header" };
  if (Math.abs(nowSeconds - ts) > SIGNATURE_TOLERANCE_SECONDS)
    return { ok: false, code: "STALE_TIMESTAMP", message: `timestamp outside the ±${SIGNATURE_TOLERANCE_SECONDS}s window` };
  const sigs = (signatureHeader ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.startsWith(SIGNATURE_VERSION))
    .map((s) => fromHex(s.slice(SIGNATURE_VERSION.length)))
    .filter((b): b is Uint8Array<ArrayBuffer> => b !== undefined && b.length === 32);
  if (sigs.length === 0) return { ok: false, code: "BAD_SIGNATURE", message: "missing or malformed signature header" };
  const data = enc.encode(signatureInput(ts, body));
  for (const secret of secrets) {
    const key = await hmacKey(secret);
    for (const sig of sigs) if (await crypto.subtle.verify("HMAC", key, sig, data)) return { ok: true };
  }
  return { ok: false, code: "BAD_SIGNATURE", message: "signature does not match" };
}
