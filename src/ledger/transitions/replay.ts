import { randomUUID } from 'node:crypto';
import { notifyRunnable } from '../channel.ts';
import { prepared, type Queryable } from '../db.ts';
import { MAX_PRIORITY } from '../validate.ts';
import { recordTransitions } from './history.ts';
import { REPLAYABLE_STATES, type Actor, type TransitionRecord } from '../types.ts';

/** The replayable states as an SQL list: the ends without success. */
const FAILED_ENDS = REPLAYABLE_STATES.map((s) => `'${s}'`).join(', ');

/**
 * (none) -> queued: a new job cloned from each given job of one tenant (same
 * type, payload, correlation id and attempt budget; fresh attempts; priority
 * raised by one, or as given), pointing back with replay_of. The unique index
 * on (tenant_id, replay_of) makes it idempotent: a job already replayed, by
 * this call or an earlier or concurrent one, is not replayed again. The
 * original is left as it is. One statement.
 *
 * In a graph the replay takes the original's place: it waits (state
 * `waiting`) for the original's parents that have not succeeded, or for their
 * replays when they are replayed with it, and the original's other children
 * wait for it instead (a `wait` edge comes back to life). Its workflow is
 * running again.
 */
const replayStatement = prepared('replay', `
WITH src AS (
  SELECT tenant_id, id, job_type, payload, priority, max_attempts, correlation_id, workflow_id, step_name, dependents, has_parents
  FROM orch.jobs o
  WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND state IN (${FAILED_ENDS})
    AND NOT EXISTS (SELECT 1 FROM orch.jobs r WHERE r.tenant_id = $1 AND r.replay_of = o.id)
), inc AS (
  SELECT e.child_id, e.parent_id, e.policy, EXISTS (SELECT 1 FROM src p WHERE p.id = e.parent_id) AS parent_replayed
  FROM orch.job_edges e JOIN src s ON e.tenant_id = s.tenant_id AND e.child_id = s.id WHERE s.has_parents
), locked AS (
  -- parents not replayed: one more dependent each (as in depend.ts), read at their latest state
  UPDATE orch.jobs p SET dependents = p.dependents + x.n
  FROM (SELECT parent_id, count(*)::integer AS n FROM inc WHERE NOT parent_replayed GROUP BY parent_id) x
  WHERE p.tenant_id = $1 AND p.id = x.parent_id
  RETURNING p.id, p.state
), pending AS (
  SELECT i.child_id, count(*) FILTER (WHERE i.parent_replayed OR NOT (l.state = 'succeeded'
    OR (l.state IN (${FAILED_ENDS}) AND i.policy = 'ignore')))::integer AS n
  FROM inc i LEFT JOIN locked l ON l.id = i.parent_id GROUP BY i.child_id
), ins AS (
  INSERT INTO orch.jobs (tenant_id, job_type, payload, priority, max_attempts, correlation_id, replay_of, history,
    state, pending_parents, dependents, has_parents, workflow_id, step_name)
  SELECT s.tenant_id, s.job_type, s.payload, coalesce($3::integer, least(s.priority + 1, ${MAX_PRIORITY})), s.max_attempts, s.correlation_id, s.id,
    ARRAY[$6::uuid], CASE WHEN coalesce(pd.n, 0) > 0 THEN 'waiting' ELSE 'queued' END::orch.job_state, coalesce(pd.n, 0), s.dependents,
    s.has_parents, s.workflow_id, s.step_name
  FROM src s LEFT JOIN pending pd ON pd.child_id = s.id ORDER BY s.id
  ON CONFLICT (tenant_id, replay_of) WHERE replay_of IS NOT NULL DO NOTHING
  RETURNING id, tenant_id, job_type, replay_of, state, workflow_id
), copied_edges AS (
  INSERT INTO orch.job_edges (tenant_id, parent_id, child_id, policy)
  SELECT $1, coalesce(mp.id, i.parent_id), mc.id, i.policy FROM inc i JOIN ins mc ON mc.replay_of = i.child_id LEFT JOIN ins mp ON mp.replay_of = i.parent_id
), moved_edges AS (
  UPDATE orch.job_edges e SET parent_id = m.id FROM ins m
  WHERE e.tenant_id = $1 AND e.parent_id = m.replay_of AND NOT EXISTS (SELECT 1 FROM ins c WHERE c.replay_of = e.child_id)
), reopened AS (
  -- every replayable state is a failed end: the workflow has that many bad steps fewer and open ones more
  UPDATE orch.workflows w SET open_steps = w.open_steps + x.n, bad_steps = w.bad_steps - x.n, state = 'running',
    cancel_requested = false, finished_at = NULL, updated_at = now()
  FROM (SELECT workflow_id, count(*)::integer AS n FROM ins WHERE workflow_id IS NOT NULL GROUP BY workflow_id) x WHERE w.id = x.workflow_id
), entries AS (
  SELECT id, tenant_id, job_type, NULL::orch.job_state AS from_state, state AS to_state, 0 AS attempt,
         NULL::uuid AS lease_id, NULL::jsonb AS error FROM ins
), ${recordTransitions('entries', '$6::uuid', '$4', '$5', "'replayed'")}, wake AS (
  ${notifyRunnable('ins', "state = 'queued'")}
)
SELECT i.id AS job_id, ins.id AS new_id, ins.job_type, ins.state AS new_state,
  coalesce(ins.id, (SELECT r.id FROM orch.jobs r WHERE r.tenant_id = $1 AND r.replay_of = i.id)) AS replay_id,
  (src.id IS NOT NULL) AS replayable, (SELECT j.state FROM orch.jobs j WHERE j.tenant_id = $1 AND j.id = i.id) AS state,
  (SELECT count(*) FROM wake) AS woken
FROM unnest($2::bigint[]) AS i(id) LEFT JOIN ins ON ins.replay_of = i.id LEFT JOIN src ON src.id = i.id`);

interface ReplayRow { job_id: string; new_id: string | null; job_type: string | null; new_state: 'queued' | 'waiting' | null; replay_id: string | null; replayable: boolean; state: string | null }

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
      records.push({ jobId: r.new_id, tenantId, jobType: r.job_type!, from: null, to: r.new_state!, attempt: 0, cause: 'replayed' });
      return { jobId: r.job_id, status: 'replayed', replayJobId: r.new_id };
    }
    if (r.replay_id !== null) return { jobId: r.job_id, status: 'already_replayed', replayJobId: r.replay_id };
    if (r.state === null) return { jobId: r.job_id, status: 'not_found' };
    return { jobId: r.job_id, status: 'not_replayable', state: r.state };
  });
  return { outcomes, records };
}
