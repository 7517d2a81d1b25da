import { LedgerError } from './errors.ts';
import { JobTypes } from './job-types.ts';
import { EDGE_POLICIES, type Dependency, type EnqueueInput } from './types.ts';
import { isTenantId, TENANT_PATTERN } from '../wire.ts';

export { TENANT_PATTERN };
export const MAX_PRIORITY = 1000;
export const MAX_KEY_LENGTH = 255;

export function validateTenant(tenantId: string, field = 'tenantId'): void {
  if (!isTenantId(tenantId)) throw new LedgerError('invalid', field, `${field} must match ${TENANT_PATTERN}`);
}

/** An enqueue input that passed validation, with its payload already serialised once. */
export interface PreparedJob extends EnqueueInput {
  payloadJson: string;
  /** Set for jobs enqueued with dependencies (transitions/depend.ts): how they start. */
  graph?: { state: 'queued' | 'waiting'; pendingParents: number; dependents: number };
}

/** Parents one job may name; a workflow's steps and edges have their own bounds (src/workflows). */
export const MAX_DEPENDENCIES = 1000;

/**
 * Checks one enqueue input against the ledger's rules. In-process callers
 * reach the ledger without the HTTP schema, so the rules live here; `field`
 * prefixes error fields (e.g. "jobs[3].payload").
 */
export function prepareJob(input: EnqueueInput, maxPayloadBytes: number, field = '', previous?: EnqueueInput): PreparedJob {
  const f = (name: string) => (field ? `${field}.${name}` : name);
  // Batches usually repeat one tenant and type: check each only when it changes.
  if (input.tenantId !== previous?.tenantId) validateTenant(input.tenantId, f('tenantId'));
  if (input.jobType !== previous?.jobType) JobTypes.validateName(input.jobType, f('jobType'));
  if (input.priority !== undefined && !(Number.isInteger(input.priority) && input.priority >= 0 && input.priority <= MAX_PRIORITY)) {
    throw new LedgerError('invalid', f('priority'), `${f('priority')} must be an integer from 0 to ${MAX_PRIORITY}`);
  }
  if (input.maxAttempts !== undefined && !(Number.isInteger(input.maxAttempts) && input.maxAttempts >= 1 && input.maxAttempts <= 1000)) {
    throw new LedgerError('invalid', f('maxAttempts'), `${f('maxAttempts')} must be an integer from 1 to 1000`);
  }
  if (input.runAfter !== undefined) {
    const year = input.runAfter.getUTCFullYear();
    if (Number.isNaN(year) || year < 1 || year > 9999) {
      throw new LedgerError('invalid', f('runAfter'), `${f('runAfter')} is not a valid time between years 1 and 9999`);
    }
  }
  for (const k of ['idempotencyKey', 'correlationId'] as const) {
    const v = input[k];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0 || v.length > MAX_KEY_LENGTH)) {
      throw new LedgerError('invalid', f(k), `${f(k)} must be 1 to ${MAX_KEY_LENGTH} characters`);
    }
    if (v !== undefined) checkText(v, f(k));
  }
  if (input.dependsOn !== undefined) checkDependencies(input.dependsOn, f('dependsOn'));
  const payloadJson = toStorableJson(input.payload === undefined ? null : input.payload, f('payload'));
  const bytes = Buffer.byteLength(payloadJson);
  if (bytes > maxPayloadBytes) {
    throw new LedgerError('invalid', f('payload'), `${f('payload')} is ${bytes} bytes, over the ${maxPayloadBytes}-byte limit`);
  }
  return { ...input, payloadJson };
}

function checkDependencies(deps: Dependency[], field: string): void {
  if (!Array.isArray(deps) || deps.length > MAX_DEPENDENCIES) {
    throw new LedgerError('invalid', field, `${field} must be a list of at most ${MAX_DEPENDENCIES} jobs`);
  }
  const seen = new Set<string>();
  deps.forEach((d, k) => {
    const at = `${field}[${k}]`;
    const ref = d.jobId !== undefined ? `job ${d.jobId}` : `index ${d.index}`;
    if (d.jobId !== undefined ? !/^[1-9][0-9]{0,18}$/.test(d.jobId) : !(Number.isInteger(d.index) && d.index! >= 0)) {
      throw new LedgerError('invalid', at, `${at} must name a job id (digits) or a batch index`);
    }
    if (d.onFailure !== undefined && !EDGE_POLICIES.includes(d.onFailure)) {
      throw new LedgerError('invalid', `${at}.onFailure`, `${at}.onFailure must be one of ${EDGE_POLICIES.join(', ')}`);
    }
    if (seen.has(ref)) throw new LedgerError('invalid', at, `${at} names ${ref} twice`);
    seen.add(ref);
  });
}

/**
 * JSON.stringify's escapes for what PostgreSQL will not store: NUL, and lone
 * surrogates (paired ones are emitted as raw characters, so any surrogate
 * escape is a lone one). An even run of backslashes before "\u" is escaped
 * text, not an escape.
 */
const UNSTORABLE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})/;

/** Serialises a JSON value PostgreSQL can store in jsonb, or throws naming the field. */
export function toStorableJson(value: unknown, field: string): string {
  const json = JSON.stringify(value);
  if (json === undefined) throw new LedgerError('invalid', field, `${field} is not JSON`);
  if (json.includes('\\u') && UNSTORABLE_ESCAPE.test(json)) {
    throw new LedgerError('invalid', field, `${field} contains a NUL character or an unpaired surrogate, which PostgreSQL cannot store`);
  }
  return json;
}

/** An ISO 8601 time given by a caller, or a 400 naming the field. */
export function parseTime(value: string, field: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new LedgerError('invalid', field, `${field}: "${value}" is not a time (ISO 8601, e.g. 2026-12-04T06:00:00Z)`);
  return d;
}

/** Rejects text PostgreSQL cannot store (NUL, unpaired surrogates), naming the field. */
export function checkText(value: string, field: string): void {
  if (value.includes('\u0000') || !value.isWellFormed()) {
    throw new LedgerError('invalid', field, `${field} contains a NUL character or an unpaired surrogate, which PostgreSQL cannot store`);
  }
}
