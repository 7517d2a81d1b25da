import type { Queryable } from '../ledger/db.ts';
import { CURRENT_COUNTS } from '../ledger/queue-counts.ts';
import { NO_OUTCOME_CAUSES } from '../ledger/types.ts';

/**
 * The job history (orch.job_transitions) read as the counters of
 * src/metrics/metrics.ts count it, over a window of time. The history is one
 * row per transition statement with an index on (at) (migration 0017): a
 * window of the last minutes or hours is an index range, never a scan of the
 * job table.
 */

/** SQL: the history entries of the last `since` (an SQL interval expression), one row per job transition. */
const entriesSince = (since: string) => `
  SELECT t.at, t.cause, e.job_type, e.from_state, e.to_state, e.error
  FROM orch.job_transitions t
  CROSS JOIN LATERAL unnest(t.job_types, t.from_states, t.to_states, t.errors) AS e(job_type, from_state, to_state, error)
  WHERE t.at > ${since} AND e.job_type IS NOT NULL`;

/**
 * SQL: attempt outcomes of the last `since`, as orchestrator_jobs_total{outcome} and
 * orchestrator_job_failures_total{error_class} count them (Metrics.onTransitions): an enqueue, a
 * claim and the NO_OUTCOME_CAUSES are no outcome; a lease that went back to the queue is
 * `retried`; a lapsed lease's error class is LeaseExpired.
 */
export const attemptOutcomesSince = (since: string) => `
  SELECT h.at, h.job_type, CASE WHEN h.to_state = 'queued' THEN 'retried' ELSE h.to_state::text END AS outcome,
    CASE WHEN h.cause = 'lease_expired' THEN 'LeaseExpired' ELSE h.error->>'class' END AS error_class
  FROM (${entriesSince(since)}) h
  WHERE h.from_state IS NOT NULL AND h.to_state <> 'leased' AND h.cause NOT IN (${[...NO_OUTCOME_CAUSES].map((c) => `'${c}'`).join(', ')})`;

/** Per job type, minute by minute: attempts that ended so, and the jobs waiting to run at the minute's end. */
export interface Throughput {
  /** Start of each minute, oldest first; the last is the current (partial) minute. */
  times: string[];
  jobTypes: {
    jobType: string;
    succeeded: number[];
    /** Failed attempts that will be retried. */
    failed: number[];
    deadLettered: number[];
    /** Jobs queued or waiting for a retry at the end of the minute. */
    waiting: number[];
  }[];
}

/**
 * The last `minutes` minutes of the history. The waiting series is walked back
 * from the queue counts now (never a count of the job table): each minute's
 * count is the next minute's less the jobs that entered the queue in that next
 * minute, plus those that left it. One statement, so the counts and the
 * history are read in one snapshot.
 */
export async function throughput(db: Queryable, minutes: number): Promise<Throughput> {
  const { rows } = await db.query<{ minute: Date | null; job_type: string; succeeded: number; failed: number; dead_lettered: number; waiting_delta: number; waiting_now: number }>(`
    WITH since AS (SELECT date_trunc('minute', now()) - make_interval(mins => $1::integer - 1) AS t),
    h AS (${entriesSince('(SELECT t FROM since)')}),
    per_minute AS (
      SELECT date_trunc('minute', h.at) AS minute, h.job_type,
        count(*) FILTER (WHERE h.from_state = 'leased' AND h.to_state = 'succeeded')::int AS succeeded,
        count(*) FILTER (WHERE h.from_state = 'leased' AND h.to_state = 'failed')::int AS failed,
        count(*) FILTER (WHERE h.from_state IS NOT NULL AND h.to_state = 'dead_lettered')::int AS dead_lettered,
        (count(*) FILTER (WHERE h.to_state IN ('queued', 'failed')) - count(*) FILTER (WHERE h.from_state IN ('queued', 'failed')))::int AS waiting_delta
      FROM h GROUP BY 1, 2
    ),
    now_waiting AS (SELECT job_type, sum(n)::int AS n FROM ${CURRENT_COUNTS} c WHERE state IN ('queued', 'failed') GROUP BY job_type)
    SELECT m.minute, coalesce(m.job_type, w.job_type) AS job_type, coalesce(m.succeeded, 0) AS succeeded, coalesce(m.failed, 0) AS failed,
      coalesce(m.dead_lettered, 0) AS dead_lettered, coalesce(m.waiting_delta, 0) AS waiting_delta, coalesce(w.n, 0) AS waiting_now
    FROM per_minute m FULL JOIN now_waiting w ON w.job_type = m.job_type
    ORDER BY 2, 1`, [minutes]);
  const end = Math.floor(Date.now() / 60_000) * 60_000;
  const start = end - (minutes - 1) * 60_000;
  const times = Array.from({ length: minutes }, (_, i) => new Date(start + i * 60_000).toISOString());
  const byType = new Map<string, Throughput['jobTypes'][number] & { delta: number[] }>();
  for (const r of rows) {
    let s = byType.get(r.job_type);
    if (!s) {
      const zeros = () => new Array<number>(minutes).fill(0);
      byType.set(r.job_type, (s = { jobType: r.job_type, succeeded: zeros(), failed: zeros(), deadLettered: zeros(), waiting: zeros(), delta: zeros() }));
      s.waiting[minutes - 1] = r.waiting_now;
    }
    if (r.minute === null) continue;
    // the database's minute may lead the server's clock by a little: fold it into the last minute
    const i = Math.min(minutes - 1, Math.max(0, Math.round((r.minute.getTime() - start) / 60_000)));
    s.succeeded[i]! += r.succeeded;
    s.failed[i]! += r.failed;
    s.deadLettered[i]! += r.dead_lettered;
    s.delta[i]! += r.waiting_delta;
  }
  const jobTypes = [...byType.values()].map(({ delta, ...s }) => {
    for (let i = minutes - 2; i >= 0; i--) s.waiting[i] = Math.max(0, s.waiting[i + 1]! - delta[i + 1]!);
    return s;
  });
  return { times, jobTypes };
}
