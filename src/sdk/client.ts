import type { ClusterStatus } from '../cluster/status.ts';
import type { AlertReport } from '../metrics/alert-conditions.ts';
import type { Throughput } from '../metrics/history.ts';
import type { AuditRecord } from '../audit/audit-log.ts';
import type { ApiTokenInfo, NewToken } from '../auth/tokens.ts';
import type { Pause } from '../flow/pauses.ts';
import type { Quota, QuotaChange, QuotaUse } from '../flow/quotas.ts';
import type { BulkAction, EdgePolicy, EnqueueResult, HistoryEntry, Job, JobSort, JobState, JobTypeDefinition } from '../ledger/types.ts';
import type { BulkResult, StateCount } from '../ledger/queries.ts';
import type { Workflow, WorkflowDetail, WorkflowSpec, WorkflowState } from '../workflows/workflows.ts';
import type { DlqEntry, DlqFilter, DlqStats } from '../recovery/dead-letters.ts';
import type { LeaseView, LockView } from '../recovery/leases.ts';
import type { ReplayProgress, ReplaySelection } from '../recovery/replays.ts';
import type { ClearResult, SnapshotManifest } from '../recovery/snapshots.ts';
import type { WorkerRecord } from '../ledger/workers.ts';
import type { Backfill, BackfillPlan, BackfillSpec, BackfillState } from '../backfills/backfills.ts';
import type { Schedule, ScheduleSpec } from '../schedules/schedules.ts';
import type { Watermark } from '../windows/windows.ts';
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
  /** Jobs this one waits for: ids, or { jobId, onFailure: cancel (default) | ignore | wait }. */
  dependsOn?: (string | { jobId: string; onFailure?: EdgePolicy })[];
}

/** What a job list, the state counts and a bulk action select besides the state (times ISO 8601). */
export interface JobSelection {
  jobType?: string;
  /** The class of the job's last error. */
  errorClass?: string;
  createdAfter?: string;
  createdBefore?: string;
  /** Jobs whose payload contains this JSON object. */
  payload?: Record<string, unknown>;
  correlationId?: string;
}

export interface BulkRequest {
  action: BulkAction;
  filter: JobSelection & { state?: JobState };
  /** At most this many jobs, oldest first (default and most 10,000). */
  limit?: number;
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

  /** Jobs of the tenant, newest first unless `sort` says oldest or priority (claim order; needs state queued or failed). */
  listJobs(filter: JobSelection & { state?: JobState; sort?: JobSort; cursor?: string; limit?: number } = {}): Promise<{ jobs: Job[]; nextCursor: string | null }> {
    return this.http.request('GET', `/jobs${queryString(selectionQuery(filter))}`);
  }

  /** Jobs per state matching a filter; a count marked capped is a lower bound (GET /jobs/counts). */
  jobCounts(filter: JobSelection = {}): Promise<{ counts: StateCount[]; capped: boolean }> {
    return this.http.request('GET', `/jobs/counts${queryString(selectionQuery(filter))}`);
  }

  /** Cancels, replays or retries now every job matching `filter` (scope orch:operate). */
  bulkJobs(request: BulkRequest, why: OperatorWhy): Promise<BulkResult> {
    return this.http.request('POST', '/jobs/bulk', request, { headers: operatorHeaders(why) });
  }

  /** What bulkJobs would act on, changing nothing (scope orch:read: a read-only operator sees it too). */
  previewBulkJobs(request: BulkRequest): Promise<BulkResult> {
    return this.http.request('POST', '/jobs/bulk/preview', request);
  }

  /** Cancels a job (scope orch:operate); `reason` is recorded in its history. */
  async cancel(id: string, reason: string): Promise<Job> {
    return (await this.http.request<{ job: Job }>('POST', `/jobs/${encodeURIComponent(id)}/cancel`, undefined, { headers: { 'x-operator-reason': reason } })).job;
  }

