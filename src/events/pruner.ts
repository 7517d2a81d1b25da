import type pg from 'pg';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';

const BATCH = 10_000;

/**
 * Deletes outbox rows older than the retention period, in batches: rows
 * JetStream acknowledged, or every row when no bus is configured (the outbox
 * then only feeds the SSE stream). Pending rows are kept however old, so a
 * long NATS outage loses nothing. Deletes by the time index, away from the
 * hot path's inserts.
 */
export class OutboxPruner extends PeriodicService {
  readonly name = 'outbox-pruner';

  constructor(
    private readonly pool: pg.Pool,
    private readonly retentionMs: number,
    private readonly busConfigured: boolean,
    intervalMs: number,
    log: Logger,
  ) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM orch.outbox WHERE ctid IN (
         SELECT ctid FROM orch.outbox WHERE at < now() - make_interval(secs => $1::float8 / 1000) AND ($2 OR published_at IS NOT NULL)
         ORDER BY at LIMIT ${BATCH})`, [this.retentionMs, !this.busConfigured]);
    const n = rowCount ?? 0;
    return { count: n, more: n === BATCH };
  }
}
