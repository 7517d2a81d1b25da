import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { appendHistory, recordTransitions } from './history.ts';
import type { Actor, JobState, TransitionRecord } from '../types.ts';
import { JOBS_CHANNEL } from '../channel.ts';

/**
 * leased -> queued (attempts left) or leased -> dead_lettered (attempts
 * spent) for up to `limit` leases whose deadline passed without a heartbeat.
 * The attempt was counted at claim. Re-queued jobs keep their run_after, so
 * they keep their place in line, and waiting claimers are woken.
 */
const expireStatement = prepared('expire', `
WITH picked AS (
  SELECT tenant_id, id FROM orch.jobs WHERE state = 'leased' AND lease_until < now()
  ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED
), upd AS (
  UPDATE orch.jobs j SET
    state = CASE WHEN j.attempt < j.max_attempts THEN 'queued' ELSE 'dead_lettered' END::orch.job_state,
    finished_at = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE now() END,
    last_error = CASE WHEN j.attempt < j.max_attempts THEN j.last_error
      ELSE jsonb_build_object('class', 'LeaseExpired', 'message', 'lease expired without heartbeat', 'retryable', true) END,
    lease_until = NULL, updated_at = now(), ${appendHistory('$3')}
  FROM picked p WHERE j.tenant_id = p.tenant_id AND j.id = p.id
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.state AS new_state, j.last_error
), entries AS (
  SELECT id, tenant_id, job_type, 'leased'::orch.job_state AS from_state, new_state AS to_state, attempt, lease_id,
         CASE WHEN new_state = 'dead_lettered' THEN last_error END AS error FROM upd
), ${recordTransitions('entries', '$3::uuid', '$2', "'lease_expired'")}, wake AS (
  SELECT pg_notify('${JOBS_CHANNEL}', job_type || ' ' || count(*)) FROM upd WHERE new_state = 'queued' GROUP BY job_type
)
SELECT upd.*, (SELECT count(*) FROM wake) AS woken FROM upd`);

interface ExpireRow { id: string; tenant_id: string; job_type: string; attempt: number; new_state: JobState }

export async function expire(db: Queryable, limit: number, actor: Actor): Promise<TransitionRecord[]> {
  const { rows } = await expireStatement<ExpireRow>(db, [limit, actor, randomUUID()]);
  return rows.map((r) => ({
    jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: 'leased', to: r.new_state, attempt: r.attempt, reason: 'lease_expired',
  }));
}
