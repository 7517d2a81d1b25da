import type pg from 'pg';
import { DeltaFold } from './delta-fold.ts';
import type { Queryable } from './db.ts';
import type { JobState } from './types.ts';

export interface QueueCount {
  tenantId: string;
  jobType: string;
  state: JobState;
  n: number;
}

/**
 * SQL: the current count of every (tenant, job type, state), as one relation: the folded counts
 * plus the deltas not yet folded, read in the caller's snapshot.
 */
export const CURRENT_COUNTS = `(SELECT tenant_id, job_type, state, sum(n) AS n FROM (
    SELECT tenant_id, job_type, state, n FROM orch.queue_counts
    UNION ALL SELECT tenant_id, job_type, state, delta FROM orch.queue_deltas
  ) x GROUP BY tenant_id, job_type, state HAVING sum(n) <> 0)`;

/**
 * Jobs per tenant, type and live state without counting the job table:
 * orch.queue_counts plus the deltas that transitions appended since the last
 * rollup (see migrations/0004_queue_counts.sql).
 */
export class QueueCounts {
  private readonly fold: DeltaFold;

  constructor(private readonly pool: pg.Pool) {
    this.fold = new DeltaFold(pool, 'orch.queue_deltas', `
      WITH taken AS (DELETE FROM orch.queue_deltas RETURNING tenant_id, job_type, state, delta),
      folded AS (
        INSERT INTO orch.queue_counts AS c (tenant_id, job_type, state, n)
        SELECT tenant_id, job_type, state, sum(delta) FROM taken GROUP BY tenant_id, job_type, state
        ON CONFLICT (tenant_id, job_type, state) DO UPDATE SET n = c.n + EXCLUDED.n
      )
      SELECT count(*) AS n FROM taken`);
  }

  /** Folds pending deltas into the counts; returns how many delta rows it took. */
  rollup(): Promise<number> {
    return this.fold.rollup();
  }

  /** Every (tenant, type, state) count, current to the last committed transition. */
  async all(db: Queryable = this.pool): Promise<QueueCount[]> {
    const { rows } = await db.query<{ tenant_id: string; job_type: string; state: JobState; n: string }>(
      `SELECT * FROM ${CURRENT_COUNTS} c ORDER BY tenant_id, job_type, state`);
    return rows.map((r) => ({ tenantId: r.tenant_id, jobType: r.job_type, state: r.state, n: Number(r.n) }));
  }

  /** Jobs waiting to run (queued, or failed and waiting for a retry) per tenant. */
  async backlog(tenantIds: string[]): Promise<Map<string, number>> {
    const { rows } = await this.pool.query<{ tenant_id: string; n: string }>(
      `SELECT tenant_id, sum(n) AS n FROM ${CURRENT_COUNTS} c WHERE tenant_id = ANY($1) AND state IN ('queued', 'failed') GROUP BY tenant_id`,
      [tenantIds]);
    return new Map(rows.map((r) => [r.tenant_id, Number(r.n)]));
  }
}
