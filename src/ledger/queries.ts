import type { Queryable } from './db.ts';
import { notPaused } from './flow-sql.ts';
import { LedgerError } from './errors.ts';
import { CURRENT_COUNTS } from './queue-counts.ts';
import { JOB_COLUMNS, toHistory, toJob, type HistoryRow, type JobRow } from './rows.ts';
import { COUNTED_STATES } from './transitions/history.ts';
import { CANCELABLE_STATES, JOB_STATES, REPLAYABLE_STATES, type BulkAction, type HistoryEntry, type Job, type JobSort, type JobState } from './types.ts';

/** Whole jobs, plus whether a dispatch pause holds them back. */
const JOB_VIEW = `${JOB_COLUMNS}, (state IN ('queued', 'failed') AND NOT ${notPaused('tenant_id', 'job_type')}) AS paused`;

/** The states `priority` can list: the claim index holds only these rows. */
export const WAITING_STATES: readonly JobState[] = ['queued', 'failed'];

/** What a job list, the state counts and a bulk action select within a tenant, besides the state. */
export interface JobMatch {
  jobType?: string;
  /** The class of the job's last error. */
  errorClass?: string;
  /** Created at or after this time. */
  createdAfter?: Date;
  /** Created before this time. */
  createdBefore?: Date;
  /** A JSON object the payload contains (jsonb @>), as stored JSON text (validate.ts toStorableJson). */
  payload?: string;
  correlationId?: string;
}

export interface JobFilter extends JobMatch {
  tenantId: string;
  state?: JobState;
  /** Default newest. */
  sort?: JobSort;
  /** Continue after this job (the previous page's nextCursor), in the same sort. */
  cursor?: string;
  limit: number;
}

/**
 * SQL conditions on the job row `j` for a match (ANDed; "true" for none),
 * their values appended to `params`. Only the conditions given are written,
 * so the planner sees no "$n IS NULL OR" branches. `jobType: false` leaves
 * the type out for a caller that selects it otherwise.
 */
function matchSql(m: JobMatch, params: unknown[], opts: { jobType?: boolean } = {}): string {
  const p = (v: unknown) => `$${params.push(v)}`;
  const where: string[] = [];
  if (m.jobType !== undefined && opts.jobType !== false) where.push(`j.job_type = ${p(m.jobType)}`);
  if (m.errorClass !== undefined) where.push(`j.last_error->>'class' = ${p(m.errorClass)}`);
  if (m.createdAfter !== undefined) where.push(`j.created_at >= ${p(m.createdAfter)}`);
  if (m.createdBefore !== undefined) where.push(`j.created_at < ${p(m.createdBefore)}`);
  if (m.payload !== undefined) where.push(`j.payload @> ${p(m.payload)}::jsonb`);
  if (m.correlationId !== undefined) where.push(`j.correlation_id = ${p(m.correlationId)}`);
  return where.length > 0 ? where.join(' AND ') : 'true';
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
  let rows: JobRow[];
  if (sort === 'priority') {
    const params: unknown[] = [f.tenantId, f.state, f.jobType ?? null, f.cursor ?? null, f.limit];
    const match = matchSql(f, params, { jobType: false });
    ({ rows } = await db.query<JobRow>(
      `WITH c AS (SELECT priority, run_after, id FROM orch.jobs WHERE tenant_id = $1 AND id = $4::bigint)
       SELECT x.* FROM orch.job_types t CROSS JOIN LATERAL (
         (SELECT ${JOB_VIEW} FROM orch.jobs j
          WHERE j.job_type = t.name AND j.tenant_id = $1 AND j.state IN ('queued', 'failed') AND j.state = $2
            AND $4::bigint IS NOT NULL AND j.priority = (SELECT priority FROM c) AND (j.run_after, j.id) > ((SELECT run_after FROM c), $4::bigint)
            AND ${match}
          ORDER BY j.priority DESC, j.run_after, j.id LIMIT $5)
         UNION ALL
         (SELECT ${JOB_VIEW} FROM orch.jobs j
          WHERE j.job_type = t.name AND j.tenant_id = $1 AND j.state IN ('queued', 'failed') AND j.state = $2
            AND ($4::bigint IS NULL OR j.priority < (SELECT priority FROM c)) AND ${match}
          ORDER BY j.priority DESC, j.run_after, j.id LIMIT $5)
       ) x
       WHERE ($3::text IS NULL OR t.name = $3)
       ORDER BY x.priority DESC, x.run_after, x.id LIMIT $5`,
      params));
  } else {
    const params: unknown[] = [f.tenantId, f.limit];
    const state = f.state ? `AND j.state = ${'$' + params.push(f.state)}` : '';
    const cursor = f.cursor ? `AND j.id ${sort === 'oldest' ? '>' : '<'} ${'$' + params.push(f.cursor)}` : '';
    const match = matchSql(f, params);
    ({ rows } = await db.query<JobRow>(
      `SELECT ${JOB_VIEW} FROM orch.jobs j WHERE j.tenant_id = $1 ${state} ${cursor} AND ${match}
       ORDER BY j.id ${sort === 'oldest' ? 'ASC' : 'DESC'} LIMIT $2`,
      params));
  }
  const jobs = rows.map(toJob);
  return { jobs, nextCursor: jobs.length === f.limit ? jobs[jobs.length - 1]!.id : null };
}

