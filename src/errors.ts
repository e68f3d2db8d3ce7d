import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { HttpErrorCode } from "../shared/protocol";

/** An HTTP error with a stable `code`; rendered by onError as `{ error: { code, message } }`. */
export class ApiError extends HTTPException {
  constructor(
    status: ContentfulStatusCode,
    readonly code: HttpErrorCode,
    message: string,
    /** Extra machine-readable fields for the error object (e.g. eventIds, failedChannels). */
    readonly details?: Record<string, unknown>,
  ) {
    super(status, { message });
  }
}

export const errorBody = (code: HttpErrorCode, message: string, details?: Record<string, unknown>) => ({ error: { ...details, code, message } });

/** The same body as a Response, for code outside Hono (the Durable Objects). */
export const errorResponse = (status: number, code: HttpErrorCode, message: string) => Response.json(errorBody(code, message), { status });
