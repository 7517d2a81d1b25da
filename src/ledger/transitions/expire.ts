import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { appendHistory, ENDS_JOBS, recordTransitions, SETTLED_COLUMN, settledRecords } from './history.ts';
import type { Actor, JobState, TransitionCause, TransitionRecord } from '../types.ts';
import { notifyRunnable } from '../channel.ts';

/**
 * SQL of a statement that takes leases away from their holders: leased ->
 * queued (attempts left) or leased -> dead_lettered (attempts spent) for the
 * rows of `picked` (tenant_id, id, charged; locked by it). The attempt was
 * counted at claim; a row `picked` marks not charged (a healthy lease an
 * operator took) gets it back and always returns to the queue: taking a
 * lease from a worker that is doing its job is no failure of the job. Re-queued jobs keep their run_after, so they keep their place in
 * line, and waiting claimers are woken. The holder's late ack or heartbeat
 * is refused: the job is no longer leased, or leased under a new lease id.
 * $2 is the actor, $3 the batch id; `reason` and the dead-letter error are SQL.
 */
export function takeLeasesStatement(picked: string, reason: string, cause: string, error: { class: string; message: string }): string {
  return `
WITH RECURSIVE picked AS (
  ${picked}
), upd AS (
  UPDATE orch.jobs j SET
    attempt = CASE WHEN p.charged THEN j.attempt ELSE j.attempt - 1 END,
    state = CASE WHEN NOT p.charged OR j.attempt < j.max_attempts THEN 'queued' ELSE 'dead_lettered' END::orch.job_state,
    finished_at = CASE WHEN NOT p.charged OR j.attempt < j.max_attempts THEN NULL ELSE now() END,
    last_error = CASE WHEN NOT p.charged OR j.attempt < j.max_attempts THEN j.last_error
      ELSE jsonb_build_object('class', '${error.class}', 'message', '${error.message}', 'retryable', true) END,
    lease_until = NULL, updated_at = now(), ${appendHistory('$3')}
  FROM picked p WHERE j.tenant_id = p.tenant_id AND j.id = p.id
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.worker_id, j.state AS new_state, j.last_error, j.dependents, j.workflow_id
), entries AS (
  SELECT id, tenant_id, job_type, 'leased'::orch.job_state AS from_state, new_state AS to_state, attempt, lease_id,
         CASE WHEN new_state = 'dead_lettered' THEN last_error END AS error, dependents, workflow_id FROM upd
), ${recordTransitions('entries', '$3::uuid', '$2', reason, cause, { ends: true })}, wake AS (
  ${notifyRunnable('upd', "new_state = 'queued'")}
)
SELECT upd.id, upd.tenant_id, upd.job_type, upd.attempt, upd.lease_id, upd.worker_id, upd.new_state, ${SETTLED_COLUMN},
  CASE WHEN upd.new_state = 'dead_lettered' THEN upd.last_error->>'class' END AS error_class, (SELECT count(*) FROM wake) AS woken FROM upd`;
}

export interface TakenLeaseRow {
  id: string; tenant_id: string; job_type: string; attempt: number; lease_id: string; worker_id: string | null; new_state: JobState; error_class: string | null;
  settled: [string, string, string, JobState][];
}

/** The leases taken, then the dependents their ends settled. */
export const takenRecords = (rows: TakenLeaseRow[], cause: TransitionCause, reason: string): TransitionRecord[] => [...rows.map((r): TransitionRecord => ({
  cause, jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: 'leased', to: r.new_state, attempt: r.attempt, reason,
  ...(r.error_class ? { errorClass: r.error_class } : {}),
})), ...settledRecords(rows)];

/** Up to `limit` leases whose deadline passed without a heartbeat. */
const expireStatement = prepared('expire', takeLeasesStatement(`
  SELECT tenant_id, id, true AS charged FROM orch.jobs WHERE state = 'leased' AND lease_until < now()
  ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED`,
  "'lease_expired'", "'lease_expired'", { class: 'LeaseExpired', message: 'lease expired without heartbeat' }), ENDS_JOBS);

export async function expire(db: Queryable, limit: number, actor: Actor): Promise<TransitionRecord[]> {
  const { rows } = await expireStatement<TakenLeaseRow>(db, [limit, actor, randomUUID()]);
  return takenRecords(rows, 'lease_expired', 'lease_expired');
}
