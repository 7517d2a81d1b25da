import type pg from 'pg';
import type { Config } from '../config/config.ts';
import type { Queryable } from './db.ts';
import { JobTypes } from './job-types.ts';
import { Tenants } from './tenants.ts';
import { QueueCounts } from './queue-counts.ts';
import { LedgerError } from './errors.ts';
import { getHistory, getJob, listJobs, type JobFilter } from './queries.ts';
import { cancel } from './transitions/cancel.ts';
import { claim } from './transitions/claim.ts';
import { withoutExisting } from './transitions/enqueue.ts';
import { complete } from './transitions/complete.ts';
import { enqueue } from './transitions/enqueue.ts';
import { expire } from './transitions/expire.ts';
import { fail } from './transitions/fail.ts';
import { heartbeat } from './transitions/heartbeat.ts';
import { release } from './transitions/release.ts';
import { timeout } from './transitions/timeout.ts';
import type {
  AckOutcome, Actor, ClaimRequest, ClaimRound, CompleteInput, EnqueueInput, EnqueueResult, FailInput, HeartbeatInput,
  HeartbeatOutcome, HistoryEntry, Job, Lease, LeaseRef, LedgerObserver, TransitionRecord,
} from './types.ts';
import { prepareJob, type PreparedJob } from './validate.ts';

export type LedgerConfig = Pick<Config, 'maxJobTypes' | 'jobTypeDefaults' | 'maxPayloadBytes' | 'maxQueuedPerTenant'>;

/**
 * The one door to the job table. Each method is one transition from
 * src/ledger/transitions (one statement, so one transaction) plus the
 * bookkeeping around it: validation, job-type creation, observers.
 */
export class Ledger {
  readonly jobTypes: JobTypes;
  readonly tenants: Tenants;
  readonly counts: QueueCounts;
  /** Per tenant: jobs waiting at the last backlog read, jobs this process added since, when it was read. */
  private readonly backlogSeen = new Map<string, { waiting: number; added: number; at: number }>();
  private readonly observers: LedgerObserver[] = [];

  constructor(readonly pool: pg.Pool, readonly config: LedgerConfig) {
    this.jobTypes = new JobTypes(pool, config);
    this.tenants = new Tenants(pool);
    this.counts = new QueueCounts(pool);
  }

  observe(observer: LedgerObserver): void {
    this.observers.push(observer);
  }

  private emit(records: TransitionRecord[]): void {
    if (records.length > 0) for (const o of this.observers) o.onTransitions(records);
  }

  /**
   * Enqueues a batch atomically. Pass `client` to enqueue inside your own
   * transaction: the jobs then exist only if, and when, it commits.
   */
  async enqueue(inputs: EnqueueInput[], opts: { actor?: Actor; client?: Queryable; reason?: string } = {}): Promise<EnqueueResult[]> {
    const prepared = inputs.map((input, i) => prepareJob(input, this.config.maxPayloadBytes, inputs.length > 1 ? `jobs[${i}]` : '', inputs[i - 1]));
    await this.jobTypes.ensure(prepared.map((p) => p.jobType));
    await this.tenants.ensure(prepared.map((p) => p.tenantId));
    await this.refuseOverBacklog(prepared);
    const results = await enqueue(opts.client ?? this.pool, prepared, opts.actor ?? 'api', opts.reason ?? null);
    this.emit(results.filter((r) => r.created).map((r) => ({
      jobId: r.id, tenantId: r.tenantId, jobType: r.jobType, from: null, to: 'queued', attempt: 0,
    })));
    return results;
  }