/**
 * Rows of the tenant the state counts look at, newest first: the counts of
 * a filter cost at most this many rows, whatever the tenant holds.
 */
export const COUNT_SCAN = 50_000;

export interface StateCount {
  state: JobState;
  count: number;
  /** A lower bound: only the newest COUNT_SCAN jobs of the tenant were looked at. */
  capped: boolean;
}

/**
 * Jobs of a tenant per state matching `m`. The live states of a match on
 * the type alone come exact from the queue counts (src/ledger/queue-counts.ts);
 * the rest are counted among the newest COUNT_SCAN jobs of the tenant (the
 * primary key's range, so the cost is bounded however rare the match), and
 * say so when older jobs were left out.
 */
export async function countJobs(db: Queryable, tenantId: string, m: JobMatch): Promise<{ counts: StateCount[]; capped: boolean }> {
  const params: unknown[] = [tenantId, COUNT_SCAN];
  const match = matchSql(m, params);
  const { rows: scanned } = await db.query<{ state: JobState; n: string; seen: string }>(
    `SELECT j.state, count(*) FILTER (WHERE ${match}) AS n, count(*) AS seen
     FROM (SELECT * FROM orch.jobs WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2) j GROUP BY j.state`,
    params);
  const scanCapped = scanned.reduce((sum, r) => sum + Number(r.seen), 0) >= COUNT_SCAN;
  const exact = new Map<JobState, number>();
  const typeOnly = (Object.keys(m) as (keyof JobMatch)[]).every((k) => k === 'jobType' || m[k] === undefined);
  if (typeOnly) {
    const { rows } = await db.query<{ state: JobState; n: string }>(
      `SELECT state, sum(n) AS n FROM ${CURRENT_COUNTS} c WHERE tenant_id = $1 AND ($2::text IS NULL OR job_type = $2) GROUP BY state`,
      [tenantId, m.jobType ?? null]);
    for (const s of COUNTED_STATES) exact.set(s, 0);
    for (const r of rows) exact.set(r.state, Number(r.n));
  }
  const counts = JOB_STATES.map((state): StateCount => {
    const known = exact.get(state);
    if (known !== undefined) return { state, count: known, capped: false };
    return { state, count: Number(scanned.find((r) => r.state === state)?.n ?? 0), capped: scanCapped };
  });
  return { counts, capped: counts.some((c) => c.capped) };
}

/** The jobs each bulk action applies to: their states, and what else a job of those states must be (SQL on the job row `j`). */
const BULK_TARGETS = {
  cancel: { states: CANCELABLE_STATES, where: 'true' },
  // a job replayed before is not again (the replay transition would skip it)
  replay: { states: REPLAYABLE_STATES, where: 'NOT EXISTS (SELECT 1 FROM orch.jobs r WHERE r.tenant_id = j.tenant_id AND r.replay_of = j.id)' },
  // "retry now": jobs still waiting for their backoff
  retry: { states: ['failed'], where: 'j.run_after > now()' },
} as const satisfies Record<BulkAction, { states: readonly JobState[]; where: string }>;

/** What a bulk action selected and did (POST /jobs/bulk). */
export interface BulkResult {
  action: BulkAction;
  dryRun: boolean;
  /** Jobs selected, at most the request's limit. */
  matched: number;
  /** More jobs match than the limit: run again for the rest. */
  more: boolean;
  /** Jobs it changed: 0 for a dry run, fewer than matched when some changed state meanwhile. */
  applied: number;
  /** The first 100 selected. */
  jobIds: string[];
}

/** The states a bulk action can act on. */
export const bulkStates = (action: BulkAction): readonly JobState[] => BULK_TARGETS[action].states;

/**
 * Ids of the tenant's jobs that `action` would act on among those matching
 * `m` (and `state`, one of the action's states), oldest first, at most `limit`.
 */
export async function bulkTargets(
  db: Queryable, tenantId: string, action: BulkAction, m: JobMatch & { state?: JobState }, limit: number,
): Promise<string[]> {
  const { states, where } = BULK_TARGETS[action];
  const params: unknown[] = [tenantId, m.state ? [m.state] : states, limit];
  const { rows } = await db.query<{ id: string }>(
    `SELECT j.id FROM orch.jobs j WHERE j.tenant_id = $1 AND j.state = ANY($2::orch.job_state[]) AND ${where} AND ${matchSql(m, params)}
     ORDER BY j.id LIMIT $3`,
    params);
  return rows.map((r) => r.id);
}
