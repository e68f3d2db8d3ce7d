/**
 * The rows route's side in a channel's ordering object: loads of the
 * channel's rows collapse onto one database read, and the latest read is
 * served again while it can still hand off exactly (docs/live-tables.md).
 *
 * The hand-off: `fromSeq` is this object's head taken before the read
 * starts. Every event the read's snapshot does not see committed after the
 * snapshot was taken, so it reached this object after that moment and has a
 * seq above `fromSeq`; a client that subscribes from `fromSeq` and skips the
 * events whose transaction the snapshot saw (shared/snapshot.ts) applies
 * each change exactly once. The same answer stays exact for a later load as
 * long as the history still holds every event after `fromSeq` and none of
 * them is a gap marker (shareable(), below).
 */
import type { Config } from "../shared/worker-config";
import type { EventStore } from "./event-store";
import { readTable, type TableRead } from "./table-read";

/** Where an answer came from: a read of its own, a read already running, or the latest read kept. */
export type RowsSource = "read" | "joined" | "shared";

export type RowsAnswer = (TableRead & { ok: false }) | { ok: true; body: string; fromSeq: number; source: RowsSource };

/** The latest successful read. */
export interface KeptRows {
  body: string;
  fromSeq: number;
  at: number;
}

/**
 * Whether `kept` may answer a load now: young enough (ROWS_SHARE_SECONDS),
 * the history still starts at or before `fromSeq + 1` (every event since is
 * replayable), and no gap marker was stored after `fromSeq` (a replay would
 * reset: sockets.ts).
 */
export function shareable(kept: KeptRows | undefined, now: number, shareMs: number, oldestSeq: number, lastGapSeq: number): kept is KeptRows {
  if (!kept) return false;
  return now - kept.at <= shareMs && oldestSeq <= kept.fromSeq + 1 && lastGapSeq <= kept.fromSeq;
}

export class RowsLoader {
  private kept: KeptRows | undefined;
  private running: Promise<RowsAnswer> | undefined;
  /** The head when this object last stored a gap marker (0: none since it started). */
  private lastGapSeq = 0;
  /** Loads answered and database reads started since this object started (the channel's stats). */
  loads = 0;
  reads = 0;

  constructor(
    private readonly store: EventStore,
    private readonly config: () => Config,
  ) {}

  async load(channel: string): Promise<RowsAnswer> {
    this.loads++;
    const cfg = this.config();
    const now = Date.now();
    // The history's start (one SQLite read) is asked only when there is a read to hand out.
    if (this.kept && shareable(this.kept, now, cfg.ROWS_SHARE_SECONDS * 1000, this.store.oldestSeq(), this.lastGapSeq))
      return { ok: true, body: this.kept.body, fromSeq: this.kept.fromSeq, source: "shared" };
    if (this.running) {
      const answer = await this.running;
      return answer.ok ? { ...answer, source: "joined" } : answer;
    }
    this.running = this.read(channel, cfg).finally(() => (this.running = undefined));
    return this.running;
  }

  /** The channel lost events at the source (a gap marker up to `headSeq`): no earlier read may be handed out again. */
  noteGap(headSeq: number): void {
    this.lastGapSeq = Math.max(this.lastGapSeq, headSeq);
  }

  private async read(channel: string, cfg: Config): Promise<RowsAnswer> {
    // Taken before the read starts, with no await in between (see the module comment).
    const fromSeq = this.store.counters.headSeq;
    const at = Date.now();
    this.reads++;
    const result = await readTable(cfg, channel);
    if (!result.ok) return result;
    // The function's body ends with `}`: fromSeq is spliced in, the rows are never parsed.
    const body = `${result.body.slice(0, -1)},"fromSeq":${fromSeq}}`;
    this.kept = { body, fromSeq, at };
    return { ok: true, body, fromSeq, source: "read" };
  }
}
