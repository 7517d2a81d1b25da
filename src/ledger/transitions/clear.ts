import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { appendHistory, recordTransitions } from './history.ts';
import type { Actor, TransitionRecord } from '../types.ts';

/**
 * dead_lettered -> cleared for the given jobs of one tenant, in one
 * statement: they leave the DLQ (its depth and error clusters shrink) while
 * the row and its history stay. Jobs not dead-lettered are left alone; the
 * caller (src/recovery/dead-letters.ts) passes only jobs a snapshot holds.
 */
const clearStatement = prepared('clear', `
WITH picked AS (
  SELECT tenant_id, id FROM orch.jobs WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND state = 'dead_lettered' FOR UPDATE
), upd AS (
  UPDATE orch.jobs j SET state = 'cleared', updated_at = now(), ${appendHistory('$5')}
  FROM picked p WHERE j.tenant_id = p.tenant_id AND j.id = p.id
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.last_error
), entries AS (
  SELECT id, tenant_id, job_type, 'dead_lettered'::orch.job_state AS from_state, 'cleared'::orch.job_state AS to_state, attempt,
         lease_id, last_error AS error FROM upd
), ${recordTransitions('entries', '$5::uuid', '$3', '$4', "'dlq_cleared'")}
SELECT id, tenant_id, job_type, attempt FROM upd`);

interface ClearedRow { id: string; tenant_id: string; job_type: string; attempt: number }

export async function clear(db: Queryable, tenantId: string, jobIds: string[], actor: Actor, reason: string): Promise<TransitionRecord[]> {
  if (jobIds.length === 0) return [];
  const { rows } = await clearStatement<ClearedRow>(db, [tenantId, jobIds, actor, reason, randomUUID()]);
  return rows.map((r) => ({ jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: 'dead_lettered', to: 'cleared', attempt: r.attempt, cause: 'dlq_cleared', reason }));
}
