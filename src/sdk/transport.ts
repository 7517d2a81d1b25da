import type pg from 'pg';
import { defaultConfig } from '../config/config.ts';
import { Dispatcher } from '../dispatch/dispatcher.ts';
import { JobNotifier } from '../dispatch/notifier.ts';
import { createPool } from '../ledger/db.ts';
import { Ledger } from '../ledger/ledger.ts';
import type { AckOutcome, CompleteInput, FailInput, HeartbeatInput, HeartbeatOutcome, Lease, LeaseRef } from '../ledger/types.ts';
import type { Logger } from '../logging.ts';
import { HttpClient, type HttpOptions } from './http.ts';

export interface ClaimParams {
  workerId: string;
  jobTypes: string[];
  limit: number;
  waitMs: number;
  /** Shown in the worker registry (orch workers list). */
  host?: string;
  version?: string;
}

/** How a worker reaches the ledger: over the HTTP bridge, or directly in-process. */
export interface WorkerTransport {
  claim(p: ClaimParams, signal: AbortSignal): Promise<Lease[]>;
  heartbeat(items: HeartbeatInput[]): Promise<HeartbeatOutcome[]>;
  complete(items: CompleteInput[]): Promise<AckOutcome[]>;
  fail(items: FailInput[]): Promise<AckOutcome[]>;
  release(items: LeaseRef[]): Promise<AckOutcome[]>;
  /** The worker stopped cleanly (its leases handed back): the registry shows it stopped, not lost. */
  reportStopped(workerId: string): Promise<void>;
  close(): Promise<void>;
}

export class HttpTransport implements WorkerTransport {
  private readonly http: HttpClient;

  constructor(opts: HttpOptions) {
    this.http = new HttpClient(opts);
  }

  async claim(p: ClaimParams, signal: AbortSignal): Promise<Lease[]> {
    return (await this.http.request<{ leases: Lease[] }>('POST', '/claim', p, { signal })).leases;
  }

  async heartbeat(items: HeartbeatInput[]): Promise<HeartbeatOutcome[]> {
    return (await this.http.request<{ results: HeartbeatOutcome[] }>('POST', '/heartbeats', { leases: items })).results;
  }

  async complete(items: CompleteInput[]): Promise<AckOutcome[]> {
    return this.acks(items.map((c) => ({ ...c, outcome: 'succeeded' as const })));
  }

  async fail(items: FailInput[]): Promise<AckOutcome[]> {
    return this.acks(items.map((f) => ({ ...f, outcome: 'failed' as const })));
  }

  async release(items: LeaseRef[]): Promise<AckOutcome[]> {
    return (await this.http.request<{ results: AckOutcome[] }>('POST', '/releases', { leases: items })).results;
  }

  async reportStopped(workerId: string): Promise<void> {
    await this.http.request('POST', `/workers/${encodeURIComponent(workerId)}/stopped`, {});
  }

  private async acks(acks: unknown[]): Promise<AckOutcome[]> {
    if (acks.length === 0) return [];
    return (await this.http.request<{ results: AckOutcome[] }>('POST', '/acks', { acks })).results;
  }

  async close(): Promise<void> {}
}

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
    return this.dispatcher.claim({ workerId: p.workerId, jobTypes: p.jobTypes, limit: p.limit, host: p.host, version: p.version }, p.waitMs, signal);
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
