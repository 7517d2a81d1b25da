import type { Ledger } from '../ledger/ledger.ts';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';

/**
 * Returns jobs whose lease lapsed without a heartbeat to the queue (or the
 * dead-letter state when attempts are spent), and times out jobs past their
 * run-time limit. Safe on every replica at once: both transitions skip rows
 * another reaper has locked.
 */
export class LeaseReaper extends PeriodicService {
  readonly name = 'lease-reaper';

  constructor(
    private readonly ledger: Ledger,
    private readonly batchSize: number,
    intervalMs: number,
    log: Logger,
  ) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const timedOut = await this.ledger.timeoutJobs(this.batchSize, 'system:lease-reaper');
    const expired = await this.ledger.expireLeases(this.batchSize, 'system:lease-reaper');
    if (expired.length + timedOut.length > 0) {
      this.log.info({ expired: expired.length, timedOut: timedOut.length }, 'lease reaper acted');
    }
    return { count: expired.length + timedOut.length, more: expired.length === this.batchSize || timedOut.length === this.batchSize };
  }
}
