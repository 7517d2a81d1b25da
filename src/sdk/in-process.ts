import type pg from 'pg';
import { defaultConfig } from '../config/config.ts';
import { Dispatcher } from '../dispatch/dispatcher.ts';
import { JobNotifier } from '../dispatch/notifier.ts';
import { createPool } from '../ledger/db.ts';
import { Ledger } from '../ledger/ledger.ts';
import type { AckOutcome, CompleteInput, FailInput, HeartbeatInput, HeartbeatOutcome, Lease, LeaseRef } from '../ledger/types.ts';
import type { Logger } from '../logging.ts';
import type { ClaimParams, WorkerTransport } from './transport.ts';

/** Talks to PostgreSQL directly: the fastest path, for workers living next to the database. */
export class InProcessTransport implements WorkerTransport {
  private readonly ledger: Ledger;
  private readonly dispatcher: Dispatcher;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly ownsPool: boolean,
    private readonly notifier: JobNotifier,
    private readonly workerId: string,
  ) {
    this.ledger = new Ledger(pool, defaultConfig);
    this.dispatcher = new Dispatcher(this.ledger, notifier);
  }

  static async open(opts: { connectionString: string; pool?: pg.Pool; workerId: string; log: Logger; poolSize?: number }): Promise<InProcessTransport> {
    const pool = opts.pool ?? createPool(opts.connectionString, opts.poolSize ?? 4);
    const notifier = new JobNotifier(opts.connectionString, opts.log);
    await notifier.start();
    return new InProcessTransport(pool, !opts.pool, notifier, opts.workerId);
  }

  claim(p: ClaimParams, signal: AbortSignal): Promise<Lease[]> {
    return this.dispatcher.claim({ workerId: p.workerId, jobTypes: p.jobTypes, limit: p.limit, host: p.host, version: p.version }, p.waitMs, signal, p.express);
  }

  heartbeat(items: HeartbeatInput[]): Promise<HeartbeatOutcome[]> {
    return this.ledger.heartbeat(items);
  }

  complete(items: CompleteInput[]): Promise<AckOutcome[]> {
    return this.ledger.complete(items, `worker:${this.workerId}`);
  }

  fail(items: FailInput[]): Promise<AckOutcome[]> {
    return this.ledger.fail(items, `worker:${this.workerId}`);
  }

  release(items: LeaseRef[]): Promise<AckOutcome[]> {
    return this.ledger.release(items, `worker:${this.workerId}`);
  }

  async reportStopped(workerId: string): Promise<void> {
    await this.ledger.workers.stopped(workerId, undefined);
  }

  async close(): Promise<void> {
    this.dispatcher.close();
    await this.notifier.stop();
    if (this.ownsPool) await this.pool.end();
  }
}
