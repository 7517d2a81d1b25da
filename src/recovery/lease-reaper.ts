import type { Ledger } from '../ledger/ledger.ts';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';

const ACTOR = 'system:lease-reaper';
/** How often the reaper drops workers long gone from the registry. */
const FORGET_EVERY_MS = 3_600_000;

/**
 * Returns jobs whose lease lapsed without a heartbeat to the queue (or the
 * dead-letter state when attempts are spent), times out jobs past their
 * run-time limit, and marks workers silent past `workerLostAfterMs` lost,
 * taking their leases back at once instead of at each lease's deadline.
 * Safe on every replica at once: the transitions skip rows another reaper
 * has locked. (If a reaper dies between marking a worker lost and releasing
 * its leases, those leases still expire at their deadline.)
 */
export class LeaseReaper extends PeriodicService {
  readonly name = 'lease-reaper';
  private forgotAt = 0;

  constructor(
    private readonly ledger: Ledger,
    private readonly config: { batchSize: number; workerLostAfterMs: number },
    intervalMs: number,
    log: Logger,
  ) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const { batchSize } = this.config;
    const timedOut = await this.ledger.timeoutJobs(batchSize, ACTOR);
    const expired = await this.ledger.expireLeases(batchSize, ACTOR);
    const lost = await this.ledger.workers.markLost(this.config.workerLostAfterMs);
    let released = 0;
    if (lost.length > 0) {
      for (let n = batchSize; n === batchSize; released += n) {
        n = (await this.ledger.forceRelease({ tenantId: null, workerIds: lost }, batchSize, ACTOR, 'worker_lost', 'worker_lost')).length;
      }
      this.log.warn({ workers: lost, released }, 'workers lost: leases released');
    }
    if (Date.now() - this.forgotAt > FORGET_EVERY_MS) {
      this.forgotAt = Date.now();
      await this.ledger.workers.forgetOld();
    }
    if (expired.length + timedOut.length > 0) {
      this.log.info({ expired: expired.length, timedOut: timedOut.length }, 'lease reaper acted');
    }
    return {
      count: expired.length + timedOut.length + released,
      more: expired.length === batchSize || timedOut.length === batchSize,
    };
  }
}
