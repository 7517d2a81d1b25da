import { randomUUID } from 'node:crypto';
import { JOBS_CHANNEL } from '../channel.ts';
import { prepared, type Queryable } from '../db.ts';
import { MAX_PRIORITY } from '../validate.ts';
import { recordTransitions } from './history.ts';
import type { Actor, TransitionRecord } from '../types.ts';

/** States a job can be replayed from: it ended without success and will not run again by itself. */
export const REPLAYABLE_STATES = ['dead_lettered', 'cleared', 'canceled', 'timed_out'] as const;

/**
 * (none) -> queued: a new job cloned from each given job of one tenant (same
 * type, payload, correlation id and attempt budget; fresh attempts; priority
 * raised by one, or as given), pointing back with replay_of. The unique index
 * on (tenant_id, replay_of) makes it idempotent: a job already replayed, by
 * this call or an earlier or concurrent one, is not replayed again. The
 * original is left as it is. One statement.
 */
const replayStatement = prepared('replay', `
WITH src AS (
  SELECT tenant_id, id, job_type, payload, priority, max_attempts, correlation_id FROM orch.jobs
  WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND state IN (${REPLAYABLE_STATES.map((s) => `'${s}'`).join(', ')})
), ins AS (
  INSERT INTO orch.jobs (tenant_id, job_type, payload, priority, max_attempts, correlation_id, replay_of, history)
  SELECT tenant_id, job_type, payload, coalesce($3::integer, least(priority + 1, ${MAX_PRIORITY})), max_attempts, correlation_id, id, ARRAY[$6::uuid]
  FROM src ORDER BY id
  ON CONFLICT (tenant_id, replay_of) WHERE replay_of IS NOT NULL DO NOTHING
  RETURNING id, tenant_id, job_type, replay_of
), entries AS (
  SELECT id, tenant_id, job_type, NULL::orch.job_state AS from_state, 'queued'::orch.job_state AS to_state, 0 AS attempt,
         NULL::uuid AS lease_id, NULL::jsonb AS error FROM ins
), ${recordTransitions('entries', '$6::uuid', '$4', '$5', "'replayed'")}, wake AS (
  SELECT pg_notify('${JOBS_CHANNEL}', job_type || ' ' || count(*)) FROM ins GROUP BY job_type
)
SELECT i.id AS job_id, ins.id AS new_id, ins.job_type,
  coalesce(ins.id, (SELECT r.id FROM orch.jobs r WHERE r.tenant_id = $1 AND r.replay_of = i.id)) AS replay_id,
  (src.id IS NOT NULL) AS replayable, (SELECT j.state FROM orch.jobs j WHERE j.tenant_id = $1 AND j.id = i.id) AS state,
  (SELECT count(*) FROM wake) AS woken
FROM unnest($2::bigint[]) AS i(id) LEFT JOIN ins ON ins.replay_of = i.id LEFT JOIN src ON src.id = i.id`);

interface ReplayRow { job_id: string; new_id: string | null; job_type: string | null; replay_id: string | null; replayable: boolean; state: string | null }

/**
 * What happened to each job asked for: replayed now (newJobId), replayed
 * before (replayJobId names the earlier replay), not replayable in its state,
 * or not found.
 */
export type ReplayOutcome =
  | { jobId: string; status: 'replayed'; replayJobId: string }
  | { jobId: string; status: 'already_replayed'; replayJobId: string }
  | { jobId: string; status: 'not_replayable'; state: string }
  | { jobId: string; status: 'not_found' };

export async function replay(
  db: Queryable, tenantId: string, jobIds: string[], opts: { priority: number | null; actor: Actor; reason: string },
): Promise<{ outcomes: ReplayOutcome[]; records: TransitionRecord[] }> {
  if (jobIds.length === 0) return { outcomes: [], records: [] };
  const { rows } = await replayStatement<ReplayRow>(db, [tenantId, jobIds, opts.priority, opts.actor, opts.reason, randomUUID()]);
  const records: TransitionRecord[] = [];
  const outcomes = rows.map((r): ReplayOutcome => {
    if (r.new_id !== null) {
      records.push({ jobId: r.new_id, tenantId, jobType: r.job_type!, from: null, to: 'queued', attempt: 0, cause: 'replayed' });
      return { jobId: r.job_id, status: 'replayed', replayJobId: r.new_id };
    }
    if (r.replay_id !== null) return { jobId: r.job_id, status: 'already_replayed', replayJobId: r.replay_id };
    if (r.state === null) return { jobId: r.job_id, status: 'not_found' };
    return { jobId: r.job_id, status: 'not_replayable', state: r.state };
  });
  return { outcomes, records };
}
