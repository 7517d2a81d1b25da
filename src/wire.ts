/** What the server and the SDK share about the HTTP API. */

export const API_BASE = '/api/v1/orchestrator';

/** Events are published on `<prefix>.<tenant>.<jobType>.<eventType>`; ORCH_EVENTS_SUBJECT_PREFIX changes the prefix. */
export const DEFAULT_EVENT_SUBJECT_PREFIX = 'orch.events';

/**
 * Every tenant id, wherever it comes from (header, token, JWT claim, CLI,
 * request body), matches this one pattern. Tenants become metric labels,
 * NATS subject tokens and row-level-security scopes, so no dots, commas,
 * quotes or spaces.
 */
export const TENANT_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';
export const isTenantId = (s: string): boolean => TENANT_RE.test(s);
const TENANT_RE = new RegExp(TENANT_PATTERN);

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
