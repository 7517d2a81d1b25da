import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { toStorableJson } from '../validate.ts';
import { appendHistory, ENDS_JOBS, recordTransitions, SETTLED_COLUMN } from './history.ts';
import type { AckOutcome, Actor, CompleteInput, TransitionRecord } from '../types.ts';
import { ACK_ACTOR, LEASE_CHECK_COLUMNS, leaseEndOutcomes, type LeaseEndRow } from './lease-check.ts';

/**
 * leased -> succeeded, for a batch of leases, in one statement. The lease
 * must still be the job's (right lease id, still leased): one that lapsed but
 * that nobody reaped or claimed again is still the holder's, so its work
 * counts. The current row of every named job comes back, in input order, so
 * each refusal can say why.
 */
const completeStatement = prepared('complete', `
WITH RECURSIVE input AS (
  SELECT * FROM ROWS FROM (json_to_recordset($1::json) AS (tenant_id text, job_id bigint, lease_id uuid, result jsonb, artifacts jsonb))
    WITH ORDINALITY AS i(tenant_id, job_id, lease_id, result, artifacts, ord)
), upd AS (
  UPDATE orch.jobs j SET state = 'succeeded', acked = 'succeeded', result = i.result, artifacts = i.artifacts,
    progress = 1, lease_until = NULL, finished_at = now(), updated_at = now(), ${appendHistory('$3')}
  FROM input i
  WHERE j.tenant_id = i.tenant_id AND j.id = i.job_id AND j.lease_id = i.lease_id AND j.state = 'leased'
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.worker_id, j.dependents, j.workflow_id,
    extract(epoch FROM now() - j.started_at) * 1000 AS run_ms
), entries AS (
  SELECT id, tenant_id, job_type, 'leased'::orch.job_state AS from_state, 'succeeded'::orch.job_state AS to_state, attempt, lease_id, worker_id,
         NULL::jsonb AS error, dependents, workflow_id FROM upd
), ${recordTransitions('entries', '$3::uuid', ACK_ACTOR, 'NULL', "'worker_completed'", { ends: true })}
SELECT ${LEASE_CHECK_COLUMNS}, u.tenant_id, u.job_type, u.attempt, u.run_ms,
  'succeeded'::orch.job_state AS new_state, NULL AS error_class, ${SETTLED_COLUMN}
FROM input i LEFT JOIN upd u ON u.id = i.job_id LEFT JOIN orch.jobs j ON j.tenant_id = i.tenant_id AND j.id = i.job_id AND u.id IS NULL
ORDER BY i.ord`, ENDS_JOBS);

export async function complete(db: Queryable, inputs: CompleteInput[], actor: Actor | null): Promise<{ outcomes: AckOutcome[]; records: TransitionRecord[] }> {
  if (inputs.length === 0) return { outcomes: [], records: [] };
  const field = (i: number) => (inputs.length > 1 ? `acks[${i}].result` : 'result');
  // Results are checked (and serialised) one by one so a bad one is named; then spliced into the batch.
  const spec = '[' + inputs.map((c, i) => {
    const result = c.result === undefined || c.result === null ? 'null' : toStorableJson(c.result, field(i));
    const artifacts = c.artifacts === undefined ? 'null' : toStorableJson(c.artifacts, field(i).replace(/result$/, 'artifacts'));
    return `{"tenant_id":${JSON.stringify(c.tenantId)},"job_id":${JSON.stringify(c.jobId)},"lease_id":${JSON.stringify(c.leaseId)},"result":${result},"artifacts":${artifacts}}`;
  }).join(',') + ']';
  const { rows } = await completeStatement<LeaseEndRow>(db, [spec, actor, randomUUID()]);
  return leaseEndOutcomes(rows, 'succeeded', 'worker_completed');
}

/** Shared by complete and fail: turns the statement's rows into per-job outcomes and transition records. */
