import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from './service.ts';

/** Runs every delta fold on the shared service shape; safe on every replica at once. */
export class DeltaRollup extends PeriodicService {
  readonly name = 'delta-rollup';

  constructor(private readonly folds: { rollup(): Promise<number> }[], intervalMs: number, log: Logger) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    let count = 0;
    for (const f of this.folds) count += await f.rollup();
    return { count, more: false };
  }
}
