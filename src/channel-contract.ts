/**
 * The contract between the Worker's routes and the channel Durable Object:
 * what a connection carries into the object, and what the object reports.
 * Both sides import it; neither imports the other.
 */
import { z } from "zod";
import { ChannelName, Filter } from "../shared/protocol";

/** What the Worker forwards after it has authenticated and authorized a connection. */
export const SessionInit = z.object({
  channel: ChannelName,
  sub: z.string(),
  role: z.string().optional(),
  exp: z.number().int(),
  filter: Filter.optional(),
  since: z.number().int().nonnegative().optional(),
  echoProtocol: z.string().optional(),
});
export type SessionInit = z.infer<typeof SessionInit>;
export const SESSION_HEADER = "x-notifiws-session";

export interface ChannelStats {
  channel: string;
  connections: number;
  headSeq: number;
  events: number;
  duplicates: number;
  messagesSent: number;
  sendErrors: number;
  lastEventAt: number | null;
  historySize: number;
}

export interface IngestOutcome {
  accepted: number;
  duplicates: number;
  headSeq: number;
  /** This object already applied a batch with this id (nothing was done). */
  replayed: boolean;
}
