import type { Queryable } from './db.ts';
import { notPaused } from '../flow/pauses.ts';
import { JOB_COLUMNS, toHistory, toJob, type HistoryRow, type JobRow } from './rows.ts';

/** Whole jobs, plus whether a dispatch pause holds them back. */
const JOB_VIEW = `${JOB_COLUMNS}, (state IN ('queued', 'failed') AND NOT ${notPaused('tenant_id', 'job_type')}) AS paused`;
import type { HistoryEntry, Job, JobState } from './types.ts';

export interface JobFilter {
  tenantId: string;
  state?: JobState;
  jobType?: string;
  /** Return jobs with id below this (the previous page's nextCursor). */
  cursor?: string;
  limit: number;
}

export async function getJob(db: Queryable, tenantId: string, id: string): Promise<Job | null> {
  const { rows } = await db.query<JobRow>(`SELECT ${JOB_VIEW} FROM orch.jobs WHERE tenant_id = $2 AND id = $1`, [id, tenantId]);
  return rows[0] ? toJob(rows[0]) : null;
}

export async function getHistory(db: Queryable, tenantId: string, id: string): Promise<HistoryEntry[]> {
  const { rows } = await db.query<HistoryRow>(
    `SELECT t.at, e.from_state, e.to_state, e.attempt, e.lease_id, t.actor, t.reason, e.error
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

/** Newest first, keyset-paginated on id so deep pages cost the same as the first. */
export async function listJobs(db: Queryable, f: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }> {
  const { rows } = await db.query<JobRow>(
    `SELECT ${JOB_VIEW} FROM orch.jobs
     WHERE tenant_id = $1 AND ($2::orch.job_state IS NULL OR state = $2) AND ($3::text IS NULL OR job_type = $3)
       AND ($4::bigint IS NULL OR id < $4)
     ORDER BY id DESC LIMIT $5`,
    [f.tenantId, f.state ?? null, f.jobType ?? null, f.cursor ?? null, f.limit],
  );
  const jobs = rows.map(toJob);
  return { jobs, nextCursor: jobs.length === f.limit ? jobs[jobs.length - 1]!.id : null };
}
