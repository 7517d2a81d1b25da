import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { appendHistory, recordTransitions } from './history.ts';
import type { AckOutcome, Actor, LeaseRef, TransitionRecord } from '../types.ts';
import { notifyRunnable } from '../channel.ts';
import { ACK_ACTOR, LEASE_CHECK_COLUMNS, leaseEndOutcomes, type LeaseEndRow } from './lease-check.ts';

/**
 * leased -> queued by the lease holder, for leases it will not run (a worker
 * shutting down returns its prefetched or interrupted jobs). The attempt is
 * given back: the job keeps its place in line and its full retry budget.
 */
const releaseStatement = prepared('release', `
WITH input AS (
  SELECT * FROM ROWS FROM (json_to_recordset($1::json) AS (tenant_id text, job_id bigint, lease_id uuid))
    WITH ORDINALITY AS i(tenant_id, job_id, lease_id, ord)
), upd AS (
  UPDATE orch.jobs j SET state = 'queued', attempt = j.attempt - 1, lease_until = NULL, updated_at = now(), ${appendHistory('$3')}
  FROM input i
  WHERE j.tenant_id = i.tenant_id AND j.id = i.job_id AND j.lease_id = i.lease_id AND j.state = 'leased'
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.worker_id
), entries AS (
  SELECT id, tenant_id, job_type, 'leased'::orch.job_state AS from_state, 'queued'::orch.job_state AS to_state, attempt, lease_id, worker_id,
         NULL::jsonb AS error FROM upd
), ${recordTransitions('entries', '$3::uuid', ACK_ACTOR, "'released_by_worker'", "'worker_released'")}, wake AS (
  ${notifyRunnable('upd')}
)
SELECT ${LEASE_CHECK_COLUMNS}, u.tenant_id, u.job_type, u.attempt, 'queued'::orch.job_state AS new_state,
  NULL AS run_ms, NULL AS error_class, (SELECT count(*) FROM wake) AS woken
FROM input i LEFT JOIN upd u ON u.id = i.job_id LEFT JOIN orch.jobs j ON j.tenant_id = i.tenant_id AND j.id = i.job_id AND u.id IS NULL
ORDER BY i.ord`);

export async function release(db: Queryable, inputs: LeaseRef[], actor: Actor | null): Promise<{ outcomes: AckOutcome[]; records: TransitionRecord[] }> {
  if (inputs.length === 0) return { outcomes: [], records: [] };
  const { rows } = await releaseStatement<LeaseEndRow>(db, [JSON.stringify(inputs.map((r) => ({ tenant_id: r.tenantId, job_id: r.jobId, lease_id: r.leaseId }))), actor, randomUUID()]);
  return leaseEndOutcomes(rows, 'renew', 'worker_released', 'released_by_worker');
}
