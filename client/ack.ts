/**
 * Flow control, the client's side (docs/protocol.md, "Flow control"): after
 * events were handed to the application, acknowledge the last seq, at once
 * when `everyEvents` are waiting, else `everyMs` after the first of them.
 * Nothing is sent while no events arrive, so an idle channel's object stays
 * hibernated. An ack is `{"type":"ack","seq":N}` written exactly so: the
 * server exempts it from the message rate limit when it moves forward.
 */
/** The SDK's defaults (client/connect.ts options ackEveryEvents, ackEveryMs); bench/bill.ts counts acks with them. */
export const DEFAULT_ACK_EVERY_EVENTS = 500;
export const DEFAULT_ACK_EVERY_MS = 1000;

export interface Acker {
  /** Events up to `seq` were delivered to the application (`count` of them since the last call). */
  delivered(seq: number, count: number): void;
  /** The connection ended: drop the timer. */
  stop(): void;
}

export function createAcker(send: (frame: string) => void, opts: { everyEvents: number; everyMs: number }): Acker {
  let waiting = 0;
  let last = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (waiting === 0) return;
    waiting = 0;
    try {
      send(`{"type":"ack","seq":${last}}`);
    } catch {
      /* closing: the next connection resumes from the last seq anyway */
    }
  };
  return {
    delivered(seq, count) {
      if (count === 0) return;
      last = seq;
      waiting += count;
      if (waiting >= opts.everyEvents) flush();
      else timer ??= setTimeout(flush, opts.everyMs);
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
      waiting = 0;
    },
  };
}
