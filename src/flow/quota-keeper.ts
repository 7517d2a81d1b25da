import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';
import type { Quotas } from './quotas.ts';

/**
 * Bookkeeping for quotas. Boosts already stop applying at their end time
 * (the claim reads them only while they last); this loop clears the ended
 * ones and writes the restore to the audit log. It also recounts active
 * leases per quota, the safety net for claims that were in flight while a
 * quota was being created, and reclaims the space of folded slot releases.
 */
export class QuotaKeeper extends PeriodicService {
  readonly name = 'quota-keeper';

  constructor(private readonly quotas: Quotas, intervalMs: number, log: Logger) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const ended = await this.quotas.endExpiredBoosts();
    if (ended > 0) this.log.info({ ended }, 'quota boosts ended; previous limits restored');
    await this.quotas.reconcile();
    await this.quotas.compact();
    return { count: ended, more: false };
  }
}
