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

  async claim(req: ClaimRequest, waitMs: number, callerSignal?: AbortSignal): Promise<Lease[]> {
    const signal = callerSignal ? AbortSignal.any([callerSignal, this.closing.signal]) : this.closing.signal;
    const deadline = Date.now() + waitMs;
    // only a claimer that waits can skip a claim; one that does not (an express claim) leaves nothing to remember
    const key = waitMs > 0 ? `${req.workerId}\u0000${req.tenantIds?.join(',') ?? '*'}\u0000${req.jobTypes.join(',')}` : null;
    for (let first = true; ; first = false) {
      const waiter = this.notifier.register(req.jobTypes);
      try {
        const epoch = this.notifier.epoch(req.jobTypes);
        // registered before the comparison: a notification heard after it wakes the waiter
        const nothingNew = first && key !== null && epoch !== null && this.drainedAt.get(key) === epoch;
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

  /** Claims, and notes whether the claim drained the claimer's queues as of `epoch`. */
  private async claimNoting(key: string | null, req: ClaimRequest, epoch: number | null): Promise<ClaimRound> {
    const round = await this.ledger.claimRound(req);
    if (key === null) return round;
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
