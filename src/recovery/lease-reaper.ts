import { ALL_TENANTS, WORKER_REFRESH_MS } from '../ledger/workers.ts';
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
 *
 * Silence is only evidence while workers could have spoken: after the
 * server starts, and after the database comes back from an outage, leases
 * and worker records went stale because nobody could reach the ledger. The
 * reaper then takes nothing back for `graceMs`, long enough for every live
 * worker to heartbeat (a lapsed lease nobody reaped is renewed by its
 * holder's next heartbeat). The grace counts from `since` (when this
 * server's API began listening, or the database came back, whichever is
 * later): a replica that becomes leader long after both, while the other
 * replicas served heartbeats, reaps at once.
 */
export class LeaseReaper extends PeriodicService {
  readonly name = 'lease-reaper';
  private forgotAt = 0;
  /** No lease is taken back before this time (ms since the epoch). */
  private holdUntil = 0;

  constructor(
    private readonly ledger: Ledger,
    private readonly config: { batchSize: number; workerLostAfterMs: number; graceMs: number; since?: number },
    intervalMs: number,
    log: Logger,
  ) {
    super(intervalMs, log);
  }

  override start(): void {
    this.holdUntil = (this.config.since ?? Date.now()) + this.config.graceMs;
    super.start();
  }

  protected override onRecovered(): void {
    this.holdUntil = Date.now() + this.config.graceMs;
    this.log.info({ graceMs: this.config.graceMs }, 'lease reaper: the database is back; workers get the grace period to heartbeat before leases are reclaimed');
  }

  /** Whether the reaper is in a grace period (after start or an outage) and takes nothing back. */
  get holding(): boolean {
    return Date.now() < this.holdUntil;
  }

  protected async runOnce(): Promise<RunResult> {
    // one probe of the database even while holding, so an outage is noticed (and the grace restarted after it)
    if (this.holding) {
      await this.ledger.pool.query('SELECT 1');
      return { count: 0, more: false };
    }
    const { batchSize } = this.config;
    const timedOut = await this.ledger.timeoutJobs(batchSize, ACTOR);
    const expired = await this.ledger.expireLeases(batchSize, ACTOR);
    const lost = await this.ledger.workers.markLost(this.config.workerLostAfterMs);
    let released = 0;
    if (lost.length > 0) {
      // A worker's leases in its own tenant; those of a worker claiming for every tenant, everywhere.
      // Only silent ones: a live worker of the same id elsewhere heartbeats its leases and keeps them.
      // A lost worker's leases went silent no later than its record (which a claim or heartbeat
      // refreshes at most every WORKER_REFRESH_MS).
      const silentForMs = Math.max(0, this.config.workerLostAfterMs - WORKER_REFRESH_MS);
      const byTenant = new Map<string, string[]>();
      for (const w of lost) byTenant.set(w.tenantId, [...(byTenant.get(w.tenantId) ?? []), w.workerId]);
      for (const [tenantId, workerIds] of byTenant) {
        const selector = { tenantId: tenantId === ALL_TENANTS ? null : tenantId, workerIds, silentForMs };
        for (let n = batchSize; n === batchSize; released += n) {
          n = (await this.ledger.forceRelease(selector, batchSize, ACTOR, 'worker_lost', 'worker_lost')).length;
        }
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
