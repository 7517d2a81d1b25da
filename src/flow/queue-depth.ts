import type { Queryable } from '../ledger/db.ts';
import { CURRENT_COUNTS } from '../ledger/queue-counts.ts';
import { notPaused } from './pauses.ts';
import { covers, pendingReleases, quotaInForce, quotaRoom } from './quota-sql.ts';

/** Jobs per tenant, type and what they are doing, for orchestrator_queue_depth and orchestrator_dlq_depth. */
export interface DepthSample {
  tenantId: string;
  jobType: string;
  /** queued (runnable or waiting for a retry), throttled (a quota has no room), paused, leased, dead_lettered */
  state: 'queued' | 'throttled' | 'paused' | 'leased' | 'dead_lettered';
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
        WHEN NOT ${notPaused('c.tenant_id', 'c.job_type')} OR EXISTS (SELECT 1 FROM room r WHERE r.paused AND ${covers('r', 'c.tenant_id', 'c.job_type')}) THEN 'paused'
        WHEN EXISTS (SELECT 1 FROM room r WHERE r.room = 0 AND ${covers('r', 'c.tenant_id', 'c.job_type')}) THEN 'throttled'
        ELSE 'queued' END AS state,
      sum(c.n) AS n
    FROM counts c GROUP BY 1, 2, 3`);
  return rows.map((r) => ({ tenantId: r.tenant_id, jobType: r.job_type, state: r.state, n: Number(r.n) }));
}