  /**
   * Pauses (or resumes) dispatch of `jobType` ("*" = every type) for `tenantId`
   * (omitted = every tenant). `reason` is required and recorded; so is `ticket` if given.
   */
  setDispatch(action: 'pause' | 'resume', scope: { jobType: string; tenantId?: string }, reason: string, ticket?: string): Promise<Pause> {
    const headers = operatorHeaders({ reason, ticket });
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

  async listQuotas(): Promise<Quota[]> {
    return (await this.http.request<{ quotas: Quota[] }>('GET', '/quotas')).quotas;
  }

  async quotaSummary(): Promise<QuotaUse[]> {
    return (await this.http.request<{ quotas: QuotaUse[] }>('GET', '/quotas/summary')).quotas;
  }

  /** Creates a quota or changes the given limits (null removes one); `why` is recorded in the audit log. */
  setQuota(scope: QuotaScope, change: QuotaChange, why: OperatorWhy): Promise<Quota> {
    return this.http.request('PUT', quotaPath(scope), change, { headers: operatorHeaders(why) });
  }

  deleteQuota(scope: QuotaScope, why: OperatorWhy): Promise<Quota> {
    return this.http.request('DELETE', quotaPath(scope), undefined, { headers: operatorHeaders(why) });
  }

  /** pause, resume, or restore (end a boost early). */
  quotaAction(action: 'pause' | 'resume' | 'restore', scope: QuotaScope, why: OperatorWhy): Promise<Quota> {
    return this.http.request('POST', `${quotaPath(scope)}/${action}`, undefined, { headers: operatorHeaders(why) });
  }

  /** Raises the quota's limits for durationSeconds; the previous limits return by themselves. */
  boostQuota(scope: QuotaScope, boost: { factor?: number; maxActive?: number; ratePerSecond?: number; burst?: number; durationSeconds: number }, why: OperatorWhy): Promise<Quota> {
    return this.http.request('POST', `${quotaPath(scope)}/boost`, boost, { headers: operatorHeaders(why) });
  }

  /** The audit log, newest first; pass the previous page's nextCursor as `cursor` for the next. */
  listAudit(filter: { action?: string; actor?: string; tenantId?: string; since?: string; cursor?: string; limit?: number } = {}): Promise<{ entries: AuditRecord[]; nextCursor: string | null }> {
    return this.http.request('GET', `/audit${queryString(filter)}`);
  }

  /** Replays one ended job as a new job (idempotent: a second call returns the first replay's job). */
  replayJob(id: string, why: OperatorWhy, priority?: number): Promise<{ status: string; job: Job; history: HistoryEntry[] }> {
    return this.http.request('POST', `/jobs/${encodeURIComponent(id)}/replay`, priority === undefined ? {} : { priority }, { headers: operatorHeaders(why) });
  }

  dlqStats(clusters?: number): Promise<DlqStats> {
    return this.http.request('GET', `/deadletter/stats${queryString({ clusters })}`);
  }

  listDeadLetters(filter: DlqFilter & { cursor?: string; limit?: number } = {}): Promise<{ entries: DlqEntry[]; nextCursor: string | null }> {
    return this.http.request('GET', `/deadletter${queryString({ ...filter })}`);
  }

  snapshotDlq(filter: DlqFilter & { jobIds?: string[] } = {}): Promise<SnapshotManifest> {
    return this.http.request('POST', '/deadletter/snapshots', filter);
  }

  async listSnapshots(limit?: number): Promise<SnapshotManifest[]> {
    return (await this.http.request<{ snapshots: SnapshotManifest[] }>('GET', `/deadletter/snapshots${queryString({ limit })}`)).snapshots;
  }

  getSnapshot(id: string): Promise<SnapshotManifest> {
    return this.http.request('GET', `/deadletter/snapshots/${encodeURIComponent(id)}`);
  }

  /** The snapshot's NDJSON file as a stream of bytes. */
  downloadSnapshot(id: string): Promise<Response> {
    return this.http.raw('GET', `/deadletter/snapshots/${encodeURIComponent(id)}/download`);
  }

  /** Removes from the DLQ the entries the snapshot holds (or those of jobIds it holds). */
  clearDlq(snapshotId: string, why: OperatorWhy, jobIds?: string[]): Promise<ClearResult> {
    return this.http.request('POST', '/deadletter/clear', { snapshotId, ...(jobIds ? { jobIds } : {}) }, { headers: operatorHeaders(why) });
  }

  /** Starts a replay; follow a running one with getReplay. */
  replayDlq(selection: ReplaySelection, why: OperatorWhy, priority?: number): Promise<ReplayProgress> {
    return this.http.request('POST', '/deadletter/replay', { ...selection, ...(priority === undefined ? {} : { priority }) }, { headers: operatorHeaders(why) });
  }

  async listReplays(limit?: number): Promise<ReplayProgress[]> {
    return (await this.http.request<{ replays: ReplayProgress[] }>('GET', `/deadletter/replays${queryString({ limit })}`)).replays;
  }

  getReplay(id: string): Promise<ReplayProgress> {
    return this.http.request('GET', `/deadletter/replays/${encodeURIComponent(id)}`);
  }

  listLeases(filter: { jobType?: string; workerId?: string; stuckAfterMs?: number; limit?: number } = {}): Promise<{ leases: LeaseView[]; stuck: number; stuckAfterMs: number; locks: LockView[] }> {
    return this.http.request('GET', `/leases${queryString(filter)}`);
  }

  releaseLeases(selector: { leaseIds?: string[]; jobIds?: string[]; workerIds?: string[]; stuck?: boolean; stuckAfterMs?: number }, why: OperatorWhy): Promise<{ released: number; jobs: { jobId: string; jobType: string; state: string }[] }> {
    return this.http.request('POST', '/leases/release', selector, { headers: operatorHeaders(why) });
  }

  /** The replicas sharing the database, the leader and its term (GET /cluster). */
  clusterStatus(): Promise<ClusterStatus> {
    return this.http.request('GET', '/cluster');
  }

  /** Each alert of alerts.yaml: does its condition hold now for the tenant (without the rules' `for:`), for which labels (GET /alerts). */
  alerts(): Promise<AlertReport> {
    return this.http.request('GET', '/alerts');
  }

  /** Per job type and minute of the last `minutes`: attempts succeeded, failed, dead-lettered, and jobs waiting. */
  throughput(minutes?: number): Promise<Throughput & { tenantId: string }> {
    return this.http.request('GET', `/stats/throughput${queryString({ minutes })}`);
  }

  listWorkers(): Promise<{ workers: WorkerRecord[]; lostAfterMs: number }> {
    return this.http.request('GET', '/workers');
  }

  createToken(t: NewToken): Promise<{ token: string; info: ApiTokenInfo }> {
    return this.http.request('POST', '/tokens', t);
  }

  async listTokens(includeRevoked = false): Promise<ApiTokenInfo[]> {
    return (await this.http.request<{ tokens: ApiTokenInfo[] }>('GET', `/tokens${includeRevoked ? '?revoked=true' : ''}`)).tokens;
  }

  revokeToken(id: string): Promise<ApiTokenInfo> {
    return this.http.request('DELETE', `/tokens/${encodeURIComponent(id)}`);
  }

  /** Job type defaults apply to every tenant: an operator action, with a reason, in the audit log. */
  defineJobType(name: string, settings: JobTypeSettings, why: OperatorWhy): Promise<JobTypeDefinition> {
    return this.http.request('PUT', `/jobtypes/${encodeURIComponent(name)}`, settings, { headers: operatorHeaders(why) });
  }

  async listJobTypes(): Promise<JobTypeDefinition[]> {
    return (await this.http.request<{ jobTypes: JobTypeDefinition[] }>('GET', '/jobtypes')).jobTypes;
  }

  async listSchedules(): Promise<Schedule[]> {
    return (await this.http.request<{ schedules: Schedule[] }>('GET', '/schedules')).schedules;
  }

  getSchedule(name: string): Promise<Schedule> {
    return this.http.request('GET', schedulePath(name));
  }

  createSchedule(name: string, spec: ScheduleSpec, why: OperatorWhy): Promise<Schedule> {
    return this.http.request('POST', '/schedules', { name, ...spec }, { headers: operatorHeaders(why) });
  }

  /** Changes the given fields; giving cron or everyMs replaces the other. */
  updateSchedule(name: string, patch: Partial<ScheduleSpec>, why: OperatorWhy): Promise<Schedule> {
    return this.http.request('PATCH', schedulePath(name), patch, { headers: operatorHeaders(why) });
  }

  scheduleAction(name: string, action: 'pause' | 'resume', why: OperatorWhy): Promise<Schedule> {
    return this.http.request('POST', `${schedulePath(name)}/${action}`, undefined, { headers: operatorHeaders(why) });
  }

  deleteSchedule(name: string, why: OperatorWhy): Promise<Schedule> {
    return this.http.request('DELETE', schedulePath(name), undefined, { headers: operatorHeaders(why) });
  }

  /** Runs the schedule's job once now; its ticks are unchanged. */
  triggerSchedule(name: string, why: OperatorWhy): Promise<{ schedule: Schedule; jobId: string }> {
    return this.http.request('POST', `${schedulePath(name)}/trigger`, undefined, { headers: operatorHeaders(why) });
  }

  async listWatermarks(jobType?: string): Promise<Watermark[]> {
    return (await this.http.request<{ watermarks: Watermark[] }>('GET', `/watermarks${queryString({ jobType })}`)).watermarks;
  }

  async listBackfills(state?: BackfillState): Promise<Backfill[]> {
    return (await this.http.request<{ backfills: Backfill[] }>('GET', `/backfills${queryString({ state })}`)).backfills;
  }

  getBackfill(id: string): Promise<Backfill> {
    return this.http.request('GET', `/backfills/${encodeURIComponent(id)}`);
  }

  /** The dry run: which windows would run, which would be skipped and why; enqueues nothing. */
  planBackfill(spec: BackfillSpec): Promise<BackfillPlan> {
    return this.http.request('POST', '/backfills/plan', spec);
  }

  /** Scope orch:backfill: `why` needs a reason and a ticket. */
  createBackfill(spec: BackfillSpec, why: OperatorWhy): Promise<Backfill> {
    return this.http.request('POST', '/backfills', spec, { headers: operatorHeaders(why) });
  }

  backfillAction(id: string, action: 'pause' | 'resume' | 'cancel' | 'retry', why: OperatorWhy): Promise<Backfill> {
    return this.http.request('POST', `/backfills/${encodeURIComponent(id)}/${action}`, undefined, { headers: operatorHeaders(why) });
  }

  /** Submits a workflow (scope orch:write): its steps are stored and enqueued at once. */
  submitWorkflow(spec: WorkflowSpec): Promise<WorkflowDetail> {
    return this.http.request('POST', '/workflows', spec);
  }

  listWorkflows(filter: { state?: WorkflowState; limit?: number; before?: string } = {}): Promise<{ workflows: Workflow[]; nextCursor: string | null }> {
    return this.http.request('GET', `/workflows${queryString(filter)}`);
  }

  getWorkflow(id: string): Promise<WorkflowDetail> {
    return this.http.request('GET', `/workflows/${encodeURIComponent(id)}`);
  }

  /** Scope orch:operate: cancels the steps not started; with `includeRunning` the running ones too. */
  cancelWorkflow(id: string, why: OperatorWhy, includeRunning = false): Promise<WorkflowDetail> {
    return this.http.request('POST', `/workflows/${encodeURIComponent(id)}/cancel${includeRunning ? '?includeRunning=true' : ''}`, undefined, { headers: operatorHeaders(why) });
  }

  /** Scope orch:operate: replays every failed or canceled step; succeeded ones are left alone. */
  retryWorkflow(id: string, why: OperatorWhy): Promise<WorkflowDetail> {
    return this.http.request('POST', `/workflows/${encodeURIComponent(id)}/retry`, undefined, { headers: operatorHeaders(why) });
  }
}

export interface QuotaScope { tenantId: string; jobType: string }
export interface OperatorWhy { reason: string; ticket?: string }

const schedulePath = (name: string) => `/schedules/${encodeURIComponent(name)}`;
const quotaPath = (s: QuotaScope) => `/quotas/${encodeURIComponent(s.tenantId)}/${encodeURIComponent(s.jobType)}`;
const operatorHeaders = (why: OperatorWhy): Record<string, string> =>
  ({ 'x-operator-reason': why.reason, ...(why.ticket ? { 'x-operator-ticket': why.ticket } : {}) });

/** A job selection as query parameters: the payload as JSON text. */
function selectionQuery<T extends JobSelection>({ payload, ...rest }: T): Omit<T, 'payload'> & { payload?: string } {
  return { ...rest, payload: payload === undefined ? undefined : JSON.stringify(payload) };
}

/** "?k=v&..." of the defined values, or "" when there are none. */
function queryString(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]): [string, string] => [k, String(v)]));
  return q.size ? `?${q}` : '';
}
