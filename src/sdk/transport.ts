import type { AckOutcome, CompleteInput, FailInput, HeartbeatInput, HeartbeatOutcome, Lease, LeaseRef } from '../ledger/types.ts';
import { HttpClient, type HttpOptions } from './http.ts';

export interface ClaimParams {
  workerId: string;
  jobTypes: string[];
  limit: number;
  waitMs: number;
  /**
   * An express claim: wait (up to waitMs) for jobs that become runnable in a
   * tenant other than `exceptTenants` (those the worker's bulk claims already
   * serve), then claim only those tenants' jobs. See Dispatcher.claimExpress.
   */
  express?: { exceptTenants: string[] };
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
