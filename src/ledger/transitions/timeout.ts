import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { appendHistory, ENDS_JOBS, recordTransitions, SETTLED_COLUMN, settledRecords } from './history.ts';
import type { Actor, JobState, TransitionRecord } from '../types.ts';

/**
 * leased -> timed_out for up to `limit` jobs running past their job type's
 * run-time limit, however diligently they heartbeat. timed_out is terminal.
 */
const timeoutStatement = prepared('timeout', `
WITH RECURSIVE picked AS (
  SELECT tenant_id, id FROM orch.jobs WHERE state = 'leased' AND deadline_at < now()
  LIMIT $1 FOR UPDATE SKIP LOCKED
), upd AS (
  UPDATE orch.jobs j SET state = 'timed_out', lease_until = NULL, finished_at = now(), updated_at = now(), ${appendHistory('$3')},
    last_error = jsonb_build_object('class', 'Timeout', 'message', 'run-time limit exceeded', 'retryable', false)
  FROM picked p WHERE j.tenant_id = p.tenant_id AND j.id = p.id
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.last_error, j.dependents, j.workflow_id
), entries AS (
  SELECT id, tenant_id, job_type, 'leased'::orch.job_state AS from_state, 'timed_out'::orch.job_state AS to_state, attempt, lease_id,
         last_error AS error, dependents, workflow_id FROM upd
), ${recordTransitions('entries', '$3::uuid', '$2', "'timeout'", "'timed_out'", { ends: true })}
SELECT id, tenant_id, job_type, attempt, ${SETTLED_COLUMN} FROM upd`, ENDS_JOBS);

interface TimeoutRow { id: string; tenant_id: string; job_type: string; attempt: number; settled: [string, string, string, JobState][] }

export async function timeout(db: Queryable, limit: number, actor: Actor): Promise<TransitionRecord[]> {
  const { rows } = await timeoutStatement<TimeoutRow>(db, [limit, actor, randomUUID()]);
  return [...rows.map((r): TransitionRecord => ({
    jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: 'leased', to: 'timed_out', attempt: r.attempt, cause: 'timed_out', reason: 'timeout', errorClass: 'Timeout',
  })), ...settledRecords(rows)];
}
