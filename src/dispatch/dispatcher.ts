import type { Ledger } from '../ledger/ledger.ts';
import type { ClaimRequest, Lease } from '../ledger/types.ts';
import type { JobNotifier } from './notifier.ts';

/**
 * Claims with long-polling: claim now; if nothing is runnable, sleep until a
 * notification for one of the types (new work, a resume, a freed concurrency
 * slot), a token refill, or a poll tick (delayed and retried jobs become
 * runnable silently), then claim again, until waitMs.
 */
export class Dispatcher {
  /** Fired by close(): long-polls return at once so a shutting-down server is not held open by idle workers. */
  private readonly closing = new AbortController();

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
    for (;;) {
      const waiter = this.notifier.register(req.jobTypes);
      try {
        const { leases, throttled } = await this.ledger.claimRound(req);
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
