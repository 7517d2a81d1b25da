import { EventEmitter } from 'node:events';
import type { Logger } from '../logging.ts';

export interface RunResult {
  /** Rows or items handled in this run. */
  count: number;
  /** True when the run stopped at its batch limit, so another run should follow at once. */
  more: boolean;
}

/**
 * The shape every background loop shares (lease reaper, outbox relay,
 * scheduler, pruner): start, stop, one run at a time, re-run at once while
 * there is a backlog, otherwise wait the interval. Emits "run" after each run
 * and "failed" when one throws, so tests can wait on signals, not sleeps.
 */
export abstract class PeriodicService extends EventEmitter {
  abstract readonly name: string;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;
  /** A nudge arrived during a run: run again as soon as it ends. */
  private nudged = false;

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
      if (result.more || this.nudged) next = 0;
      this.emit('run', result);
    } catch (err) {
      this.log.warn({ err, service: this.name }, `${this.name} run failed`);
      this.emit('failed', err);
    }
    this.schedule(next);
  }
}
