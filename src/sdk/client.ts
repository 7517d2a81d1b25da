import type { Pause } from '../flow/pauses.ts';
import type { EnqueueResult, HistoryEntry, Job, JobState, JobTypeDefinition } from '../ledger/types.ts';
import { HttpClient, type HttpOptions } from './http.ts';

export interface SubmitJob {
  jobType: string;
  payload?: unknown;
  priority?: number;
  runAfter?: string;
  delayMs?: number;
  maxAttempts?: number;
  idempotencyKey?: string;
  correlationId?: string;
}

export type JobTypeSettings = Partial<Pick<JobTypeDefinition, 'maxAttempts' | 'backoffBaseMs' | 'backoffMaxMs' | 'backoffJitter' | 'leaseMs' | 'timeoutMs'>>;

/** The producer and operator side of the HTTP API (the CLI is built on it). */
export class OrchClient {
  readonly http: HttpClient;

  constructor(opts: HttpOptions) {
    this.http = new HttpClient(opts);
  }

  enqueue(job: SubmitJob): Promise<EnqueueResult> {
    return this.http.request('POST', '/jobs', job);
  }

  async enqueueBatch(jobs: SubmitJob[]): Promise<EnqueueResult[]> {
    return (await this.http.request<{ jobs: EnqueueResult[] }>('POST', '/jobs/batch', { jobs })).jobs;
  }

  getJob(id: string): Promise<{ job: Job; history: HistoryEntry[] }> {
    return this.http.request('GET', `/jobs/${encodeURIComponent(id)}`);
  }

  listJobs(filter: { state?: JobState; jobType?: string; cursor?: string; limit?: number } = {}): Promise<{ jobs: Job[]; nextCursor: string | null }> {
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v !== undefined).map(([k, v]): [string, string] => [k, String(v)]));
    return this.http.request('GET', `/jobs${q.size ? `?${q}` : ''}`);
  }

  async cancel(id: string, reason?: string): Promise<Job> {
    const headers = reason ? { 'x-operator-reason': reason } : undefined;
    return (await this.http.request<{ job: Job }>('POST', `/jobs/${encodeURIComponent(id)}/cancel`, undefined, { headers })).job;
  }

  /**
   * Pauses (or resumes) dispatch of `jobType` ("*" = every type) for `tenantId`
   * (omitted = every tenant). `reason` is required and recorded; so is `ticket` if given.
   */
  setDispatch(action: 'pause' | 'resume', scope: { jobType: string; tenantId?: string }, reason: string, ticket?: string): Promise<Pause> {
    const headers: Record<string, string> = { 'x-operator-reason': reason, ...(ticket ? { 'x-operator-ticket': ticket } : {}) };
    if (scope.jobType === '*') {
      if (!scope.tenantId) throw new Error('pausing every job type needs a tenant');
      return this.http.request('POST', `/tenants/${encodeURIComponent(scope.tenantId)}/${action}`, undefined, { headers });
    }
    const query = scope.tenantId ? `?tenantId=${encodeURIComponent(scope.tenantId)}` : '';
    return this.http.request('POST', `/jobtypes/${encodeURIComponent(scope.jobType)}/${action}${query}`, undefined, { headers });
  }

  async listPauses(): Promise<Pause[]> {
    return (await this.http.request<{ pauses: Pause[] }>('GET', '/pauses')).pauses;
  }

  defineJobType(name: string, settings: JobTypeSettings): Promise<JobTypeDefinition> {
    return this.http.request('PUT', `/jobtypes/${encodeURIComponent(name)}`, settings);
  }

  async listJobTypes(): Promise<JobTypeDefinition[]> {
    return (await this.http.request<{ jobTypes: JobTypeDefinition[] }>('GET', '/jobtypes')).jobTypes;
  }
}
