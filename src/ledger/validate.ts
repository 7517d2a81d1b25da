import { LedgerError } from './errors.ts';
import { JobTypes } from './job-types.ts';
import type { EnqueueInput } from './types.ts';

/** Tenants become metric labels and NATS subject tokens too. */
export const TENANT_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';
const TENANT_RE = new RegExp(TENANT_PATTERN);
export const MAX_PRIORITY = 1000;
export const MAX_KEY_LENGTH = 255;

export function validateTenant(tenantId: string, field = 'tenantId'): void {
  if (!TENANT_RE.test(tenantId)) throw new LedgerError('invalid', field, `${field} must match ${TENANT_PATTERN}`);
}

/** An enqueue input that passed validation, with its payload already serialised once. */
export interface PreparedJob extends EnqueueInput {
  payloadJson: string;
}

/**
 * Checks one enqueue input against the ledger's rules. In-process callers
 * reach the ledger without the HTTP schema, so the rules live here; `field`
 * prefixes error fields (e.g. "jobs[3].payload").
 */
export function prepareJob(input: EnqueueInput, maxPayloadBytes: number, field = ''): PreparedJob {
  const f = (name: string) => (field ? `${field}.${name}` : name);
  validateTenant(input.tenantId, f('tenantId'));
  JobTypes.validateName(input.jobType, f('jobType'));
  if (input.priority !== undefined && !(Number.isInteger(input.priority) && input.priority >= 0 && input.priority <= MAX_PRIORITY)) {
    throw new LedgerError('invalid', f('priority'), `${f('priority')} must be an integer from 0 to ${MAX_PRIORITY}`);
  }
  if (input.maxAttempts !== undefined && !(Number.isInteger(input.maxAttempts) && input.maxAttempts >= 1 && input.maxAttempts <= 1000)) {
    throw new LedgerError('invalid', f('maxAttempts'), `${f('maxAttempts')} must be an integer from 1 to 1000`);
  }
  if (input.runAfter !== undefined && Number.isNaN(input.runAfter.getTime())) {
    throw new LedgerError('invalid', f('runAfter'), `${f('runAfter')} is not a valid time`);
  }
  for (const k of ['idempotencyKey', 'correlationId'] as const) {
    const v = input[k];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0 || v.length > MAX_KEY_LENGTH)) {
      throw new LedgerError('invalid', f(k), `${f(k)} must be 1 to ${MAX_KEY_LENGTH} characters`);
    }
  }
  const payloadJson = JSON.stringify(input.payload === undefined ? null : input.payload);
  if (payloadJson === undefined) throw new LedgerError('invalid', f('payload'), `${f('payload')} is not JSON`);
  const bytes = Buffer.byteLength(payloadJson);
  if (bytes > maxPayloadBytes) {
    throw new LedgerError('invalid', f('payload'), `${f('payload')} is ${bytes} bytes, over the ${maxPayloadBytes}-byte limit`);
  }
  if (payloadJson.includes('\\u0000')) {
    throw new LedgerError('invalid', f('payload'), `${f('payload')} contains a NUL character, which PostgreSQL cannot store`);
  }
  return { ...input, payloadJson };
}
