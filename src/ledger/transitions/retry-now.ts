import { randomUUID } from 'node:crypto';
import { notifyRunnable } from '../channel.ts';
import { prepared, type Queryable } from '../db.ts';
import { appendHistory, recordTransitions } from './history.ts';
import type { Actor, TransitionRecord } from '../types.ts';

/**
 * failed -> failed with run_after = now(), for jobs of one tenant waiting
 * for their retry backoff (an operator's "retry now", once the cause of the
 * failures is fixed): they become claimable at once, in one statement. The
 * attempt count is kept, so the retry budget is what it was; jobs whose
 * backoff already ran out are left alone (they are claimable anyway).
 */
const retryNowStatement = prepared('retry_now', `
WITH picked AS (
  SELECT tenant_id, id FROM orch.jobs WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND state = 'failed' AND run_after > now() FOR UPDATE
), upd AS (
  UPDATE orch.jobs j SET run_after = now(), updated_at = now(), ${appendHistory('$5')}
  FROM picked p WHERE j.tenant_id = p.tenant_id AND j.id = p.id AND j.state = 'failed'
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt
), entries AS (
  SELECT id, tenant_id, job_type, 'failed'::orch.job_state AS from_state, 'failed'::orch.job_state AS to_state, attempt,
         NULL::uuid AS lease_id, NULL::jsonb AS error FROM upd
), ${recordTransitions('entries', '$5::uuid', '$3', '$4', "'operator_retried'")}, wake AS (
  ${notifyRunnable('upd')}
)
SELECT id, tenant_id, job_type, attempt, (SELECT count(*) FROM wake) AS woken FROM upd ORDER BY id`);

interface RetriedRow { id: string; tenant_id: string; job_type: string; attempt: number }

export async function retryNow(db: Queryable, tenantId: string, jobIds: string[], actor: Actor, reason: string): Promise<TransitionRecord[]> {
  if (jobIds.length === 0) return [];
  const { rows } = await retryNowStatement<RetriedRow>(db, [tenantId, jobIds, actor, reason, randomUUID()]);
  return rows.map((r) => ({ jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: 'failed', to: 'failed', attempt: r.attempt, cause: 'operator_retried', reason }));
}
