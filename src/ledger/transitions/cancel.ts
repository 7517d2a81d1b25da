import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { LedgerError } from '../errors.ts';
import { appendHistory, recordTransitions } from './history.ts';
import type { Actor, JobState, TransitionRecord } from '../types.ts';

/**
 * queued|failed|leased -> canceled, in one statement. A running job's lease
 * stops being renewable at once, so its worker learns at its next heartbeat
 * and its late ack is refused.
 */
const cancelStatement = prepared('cancel', `
WITH cur AS (
  SELECT id, state FROM orch.jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE
), upd AS (
  UPDATE orch.jobs j SET state = 'canceled', lease_until = NULL, finished_at = now(), updated_at = now(), ${appendHistory('$5')}
  FROM cur WHERE j.id = cur.id AND cur.state IN ('queued', 'failed', 'leased')
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, cur.state AS from_state
), entries AS (
  SELECT id, tenant_id, job_type, from_state, 'canceled'::orch.job_state AS to_state, attempt, lease_id, NULL::jsonb AS error FROM upd
), ${recordTransitions('entries', '$5::uuid', '$3', '$4', "'operator_canceled'")}
SELECT cur.state AS current_state, upd.* FROM cur LEFT JOIN upd ON true`);

interface CancelRow {
  current_state: JobState;
  id: string | null;
  tenant_id: string;
  job_type: string;
  attempt: number;
  from_state: JobState;
}

export async function cancel(db: Queryable, tenantId: string, jobId: string, actor: Actor, reason: string | null): Promise<TransitionRecord> {
  const { rows } = await cancelStatement<CancelRow>(db, [jobId, tenantId, actor, reason, randomUUID()]);
  const row = rows[0];
  if (!row) throw new LedgerError('not_found', 'jobId', `job ${jobId} not found`);
  if (row.id === null) throw new LedgerError('conflict', 'jobId', `job ${jobId} is ${row.current_state} and cannot be canceled`);
  return { jobId: row.id, tenantId: row.tenant_id, jobType: row.job_type, from: row.from_state, to: 'canceled', attempt: row.attempt, cause: 'operator_canceled', ...(reason ? { reason } : {}) };
}
