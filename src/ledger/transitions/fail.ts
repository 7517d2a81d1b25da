import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { checkText, toStorableJson } from '../validate.ts';
import { appendHistory, ENDS_JOBS, recordTransitions, SETTLED_COLUMN } from './history.ts';
import type { AckOutcome, Actor, FailInput, TransitionRecord } from '../types.ts';
import { ACK_ACTOR, LEASE_CHECK_COLUMNS, leaseEndOutcomes, type LeaseEndRow } from './lease-check.ts';

/**
 * leased -> failed (retry after backoff) or leased -> dead_lettered (attempts
 * spent, or the error is not retryable), for a batch, in one statement.
 * Backoff: min(max, base * 2^(attempt-1)), less a random share up to `jitter`.
 */
const failStatement = prepared('fail', `
WITH RECURSIVE input AS (
  SELECT * FROM ROWS FROM (json_to_recordset($1::json) AS (tenant_id text, job_id bigint, lease_id uuid, error jsonb, retryable boolean))
    WITH ORDINALITY AS i(tenant_id, job_id, lease_id, error, retryable, ord)
), upd AS (
  UPDATE orch.jobs j SET
    state = CASE WHEN i.retryable AND j.attempt < j.max_attempts THEN 'failed' ELSE 'dead_lettered' END::orch.job_state,
    run_after = CASE WHEN i.retryable AND j.attempt < j.max_attempts
      THEN now() + make_interval(secs => least(jt.backoff_max_ms::float8, jt.backoff_base_ms * power(2::float8, least(j.attempt - 1, 60)))
                                         * (1 - jt.backoff_jitter * random()) / 1000.0)
      ELSE j.run_after END,
    finished_at = CASE WHEN i.retryable AND j.attempt < j.max_attempts THEN NULL ELSE now() END,
    acked = 'failed', last_error = i.error, lease_until = NULL, updated_at = now(), ${appendHistory('$3')}
  FROM input i, orch.job_types jt
  WHERE j.tenant_id = i.tenant_id AND j.id = i.job_id AND j.lease_id = i.lease_id AND j.state = 'leased'
    AND jt.name = j.job_type
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.worker_id, j.state AS new_state, i.error, j.dependents, j.workflow_id,
    extract(epoch FROM now() - j.started_at) * 1000 AS run_ms
), entries AS (
  SELECT id, tenant_id, job_type, 'leased'::orch.job_state AS from_state, new_state AS to_state, attempt, lease_id, worker_id, error, dependents, workflow_id FROM upd
), ${recordTransitions('entries', '$3::uuid', ACK_ACTOR, "'worker_failed'", "'worker_failed'", { ends: true })}
SELECT ${LEASE_CHECK_COLUMNS}, u.tenant_id, u.job_type, u.attempt, u.run_ms, u.new_state, u.error->>'class' AS error_class, ${SETTLED_COLUMN}
FROM input i LEFT JOIN upd u ON u.id = i.job_id LEFT JOIN orch.jobs j ON j.tenant_id = i.tenant_id AND j.id = i.job_id AND u.id IS NULL
ORDER BY i.ord`, ENDS_JOBS);

export async function fail(db: Queryable, inputs: FailInput[], actor: Actor | null): Promise<{ outcomes: AckOutcome[]; records: TransitionRecord[] }> {
  if (inputs.length === 0) return { outcomes: [], records: [] };
  inputs.forEach((f, i) => {
    const field = (name: string) => (inputs.length > 1 ? `acks[${i}].error.${name}` : `error.${name}`);
    checkText(f.error.class, field('class'));
    checkText(f.error.message, field('message'));
    if (f.error.details !== undefined) toStorableJson(f.error.details, field('details'));
  });
  const spec = inputs.map((f) => ({
    tenant_id: f.tenantId,
    job_id: f.jobId,
    lease_id: f.leaseId,
    retryable: f.error.retryable !== false,
    error: { class: f.error.class, message: f.error.message, retryable: f.error.retryable !== false, ...(f.error.details === undefined ? {} : { details: f.error.details }) },
  }));
  const { rows } = await failStatement<LeaseEndRow>(db, [JSON.stringify(spec), actor, randomUUID()]);
  return leaseEndOutcomes(rows, 'failed', 'worker_failed');
}