  /**
   * Backpressure: refuses the whole batch while a tenant's waiting jobs would
   * pass maxQueuedPerTenant. Read from the queue counts, not the job table;
   * batches racing each other may overshoot the limit by their own size.
   * Resubmits of jobs that already exist (same idempotency key) add nothing,
   * so a producer retrying an accepted job still gets it back.
   */
  private async refuseOverBacklog(jobs: PreparedJob[]): Promise<void> {
    const limit = this.config.maxQueuedPerTenant;
    if (limit === 0) return;
    const adding = (list: PreparedJob[]) => {
      const byTenant = new Map<string, number>();
      for (const j of list) byTenant.set(j.tenantId, (byTenant.get(j.tenantId) ?? 0) + 1);
      return byTenant;
    };
    const over = async (list: PreparedJob[]) => {
      const byTenant = adding(list);
      const backlog = await this.counts.backlog([...byTenant.keys()]);
      const at = Date.now();
      // counted as added already: if the batch is refused, the estimate only errs on the safe side
      for (const [t, n] of byTenant) this.backlogSeen.set(t, { waiting: backlog.get(t) ?? 0, added: n, at });
      return [...byTenant].filter(([t, n]) => (backlog.get(t) ?? 0) + n > limit).map(([t]) => ({ tenant: t, waiting: backlog.get(t) ?? 0 }));
    };
    const byTenant = adding(jobs);
    if (this.farBelowLimit(byTenant, limit)) return;
    if ((await over(jobs)).length === 0) return;
    const fresh = await withoutExisting(this.pool, jobs);
    const refused = await over(fresh);
    if (refused.length === 0) return;
    for (const [tenant, n] of byTenant) for (const o of this.observers) o.onEnqueueRefused?.(tenant, n);
    const { tenant, waiting } = refused[0]!;
    throw new LedgerError('backpressure', 'tenantId',
      `tenant ${tenant} has ${waiting} jobs waiting; the limit is ${limit} (ORCH_MAX_QUEUED_PER_TENANT): retry later`);
  }

  /**
   * Skips the backlog read for tenants far from the limit: while what was
   * waiting at the last read (under a second ago) plus what this process has
   * added since stays within half the limit, no replica can plausibly have
   * filled the other half in the meantime. Near the limit every enqueue reads.
   */
  private farBelowLimit(byTenant: Map<string, number>, limit: number): boolean {
    const now = Date.now();
    const seen = [...byTenant].map(([t, n]) => ({ s: this.backlogSeen.get(t), n }));
    if (!seen.every(({ s, n }) => s && now - s.at < 1000 && s.waiting + s.added + n <= limit / 2)) return false;
    for (const { s, n } of seen) s!.added += n;
    return true;
  }

  async claim(req: ClaimRequest): Promise<Lease[]> {
    return (await this.claimRound(req)).leases;
  }

  /** A claim that also says which work flow control held back, and until when. */
  async claimRound(req: ClaimRequest): Promise<ClaimRound> {
    const { leases, throttled, records } = await claim(this.pool, req, `worker:${req.workerId}`);
    this.emit(records);
    if (throttled.length > 0) for (const o of this.observers) o.onThrottled?.(throttled);
    return { leases, throttled };
  }

  heartbeat(inputs: HeartbeatInput[], leaseMs: number | null = null): Promise<HeartbeatOutcome[]> {
    return heartbeat(this.pool, inputs, leaseMs);
  }

  async complete(inputs: CompleteInput[], actor: Actor): Promise<AckOutcome[]> {
    const { outcomes, records } = await complete(this.pool, inputs, actor);
    this.emit(records);
    return outcomes;
  }

  async fail(inputs: FailInput[], actor: Actor): Promise<AckOutcome[]> {
    const { outcomes, records } = await fail(this.pool, inputs, actor);
    this.emit(records);
    return outcomes;
  }

  /** The lease holder hands back leases it will not run; the attempt is not counted. */
  async release(inputs: LeaseRef[], actor: Actor): Promise<AckOutcome[]> {
    const { outcomes, records } = await release(this.pool, inputs, actor);
    this.emit(records);
    return outcomes;
  }

  async cancel(tenantId: string, jobId: string, actor: Actor, reason: string | null = null): Promise<void> {
    this.emit([await cancel(this.pool, tenantId, jobId, actor, reason)]);
  }

  async expireLeases(limit: number, actor: Actor): Promise<TransitionRecord[]> {
    const records = await expire(this.pool, limit, actor);
    this.emit(records);
    return records;
  }

  async timeoutJobs(limit: number, actor: Actor): Promise<TransitionRecord[]> {
    const records = await timeout(this.pool, limit, actor);
    this.emit(records);
    return records;
  }

  getJob(tenantId: string, id: string): Promise<Job | null> {
    return getJob(this.pool, tenantId, id);
  }

  getHistory(tenantId: string, id: string): Promise<HistoryEntry[]> {
    return getHistory(this.pool, tenantId, id);
  }

  listJobs(filter: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }> {
    return listJobs(this.pool, filter);
  }
}
