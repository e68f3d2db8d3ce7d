import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { HttpErrorCode } from "../shared/protocol";
import { HTTP_ERRORS } from "../shared/http-errors";

/** An HTTP error with a stable `code`, its status from shared/http-errors.ts; rendered by onError as `{ error: { code, message } }`. */
export class ApiError extends HTTPException {
  constructor(
    readonly code: HttpErrorCode,
    message: string,
    /** Extra machine-readable fields for the error object (e.g. eventIds, failedChannels). */
    readonly details?: Record<string, unknown>,
  ) {
    super(HTTP_ERRORS[code].status as ContentfulStatusCode, { message });
  }
}
