import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** An HTTP error with a stable `code`; rendered by onError as `{ error: { code, message } }`. */
export class ApiError extends HTTPException {
  constructor(
    status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    /** Extra machine-readable fields for the error object (e.g. eventIds, failedChannels). */
    readonly details?: Record<string, unknown>,
  ) {
    super(status, { message });
  }
}

export const errorBody = (code: string, message: string, details?: Record<string, unknown>) => ({ error: { ...details, code, message } });
