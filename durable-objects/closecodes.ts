/**
 * Close codes 1005, 1006 and 1015 are reserved: they describe a close but may
 * never be sent in a Close frame (RFC 6455 §7.4.1), and workerd throws if we
 * try. When echoing a client's close we send 1000 instead.
 */
export function closeReplyCode(received: number): number {
  if (received === 1005 || received === 1006 || received === 1015) return 1000;
  if (received < 1000 || received > 4999) return 1000;
  return received;
}

/** Close reasons are capped at 123 bytes of UTF-8 (125-byte control frame payload minus the code). */
export function closeReason(reason: string): string {
  const enc = new TextEncoder();
  if (enc.encode(reason).length <= 123) return reason;
  let out = reason;
  while (enc.encode(out).length > 123) out = out.slice(0, -1);
  return out;
}
