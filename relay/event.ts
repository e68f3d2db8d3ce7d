/**
 * One event as the batch JSON the Worker ingests (IngestBatch in
 * shared/protocol.ts), built from either source the same way: the header is
 * validated with the protocol's schema, the row values are spliced in as the
 * jsonb text Postgres printed, never parsed here (docs/protocol.md, "Values").
 */
import { ChangeEvent } from "../shared/protocol";

/** Every field of an event but the row values, which are checked by Postgres (jsonb) and travel as its text. */
export const EventHeader = ChangeEvent.omit({ data: true, old: true, types: true });

/** The row values as jsonb text, as the outbox or the logical message holds them. */
export interface EventValues {
  data: string | null;
  old: string | null;
  types: string | null;
}

/** The event as ChangeEvent JSON: the validated header, then the row values spliced in as Postgres printed them. */
export function eventJson(header: object, values: EventValues): string {
  const head = JSON.stringify(header);
  return (
    `${head.slice(0, -1)},"data":${values.data ?? "null"}` +
    (values.old !== null ? `,"old":${values.old}` : "") +
    (values.types !== null ? `,"types":${values.types}` : "") +
    "}"
  );
}

/** The signed body of one batch, in IngestBatch's shape. */
export function batchBody(batchId: string, events: readonly string[]): string {
  return `{"batchId":${JSON.stringify(batchId)},"events":[${events.join(",")}]}`;
}
