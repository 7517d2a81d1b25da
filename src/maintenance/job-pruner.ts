import type { Ledger } from '../ledger/ledger.ts';
import { PRUNE_START, type PruneCursor } from '../ledger/transitions/prune.ts';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from './service.ts';

/** History batches (statements) looked at per run, and workflows. */
const BATCHES = 500;
const WORKFLOWS = 100;

/**
 * Retention of finished jobs (ORCH_JOB_RETENTION_MS, default 7 days): each
 * run deletes the jobs that ended before the cutoff among those of the next
 * history batches in time order, with their edges and history, then the
 * workflows that ended before it. Short statements by index, away from the
 * hot path; leader only. The cursor lives in memory: a new leader starts
 * from the oldest batch left, which holds only jobs still kept (dead letters).
 */
export class JobPruner extends PeriodicService {
  readonly name = 'job-pruner';
  private cursor: PruneCursor = PRUNE_START;

  constructor(
    private readonly ledger: Ledger,
    private readonly retentionMs: number,
    private readonly onPruned: (jobs: number) => void,
    intervalMs: number,
    log: Logger,
  ) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const cutoff = new Date(Date.now() - this.retentionMs);
    const jobs = await this.ledger.pruneFinished(cutoff, this.cursor, BATCHES);
    this.cursor = jobs.cursor;
    const flows = await this.ledger.pruneWorkflows(cutoff, WORKFLOWS);
    const pruned = jobs.jobs + flows.jobs;
    if (pruned > 0) this.onPruned(pruned);
    return { count: pruned + flows.workflows, more: jobs.scanned === BATCHES || flows.scanned === WORKFLOWS };
  }
}
