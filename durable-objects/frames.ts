/**
 * `events` frames: pre-serialized envelopes packed under the frame cap, and
 * the exact parse filters evaluate.
 */
import type { Envelope } from "../shared/protocol";
import { parseJsonExact } from "../shared/exact-json";
import { seqOf } from "./envelope";

/** One `events` frame: its text, its UTF-8 bytes and the seq of its last event. */
export interface Frame {
  text: string;
  bytes: number;
  lastSeq: number;
}

/** A stored envelope, for evaluating filters: parsed exactly, so int8 and numeric comparisons do not round. */
export const parseEnvelope = (body: string): Envelope => parseJsonExact(body, "raw") as Envelope;

/** Bytes of `{"type":"events","events":[` + `]}` around a frame's bodies. */
const FRAME_OVERHEAD_BYTES = 30;

/**
 * Packs pre-serialized envelopes (with their UTF-8 sizes) into `events`
 * frames of at most `maxFrameBytes`; an event larger than that gets a frame
 * of its own.
 */
export function packFrames(bodies: readonly string[], sizes: readonly number[], maxFrameBytes: number): Frame[] {
  if (bodies.length === 0) return [];
  const max = maxFrameBytes - FRAME_OVERHEAD_BYTES;
  const out: Frame[] = [];
  let chunk: string[] = [];
  let size = 0;
  const flush = () => out.push({ text: `{"type":"events","events":[${chunk.join(",")}]}`, bytes: size + FRAME_OVERHEAD_BYTES, lastSeq: seqOf(chunk.at(-1)!) });
  bodies.forEach((b, i) => {
    const bytes = sizes[i]!;
    if (chunk.length > 0 && size + bytes + 1 > max) {
      flush();
      chunk = [];
      size = 0;
    }
    chunk.push(b);
    size += bytes + 1;
  });
  flush();
  return out;
}
