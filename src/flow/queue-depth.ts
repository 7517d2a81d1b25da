import type { Queryable } from '../ledger/db.ts';
import { CURRENT_COUNTS } from '../ledger/queue-counts.ts';
import { covers, notPaused, pendingReleases, quotaInForce, quotaRoom } from '../ledger/flow-sql.ts';

/** Jobs per tenant, type and what they are doing, for orchestrator_queue_depth and orchestrator_dlq_depth. */
export interface DepthSample {
  tenantId: string;
  jobType: string;
  /** queued (runnable or waiting for a retry), throttled (a quota has no room), paused, leased, dead_lettered, waiting (for parents) */
  state: 'queued' | 'throttled' | 'paused' | 'leased' | 'dead_lettered' | 'waiting';
  n: number;
}

/**
 * Reads the queue counts (src/ledger/queue-counts.ts), never the job table,
 * and files waiting work under paused or throttled when a control holds it
 * back right now, so a scrape stays cheap at any ledger size.
 */
export async function queueDepth(db: Queryable): Promise<DepthSample[]> {
  const { rows } = await db.query<{ tenant_id: string; job_type: string; state: DepthSample['state']; n: string }>(`
    WITH counts AS (SELECT * FROM ${CURRENT_COUNTS} c), f AS (
      SELECT ${quotaInForce('q', `q.active - ${pendingReleases('q')}`)} FROM orch.quotas q
    ), room AS (${quotaRoom('f')})
    SELECT c.tenant_id, c.job_type, CASE
        WHEN c.state NOT IN ('queued', 'failed') THEN c.state::text
        WHEN NOT ${notPaused('c.tenant_id', 'c.job_type')} THEN 'paused'
        WHEN EXISTS (SELECT 1 FROM room r WHERE r.room = 0 AND ${covers('r', 'c.tenant_id', 'c.job_type')}) THEN 'throttled'
        ELSE 'queued' END AS state,
      sum(c.n) AS n
    FROM counts c GROUP BY 1, 2, 3`);
  return rows.map((r) => ({ tenantId: r.tenant_id, jobType: r.job_type, state: r.state, n: Number(r.n) }));
}

/** Seconds the oldest runnable job of a tenant and type has waited, for orchestrator_queue_oldest_age_seconds. */
export interface OldestSample {
  tenantId: string;
  jobType: string;
  ageSeconds: number;
}

/**
 * The oldest waiting job of each given tenant and type, measured from when it
 * became runnable (enqueue, its delay, or its retry backoff). The claim index
 * orders each (type, tenant) by priority, then run_after, so the head of each
 * priority level holds that level's oldest job: a skip scan over the levels
 * costs one index probe per level, never a scan of the queue.
 */
export async function queueOldestAge(db: Queryable, pairs: { tenantId: string; jobType: string }[]): Promise<OldestSample[]> {
  if (pairs.length === 0) return [];
  const head = (extra: string) => `(SELECT j.priority, j.run_after FROM orch.jobs j
      WHERE j.job_type = p.job_type AND j.tenant_id = p.tenant_id AND j.state IN ('queued', 'failed')${extra}
      ORDER BY j.priority DESC, j.run_after LIMIT 1)`;
  const { rows } = await db.query<{ tenant_id: string; job_type: string; age: number }>(`
    WITH RECURSIVE pairs AS (
      SELECT * FROM unnest($1::text[], $2::text[]) AS p(tenant_id, job_type)
    ), levels AS (
      SELECT p.tenant_id, p.job_type, h.priority, h.run_after FROM pairs p CROSS JOIN LATERAL ${head('')} h
      UNION ALL
      SELECT p.tenant_id, p.job_type, h.priority, h.run_after FROM levels p CROSS JOIN LATERAL ${head(' AND j.priority < p.priority')} h
    )
    SELECT tenant_id, job_type, greatest(0, extract(epoch FROM now() - min(run_after)))::float8 AS age
    FROM levels GROUP BY 1, 2`, [pairs.map((p) => p.tenantId), pairs.map((p) => p.jobType)]);
  return rows.map((r) => ({ tenantId: r.tenant_id, jobType: r.job_type, ageSeconds: Math.round(r.age * 1000) / 1000 }));
}

/** What the queue gauges show: depth by state, and the oldest waiting job of every tenant and type with work waiting. */
export async function queueGauges(db: Queryable): Promise<{ depth: DepthSample[]; oldest: OldestSample[] }> {
  const depth = await queueDepth(db);
  const waiting = new Map(depth.filter((d) => d.n > 0 && d.state !== 'leased' && d.state !== 'dead_lettered' && d.state !== 'waiting')
    .map((d) => [`${d.tenantId}\u0000${d.jobType}`, { tenantId: d.tenantId, jobType: d.jobType }]));
  return { depth, oldest: await queueOldestAge(db, [...waiting.values()]) };
}
