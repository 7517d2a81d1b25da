import type pg from 'pg';
import { LedgerError } from './errors.ts';
import type { QueueCounts } from './queue-counts.ts';
import { withoutExisting } from './transitions/enqueue.ts';
import type { PreparedJob } from './validate.ts';

const countByTenant = (jobs: PreparedJob[]) => {
  const byTenant = new Map<string, number>();
  for (const j of jobs) byTenant.set(j.tenantId, (byTenant.get(j.tenantId) ?? 0) + 1);
  return byTenant;
};

/**
 * Enqueue backpressure: refuses a whole batch while a tenant's waiting jobs
 * (queued, or failed and waiting for a retry) would pass `limit`. Read from
 * the queue counts, not the job table; batches racing each other may
 * overshoot the limit by their own size. Resubmits of jobs that already
 * exist (same idempotency key) add nothing, so a producer retrying an
 * accepted job still gets it back.
 */
export class Backpressure {
  /** Per tenant: jobs waiting at the last read, jobs this process added since, when it was read. */
  private readonly seen = new Map<string, { waiting: number; added: number; at: number }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly counts: QueueCounts,
    private readonly limit: number,
    private readonly onRefused: (tenantId: string, jobs: number) => void,
  ) {}

  /** Throws LedgerError 'backpressure' (HTTP 429) when the batch may not be enqueued. */
  async check(jobs: PreparedJob[]): Promise<void> {
    if (this.limit === 0) return;
    const byTenant = countByTenant(jobs);
    if (this.farBelowLimit(byTenant)) return;
    if ((await this.over(jobs)).length === 0) return;
    const refused = await this.over(await withoutExisting(this.pool, jobs));
    if (refused.length === 0) return;
    for (const [tenant, n] of byTenant) this.onRefused(tenant, n);
    const { tenant, waiting } = refused[0]!;
    throw new LedgerError('backpressure', 'tenantId',
      `tenant ${tenant} has ${waiting} jobs waiting; the limit is ${this.limit} (ORCH_MAX_QUEUED_PER_TENANT): retry later`);
  }

  /** The tenants the batch would take past the limit, read from the queue counts. */
  private async over(jobs: PreparedJob[]): Promise<{ tenant: string; waiting: number }[]> {
    const byTenant = countByTenant(jobs);
    const backlog = await this.counts.backlog([...byTenant.keys()]);
    const at = Date.now();
    // counted as added already: if the batch is refused, the estimate only errs on the safe side
    for (const [t, n] of byTenant) this.seen.set(t, { waiting: backlog.get(t) ?? 0, added: n, at });
    return [...byTenant].filter(([t, n]) => (backlog.get(t) ?? 0) + n > this.limit).map(([t]) => ({ tenant: t, waiting: backlog.get(t) ?? 0 }));
  }

  /**
   * Skips the read for tenants far from the limit: while what was waiting at
   * the last read (under a second ago) plus what this process has added since
   * stays within half the limit, no replica can plausibly have filled the
   * other half in the meantime. Near the limit every enqueue reads.
   */
  private farBelowLimit(byTenant: Map<string, number>): boolean {
    const now = Date.now();
    const seen = [...byTenant].map(([t, n]) => ({ s: this.seen.get(t), n }));
    if (!seen.every(({ s, n }) => s && now - s.at < 1000 && s.waiting + s.added + n <= this.limit / 2)) return false;
    for (const { s, n } of seen) s!.added += n;
    return true;
  }
}
