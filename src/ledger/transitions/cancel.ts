import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { appendHistory, ENDS_JOBS, recordTransitions, SETTLED_COLUMN, settledRecords } from './history.ts';
import { CANCELABLE_STATES, type Actor, type JobState, type TransitionRecord } from '../types.ts';

/**
 * queued|failed|leased|waiting -> canceled for jobs of one tenant, in one
 * statement, from the states given ($6, a subset of CANCELABLE_STATES). A
 * running job's lease stops being renewable at once, so its worker learns at
 * its next heartbeat and its late ack is refused. What depended on a
 * canceled job is settled by its edges' policies (history.ts).
 */
const cancelStatement = prepared('cancel', `
WITH RECURSIVE cur AS (
  SELECT tenant_id, id, state FROM orch.jobs WHERE tenant_id = $2 AND id = ANY($1::bigint[]) ORDER BY id FOR UPDATE
), upd AS (
  UPDATE orch.jobs j SET state = 'canceled', lease_until = NULL, finished_at = now(), updated_at = now(), ${appendHistory('$5')}
  FROM cur WHERE j.tenant_id = cur.tenant_id AND j.id = cur.id AND cur.state = ANY($6::orch.job_state[])
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, cur.state AS from_state, j.dependents, j.workflow_id
), entries AS (
  SELECT id, tenant_id, job_type, from_state, 'canceled'::orch.job_state AS to_state, attempt, lease_id, NULL::jsonb AS error,
         dependents, workflow_id FROM upd
), ${recordTransitions('entries', '$5::uuid', '$3', '$4', "'operator_canceled'", { ends: true })}
SELECT cur.id AS job_id, cur.state AS current_state, upd.id, upd.tenant_id, upd.job_type, upd.attempt, upd.from_state, ${SETTLED_COLUMN}
FROM cur LEFT JOIN upd ON upd.id = cur.id ORDER BY cur.id`, ENDS_JOBS);

interface CancelRow {
  job_id: string;
  current_state: JobState;
  id: string | null;
  tenant_id: string;
  job_type: string;
  attempt: number;
  from_state: JobState;
  settled: [string, string, string, JobState][];
}

/** Per job asked for: canceled now (the record), or its state when it was not (absent: no such job of the tenant). */
export interface CancelOutcome { jobId: string; state: JobState; record: TransitionRecord | null }

export async function cancel(
  db: Queryable, tenantId: string, jobIds: string[], actor: Actor, reason: string | null, states: readonly JobState[] = CANCELABLE_STATES,
): Promise<{ outcomes: CancelOutcome[]; settled: TransitionRecord[] }> {
  if (jobIds.length === 0) return { outcomes: [], settled: [] };
  const { rows } = await cancelStatement<CancelRow>(db, [jobIds, tenantId, actor, reason, randomUUID(), states]);
  const outcomes = rows.map((row): CancelOutcome => ({
    jobId: row.job_id,
    state: row.id === null ? row.current_state : 'canceled',
    record: row.id === null ? null : {
      jobId: row.id, tenantId: row.tenant_id, jobType: row.job_type, from: row.from_state, to: 'canceled', attempt: row.attempt,
      cause: 'operator_canceled', ...(reason ? { reason } : {}),
    },
  }));
  return { outcomes, settled: settledRecords(rows) };
}
