/**
 * The stored and sent text of one history entry. An event's envelope is its
 * JSON with the seq in front; a gap marker takes a seq of its own and says
 * that the source lost events before it (a replication slot Postgres
 * invalidated: relay/capture.ts). A marker is never sent as an event: a
 * socket that is live when it arrives, or resumes from before it, gets a
 * `reset` with reason "source_gap" (docs/protocol.md, "reset").
 */

/** An envelope's text: the event's JSON with its seq in front (`{"seq":7,"id":…}`). */
export function envelopeJson(seq: number, eventJson: string): string {
  return `{"seq":${seq},${eventJson.slice(1)}`;
}

/** The history entry that marks a gap in the source at `seq`. */
export function gapEnvelope(seq: number): string {
  return `{"seq":${seq},"gap":"source_gap"}`;
}

const GAP = /^\{"seq":(\d+),"gap":/;

/** The seq of a gap marker, or undefined for an event (checked on the text: events are never parsed to route them). */
export function gapSeq(body: string): number | undefined {
  const m = GAP.exec(body);
  return m ? Number(m[1]) : undefined;
}

/** The seq of a history entry, read off its text (envelopes start with it: envelopeJson). */
export function seqOf(body: string): number {
  return Number(body.slice(7, body.indexOf(",")));
}
