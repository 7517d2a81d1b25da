import { prepared, type Queryable } from '../db.ts';

/** End states a job leaves the ledger from once retained long enough; dead letters stay until cleared. */
export const PRUNABLE_STATES = ['succeeded', 'canceled', 'timed_out', 'cleared'] as const;

const prunable = PRUNABLE_STATES.map((s) => `'${s}'`).join(', ');

/**
 * Deletes the jobs that ended before the cutoff ($1) among those of the next
 * $4 history batches older than it after the cursor ($2, $3), with their
 * edges and every history batch none of whose jobs is left. One statement.
 * Kept: dead letters, a job that a waiting job still depends on, and the
 * steps of a workflow still running (its last steps, and the workflow, go
 * when it has ended before the cutoff). A job is looked at again through its
 * later batches, so one that ends after the cursor passed its first batch
 * is found through its last. Returns the cursor's new position.
 */
const pruneStatement = prepared('prune_finished', `
WITH batches AS (
  SELECT batch_id, tenant_id, at, job_ids FROM orch.job_transitions
  WHERE at < $1 AND (at, batch_id) > ($2::timestamptz, $3::uuid)
  ORDER BY at, batch_id LIMIT $4
), candidates AS (
  SELECT DISTINCT b.tenant_id, x.id FROM batches b CROSS JOIN LATERAL unnest(b.job_ids) AS x(id)
), gone AS (
  DELETE FROM orch.jobs j USING candidates c
  WHERE j.tenant_id = c.tenant_id AND j.id = c.id AND j.state IN (${prunable}) AND j.finished_at < $1
    AND NOT EXISTS (SELECT 1 FROM orch.job_edges e JOIN orch.jobs w ON w.tenant_id = e.tenant_id AND w.id = e.child_id
                    WHERE e.tenant_id = j.tenant_id AND e.parent_id = j.id AND w.state = 'waiting')
    AND NOT EXISTS (SELECT 1 FROM orch.workflows f WHERE f.id = j.workflow_id AND (f.state = 'running' OR f.finished_at >= $1))
  RETURNING j.tenant_id, j.id, j.history
), ${forgetJobs('gone')}
SELECT (SELECT count(*) FROM gone)::integer AS jobs, (SELECT count(*) FROM history_gone)::integer AS batches,
  (SELECT count(*) FROM batches)::integer AS scanned,
  (SELECT to_json(at) #>> '{}' FROM batches ORDER BY at DESC, batch_id DESC LIMIT 1) AS cursor_at,
  (SELECT batch_id FROM batches ORDER BY at DESC, batch_id DESC LIMIT 1) AS cursor_batch`);

/**
 * Deletes the workflows that ended before the cutoff ($1), $2 at a time,
 * with the jobs of theirs that ended (their edges and history as above).
 */
const pruneWorkflowsStatement = prepared('prune_workflows', `
WITH flows AS (
  -- a workflow with a dead letter left keeps its row (and its steps) until that is cleared
  SELECT id, tenant_id FROM orch.workflows f WHERE state <> 'running' AND finished_at < $1
    AND NOT EXISTS (SELECT 1 FROM orch.jobs j WHERE j.tenant_id = f.tenant_id AND j.workflow_id = f.id AND j.state NOT IN (${prunable}))
  ORDER BY finished_at LIMIT $2
), gone AS (
  DELETE FROM orch.jobs j USING flows f
  WHERE j.tenant_id = f.tenant_id AND j.workflow_id = f.id AND j.state IN (${prunable})
  RETURNING j.tenant_id, j.id, j.history
), ${forgetJobs('gone')}, flows_gone AS (
  DELETE FROM orch.workflows w USING flows f WHERE w.id = f.id RETURNING w.id
)
SELECT (SELECT count(*) FROM gone)::integer AS jobs, (SELECT count(*) FROM flows_gone)::integer AS workflows,
  (SELECT count(*) FROM flows)::integer AS scanned`);

/** The edges and history of the jobs a `gone` CTE deleted (tenant_id, id, history): a batch goes when none of its jobs is left. */
function forgetJobs(gone: string): string {
  return `edges_gone AS (
  DELETE FROM orch.job_edges e USING ${gone} g
  WHERE e.tenant_id = g.tenant_id AND (e.parent_id = g.id OR e.child_id = g.id)
), history_gone AS (
  DELETE FROM orch.job_transitions t
  USING (SELECT DISTINCT g.tenant_id, h.batch_id FROM ${gone} g CROSS JOIN LATERAL unnest(g.history) AS h(batch_id)) d
  WHERE t.tenant_id = d.tenant_id AND t.batch_id = d.batch_id
    AND NOT EXISTS (
      SELECT 1 FROM unnest(t.job_ids) AS x(id) JOIN orch.jobs j ON j.tenant_id = t.tenant_id AND j.id = x.id
      WHERE NOT EXISTS (SELECT 1 FROM ${gone} g2 WHERE g2.tenant_id = j.tenant_id AND g2.id = j.id))
  RETURNING t.batch_id
)`;
}

export interface PruneCursor { at: string; batchId: string }
export const PRUNE_START: PruneCursor = { at: '-infinity', batchId: '00000000-0000-0000-0000-000000000000' };

export interface PruneResult { jobs: number; batches: number; scanned: number; cursor: PruneCursor }

export async function pruneFinished(db: Queryable, cutoff: Date, cursor: PruneCursor, limit: number): Promise<PruneResult> {
  const { rows: [r] } = await pruneStatement<{ jobs: number; batches: number; scanned: number; cursor_at: string | null; cursor_batch: string | null }>(
    db, [cutoff, cursor.at, cursor.batchId, limit]);
  return {
    jobs: r!.jobs, batches: r!.batches, scanned: r!.scanned,
    cursor: r!.cursor_at && r!.cursor_batch ? { at: r!.cursor_at, batchId: r!.cursor_batch } : cursor,
  };
}

export async function pruneWorkflows(db: Queryable, cutoff: Date, limit: number): Promise<{ jobs: number; workflows: number; scanned: number }> {
  const { rows: [r] } = await pruneWorkflowsStatement<{ jobs: number; workflows: number; scanned: number }>(db, [cutoff, limit]);
  return r!;
}
