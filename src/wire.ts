/** What the server and the SDK share about the HTTP API. */

export const API_BASE = '/api/v1/orchestrator';

/**
 * The API's error, on both sides of the wire: the server throws it (ApiError)
 * and answers { error: { code, message, field } } with `status`; the SDK
 * rebuilds it from that body (OrchApiError).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly field: string | null,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}
