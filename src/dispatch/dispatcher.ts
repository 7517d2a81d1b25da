import type { Ledger } from '../ledger/ledger.ts';
import type { ClaimRequest, ClaimRound, Lease } from '../ledger/types.ts';
import type { JobNotifier } from './notifier.ts';

/** Claimers remembered as drained; past this many the oldest are forgotten (they just claim once more). */
const DRAINED_KEPT = 10_000;

/**
 * Claims with long-polling: claim now; if nothing is runnable, sleep until a
 * notification for one of the types (new work, a resume, a freed concurrency
 * slot), a token refill, or a poll tick (delayed and retried jobs become
 * runnable silently), then claim again, until waitMs.
 *
 * A worker asks again as soon as a claim returns, so a worker taking jobs one
 * by one followed each useful claim with an empty one: twice the claim work
 * for every job at low rates. When a claimer's last claim left nothing
 * runnable behind (ClaimRound.drained) and no notification for its types has
 * arrived since that claim began, its next claim waits for one (or the poll
 * tick) before asking.
 */
export class Dispatcher {
  /** Fired by close(): long-polls return at once so a shutting-down server is not held open by idle workers. */
  private readonly closing = new AbortController();
  /** Per claimer (worker, tenants, types): the notifier's epoch when its last claim began, if that claim drained its queues. */
  private readonly drainedAt = new Map<string, number>();

  constructor(
    private readonly ledger: Ledger,
    private readonly notifier: JobNotifier,
    private readonly pollIntervalMs = 1000,
  ) {}

  close(): void {
    this.closing.abort();
  }

  /** A long-poll claim, or with `express` an express claim (see claimExpress). */
  async claim(req: ClaimRequest, waitMs: number, callerSignal?: AbortSignal, express?: { exceptTenants: string[] }): Promise<Lease[]> {
    const signal = callerSignal ? AbortSignal.any([callerSignal, this.closing.signal]) : this.closing.signal;
    if (express) return this.claimExpress(req, express.exceptTenants, waitMs, signal);
    const deadline = Date.now() + waitMs;
    const key = `${req.workerId}\u0000${req.tenantIds?.join(',') ?? '*'}\u0000${req.jobTypes.join(',')}`;
    for (let first = true; ; first = false) {
      const waiter = this.notifier.register(req.jobTypes);
      try {
        const epoch = this.notifier.epoch(req.jobTypes);
        // registered before the comparison: a notification heard after it wakes the waiter
        const nothingNew = first && waitMs > 0 && epoch !== null && this.drainedAt.get(key) === epoch;
        const { leases, throttled } = nothingNew ? { leases: [], throttled: [] } : await this.claimNoting(key, req, epoch);
        const left = deadline - Date.now();
        if (leases.length > 0 || left <= 0 || signal.aborted) return leases;
        // Held back by a token bucket or hourly quota: look again when it refills, not a poll tick later.
        const refill = Math.min(...throttled.map((t) => t.retryInMs ?? Infinity));
        await sleepUntil(waiter.promise, Math.min(left, this.pollIntervalMs, refill), signal);
        // A client that left (or a closing server) must not be handed leases nobody will run.
        if (signal.aborted) return [];
      } finally {
        waiter.cancel();
      }
    }
  }

  /**
   * An express claim, which a worker that is behind keeps open beside its
   * bulk claims: those run back to back, each a whole batch that takes tens
   * of milliseconds under load, and a tenant whose first jobs arrive would
   * wait for the claim after the one in flight. This waits (up to waitMs) for
   * jobs that become runnable in a tenant the claimer may claim for and that
   * is not in `exceptTenants` (those its bulk claims already serve), then
   * claims only those tenants' jobs, at most req.limit. Without LISTEN (poll
   * mode) nothing is heard and it returns empty at the deadline.
   */
  private async claimExpress(req: ClaimRequest, exceptTenants: string[], waitMs: number, signal: AbortSignal): Promise<Lease[]> {
    const except = new Set(exceptTenants);
    const scope = req.tenantIds ? new Set(req.tenantIds) : null;
    const arrived = new Set<string>();
    let heard = () => {};
    const unsubscribe = this.notifier.onRunnable(req.jobTypes, (tenantId) => {
      if (except.has(tenantId) || (scope && !scope.has(tenantId))) return;
      arrived.add(tenantId);
      heard();
    });
    try {
      const deadline = Date.now() + waitMs;
      for (;;) {
        if (arrived.size > 0) {
          const onlyTenants = [...arrived];
          arrived.clear();
          const { leases } = await this.ledger.claimRound({ ...req, onlyTenants });
          if (leases.length > 0 || signal.aborted) return leases;
          continue;
        }
        const left = deadline - Date.now();
        if (left <= 0 || signal.aborted) return [];
        await sleepUntil(new Promise<void>((r) => (heard = r)), left, signal);
        if (signal.aborted) return [];
      }
    } finally {
      unsubscribe();
    }
  }

  /** Claims, and notes whether the claim drained the claimer's queues as of `epoch`. */
  private async claimNoting(key: string, req: ClaimRequest, epoch: number | null): Promise<ClaimRound> {
    const round = await this.ledger.claimRound(req);
    this.drainedAt.delete(key);
    if (round.drained && epoch !== null) {
      if (this.drainedAt.size >= DRAINED_KEPT) this.drainedAt.delete(this.drainedAt.keys().next().value!);
      this.drainedAt.set(key, epoch);
    }
    return round;
  }
}

function sleepUntil(woken: Promise<void>, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    void woken.then(done);
  });
}
