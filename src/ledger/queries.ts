import type { Queryable } from './db.ts';
import { notPaused } from './flow-sql.ts';
import { LedgerError } from './errors.ts';
import { JOB_COLUMNS, toHistory, toJob, type HistoryRow, type JobRow } from './rows.ts';

/** Whole jobs, plus whether a dispatch pause holds them back. */
const JOB_VIEW = `${JOB_COLUMNS}, (state IN ('queued', 'failed') AND NOT ${notPaused('tenant_id', 'job_type')}) AS paused`;
import type { HistoryEntry, Job, JobSort, JobState } from './types.ts';

/** The states `priority` can list: the claim index holds only these rows. */
export const WAITING_STATES: readonly JobState[] = ['queued', 'failed'];

export interface JobFilter {
  tenantId: string;
  state?: JobState;
  jobType?: string;
  /** Default newest. */
  sort?: JobSort;
  /** Continue after this job (the previous page's nextCursor), in the same sort. */
  cursor?: string;
  limit: number;
}

export async function getJob(db: Queryable, tenantId: string, id: string): Promise<Job | null> {
  const { rows } = await db.query<JobRow>(`SELECT ${JOB_VIEW} FROM orch.jobs WHERE tenant_id = $2 AND id = $1`, [id, tenantId]);
  return rows[0] ? toJob(rows[0]) : null;
}

export async function getHistory(db: Queryable, tenantId: string, id: string): Promise<HistoryEntry[]> {
  const { rows } = await db.query<HistoryRow>(
    `SELECT t.at, e.from_state, e.to_state, e.attempt, e.lease_id, t.actor, t.cause, t.reason, e.error
     FROM orch.jobs j
     CROSS JOIN LATERAL unnest(j.history) WITH ORDINALITY AS b(batch_id, n)
     JOIN orch.job_transitions t ON t.batch_id = b.batch_id AND t.tenant_id = j.tenant_id
     CROSS JOIN LATERAL unnest(t.job_ids, t.from_states, t.to_states, t.attempts, t.lease_ids, t.errors)
       AS e(job_id, from_state, to_state, attempt, lease_id, error)
     WHERE j.id = $1 AND j.tenant_id = $2 AND e.job_id = j.id
     ORDER BY b.n`,
    [id, tenantId],
  );
  return rows.map(toHistory);
}

/**
 * Keyset-paginated so deep pages cost the same as the first. newest/oldest
 * walk the primary key (tenant_id, id) either way. priority lists waiting
 * jobs in the order workers will claim them (priority, then run_after, then
 * id) from the claim index, one ordered range per job type merged here; the
 * cursor job's own position bounds the next page, split into "same priority,
 * later in line" and "lower priority" so both halves are index ranges.
 */
export async function listJobs(db: Queryable, f: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }> {
  const sort = f.sort ?? 'newest';
  if (sort === 'priority' && !(f.state && WAITING_STATES.includes(f.state))) {
    throw new LedgerError('invalid', 'sort', `sort=priority orders waiting work: give state=${WAITING_STATES.join(' or state=')}`);
  }
  const { rows } = sort === 'priority'
    ? await db.query<JobRow>(
      `WITH c AS (SELECT priority, run_after, id FROM orch.jobs WHERE tenant_id = $1 AND id = $4::bigint)
       SELECT x.* FROM orch.job_types t CROSS JOIN LATERAL (
         (SELECT ${JOB_VIEW} FROM orch.jobs j
          WHERE j.job_type = t.name AND j.tenant_id = $1 AND j.state IN ('queued', 'failed') AND j.state = $2
            AND $4::bigint IS NOT NULL AND j.priority = (SELECT priority FROM c) AND (j.run_after, j.id) > ((SELECT run_after FROM c), $4::bigint)
          ORDER BY j.priority DESC, j.run_after, j.id LIMIT $5)
         UNION ALL
         (SELECT ${JOB_VIEW} FROM orch.jobs j
          WHERE j.job_type = t.name AND j.tenant_id = $1 AND j.state IN ('queued', 'failed') AND j.state = $2
            AND ($4::bigint IS NULL OR j.priority < (SELECT priority FROM c))
          ORDER BY j.priority DESC, j.run_after, j.id LIMIT $5)
       ) x
       WHERE ($3::text IS NULL OR t.name = $3)
       ORDER BY x.priority DESC, x.run_after, x.id LIMIT $5`,
      [f.tenantId, f.state, f.jobType ?? null, f.cursor ?? null, f.limit])
    : await db.query<JobRow>(
      `SELECT ${JOB_VIEW} FROM orch.jobs
       WHERE tenant_id = $1 AND ($2::orch.job_state IS NULL OR state = $2) AND ($3::text IS NULL OR job_type = $3)
         AND ($4::bigint IS NULL OR ${sort === 'oldest' ? 'id > $4' : 'id < $4'})
       ORDER BY id ${sort === 'oldest' ? 'ASC' : 'DESC'} LIMIT $5`,
      [f.tenantId, f.state ?? null, f.jobType ?? null, f.cursor ?? null, f.limit]);
  const jobs = rows.map(toJob);
  return { jobs, nextCursor: jobs.length === f.limit ? jobs[jobs.length - 1]!.id : null };
}
