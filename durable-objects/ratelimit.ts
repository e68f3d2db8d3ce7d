/** Token bucket state kept in the socket attachment so it survives hibernation. */
export interface Bucket {
  tokens: number;
  /** Epoch ms of the last refill. */
  at: number;
}

/** Refills at `ratePerSec` up to `burst`, then takes one token if available. Pure. */
export function take(bucket: Bucket, now: number, ratePerSec: number, burst: number): { allowed: boolean; bucket: Bucket } {
  const elapsed = Math.max(0, now - bucket.at) / 1000;
  const tokens = Math.min(burst, bucket.tokens + elapsed * ratePerSec);
  if (tokens < 1) return { allowed: false, bucket: { tokens, at: now } };
  return { allowed: true, bucket: { tokens: tokens - 1, at: now } };
}
