import { EventEmitter } from 'node:events';
import { isDatabaseUnavailable } from '../ledger/db.ts';
import type { Logger } from '../logging.ts';

export interface RunResult {
  /** Rows or items handled in this run. */
  count: number;
  /** True when the run stopped at its batch limit, so another run should follow at once. */
  more: boolean;
  /** Work falls due sooner than the interval (a schedule's next tick): run again after this many ms. */
  nextInMs?: number;
}

/** While runs fail, the wait before the next grows from this, doubling, to at most RETRY_MAX_MS (never below the interval). */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;

/**
 * The shape every background loop shares (lease reaper, outbox relay,
 * scheduler, pruner): start, stop, one run at a time, re-run at once while
 * there is a backlog, otherwise wait the interval. Emits "run" after each run,
 * "failed" when one throws and "recovered" at the first run that succeeds
 * after failures, so tests can wait on signals, not sleeps.
 *
 * A dependency outage (the database restarting) fails every run until it
 * ends: the service logs the first failure of a streak once, retries with a
 * short backoff (so it resumes within about two seconds of the database
 * coming back), and logs the recovery.
 */
export abstract class PeriodicService extends EventEmitter {
  abstract readonly name: string;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;
  /** A nudge arrived during a run: run again as soon as it ends. */
  private nudged = false;
  /** Runs failed in a row. */
  private failures = 0;

  constructor(
    protected readonly intervalMs: number,
    protected readonly log: Logger,
  ) {
    super();
  }

  protected abstract runOnce(): Promise<RunResult>;

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Waits for a run in progress to finish; no run starts after this returns. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Runs now (outside the schedule), e.g. from a test or an operator command. */
  async runNow(): Promise<RunResult> {
    return this.runOnce();
  }

  /** Runs as soon as possible (new work arrived) instead of at the next interval. */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.nudged = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => (this.running = null));
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    let next = this.intervalMs;
    this.nudged = false;
    try {
      const result = await this.runOnce();
      if (this.failures > 0) {
        this.log.info({ service: this.name, failedRuns: this.failures }, `${this.name} recovered`);
        this.failures = 0;
        this.onRecovered();
        this.emit('recovered');
      }
      if (result.more || this.nudged) next = 0;
      else if (result.nextInMs !== undefined) next = Math.max(0, Math.min(next, result.nextInMs));
      this.emit('run', result);
    } catch (err) {
      this.failures++;
      const outage = isDatabaseUnavailable(err);
      // an outage fails every run: say so once, not once per run
      if (!outage || this.failures === 1) {
        this.log.warn({ err: outage ? (err as Error).message : err, service: this.name },
          outage ? `${this.name}: the database is unavailable; retrying until it is back` : `${this.name} run failed`);
      }
      next = Math.max(this.intervalMs, Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1)));
      this.emit('failed', err);
    }
    this.schedule(next);
  }

  /** Called at the first successful run after failed ones (e.g. the database is back). */
  protected onRecovered(): void {}
}

/**
 * The background services of one server, started together in order once the
 * API listens and stopped in reverse order, each stop awaited (a run in
 * flight finishes first), so shutdown leaves no loop touching a closed pool.
 */
export class ServiceGroup {
  private started: PeriodicService[] = [];

  constructor(readonly services: readonly PeriodicService[]) {}

  start(): void {
    for (const s of this.services) {
      s.start();
      this.started.push(s);
    }
  }

  async stop(): Promise<void> {
    const running = this.started.reverse();
    this.started = [];
    for (const s of running) await s.stop();
  }
}
