import type pg from 'pg';
import type { Config } from '../config/config.ts';
import { Backpressure } from './backpressure.ts';
import { isSerializationFailure, MAX_SERIALIZATION_RETRIES, withTransaction, type Queryable } from './db.ts';
import { JobTypes } from './job-types.ts';
import { QueueCounts } from './queue-counts.ts';
import { Tenants } from './tenants.ts';
import { getHistory, getJob } from './queries.ts';
import { cancel, type CancelOutcome } from './transitions/cancel.ts';
import { LedgerError } from './errors.ts';
import { clear } from './transitions/clear.ts';
import { claim } from './transitions/claim.ts';
import { complete } from './transitions/complete.ts';
import { enqueueLinked } from './transitions/depend.ts';
import { enqueue } from './transitions/enqueue.ts';
import { expire } from './transitions/expire.ts';
import { fail } from './transitions/fail.ts';
import { forceRelease, type LeaseSelector, type ReleaseCause } from './transitions/force-release.ts';
import { heartbeat } from './transitions/heartbeat.ts';
import { pruneFinished, pruneWorkflows, type PruneCursor, type PruneResult } from './transitions/prune.ts';
import { release } from './transitions/release.ts';
import { replay, type ReplayOutcome } from './transitions/replay.ts';
import { retryNow } from './transitions/retry-now.ts';
import { timeout } from './transitions/timeout.ts';
import type {
  AckOutcome, Actor, ClaimRequest, ClaimRound, CompleteInput, EnqueueCause, EnqueueInput, EnqueueResult, FailInput, HeartbeatInput,
  HeartbeatOutcome, HistoryEntry, Job, JobState, Lease, LeaseRef, LedgerObserver, TransitionRecord,
} from './types.ts';
import { prepareJob } from './validate.ts';
import { Workers } from './workers.ts';

/**
 * A caller's transaction (an operator action: the change and its audit entry commit together):
 * statements run on `client`; observers are told in `afterCommit`, once it committed.
 */
export interface Tx { client: Queryable; afterCommit: (() => void)[] }

/** Runs fn in a transaction as a Tx, then what it left for after the commit. */
export async function inTransaction<T>(pool: pg.Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const afterCommit: (() => void)[] = [];
    try {
      const result = await withTransaction(pool, (client) => fn({ client, afterCommit }));
      for (const f of afterCommit) f();
      return result;
    } catch (err) {
      // rolled back whole, so fn runs again from the start (see isSerializationFailure)
      if (!isSerializationFailure(err) || attempt >= MAX_SERIALIZATION_RETRIES) throw err;
    }
  }
}

export type LedgerConfig = Pick<Config, 'maxJobTypes' | 'jobTypeDefaults' | 'maxPayloadBytes' | 'maxQueuedPerTenant' | 'leaseStuckAfterMs'>;

/**
 * The one door to the job table. Each method is one transition from
 * src/ledger/transitions (one statement, so one transaction) plus the
 * bookkeeping around it: validation, job-type creation, observers.
 */
export class Ledger {
  readonly jobTypes: JobTypes;
  readonly tenants: Tenants;
  readonly counts: QueueCounts;
  readonly workers: Workers;
  private readonly backpressure: Backpressure;
  private readonly observers: LedgerObserver[] = [];

  constructor(readonly pool: pg.Pool, readonly config: LedgerConfig) {
    this.jobTypes = new JobTypes(pool, config);
    this.tenants = new Tenants(pool);
    this.counts = new QueueCounts(pool);
    this.workers = new Workers(pool);
    this.backpressure = new Backpressure(pool, this.counts, config.maxQueuedPerTenant, (tenantId, jobs) => {
      for (const o of this.observers) o.onEnqueueRefused?.(tenantId, jobs);
    });
  }

  observe(observer: LedgerObserver): void {
    this.observers.push(observer);
  }

  private emit(records: TransitionRecord[]): void {
    if (records.length > 0) for (const o of this.observers) o.onTransitions(records);
  }

  /** Observers hear of a transition inside a caller's transaction only once it commits. */
  private emitIn(tx: Tx | undefined, records: TransitionRecord[]): void {
    if (tx) tx.afterCommit.push(() => this.emit(records));
    else this.emit(records);
  }

  /**
   * Enqueues a batch atomically. Pass `client` to enqueue inside your own
   * transaction: the jobs then exist only if, and when, it commits; with `tx`
   * observers also hear of them only then. `cause` says what made them (a
   * schedule's tick, a backfill's window).
   */
  async enqueue(
    inputs: EnqueueInput[], opts: { actor?: Actor; client?: Queryable; tx?: Tx; reason?: string; cause?: EnqueueCause } = {},
  ): Promise<EnqueueResult[]> {
    const field = (i: number) => (inputs.length > 1 ? `jobs[${i}]` : '');
    const prepared = inputs.map((input, i) => prepareJob(input, this.config.maxPayloadBytes, field(i), inputs[i - 1]));
    await this.jobTypes.ensure(prepared.map((p) => p.jobType));
    await this.tenants.ensure(prepared.map((p) => p.tenantId));
    await this.backpressure.check(prepared);
    const cause = opts.cause ?? 'enqueued';
    const actor = opts.actor ?? 'api';
    const db = opts.tx?.client ?? opts.client;
    // parents are locked and the jobs and their edges written together: in the caller's transaction, or one of its own
    const linked = (client: Queryable) => enqueueLinked(client, prepared, actor, opts.reason ?? null, cause, field);
    const results = !prepared.some((p) => (p.dependsOn?.length ?? 0) > 0)
      ? await enqueue(db ?? this.pool, prepared, actor, opts.reason ?? null, cause)
      : db ? await linked(db) : await withTransaction(this.pool, linked);
    this.emitIn(opts.tx, results.filter((r) => r.created).map((r) => ({
      cause, jobId: r.id, tenantId: r.tenantId, jobType: r.jobType, from: null, to: r.state, attempt: 0,
    })));
    return results;
  }

  async claim(req: ClaimRequest): Promise<Lease[]> {
    return (await this.claimRound(req)).leases;
  }

  /** A claim that also says which work flow control held back, and until when. */
  async claimRound(req: ClaimRequest): Promise<ClaimRound> {
    await this.workers.seen(req);
    const { records, ...round } = await claim(this.pool, req, `worker:${req.workerId}`);
    this.emit(records);
    for (const o of this.observers) {
      o.onClaimed?.(round.leases.length);
      if (round.throttled.length > 0) o.onThrottled?.(round.throttled);
    }
    return round;
  }

  heartbeat(inputs: HeartbeatInput[]): Promise<HeartbeatOutcome[]> {
    return heartbeat(this.pool, inputs);
  }

  /** Acks of lease holders; `actor` null records each lease's holder (`worker:<id>`). */
  async complete(inputs: CompleteInput[], actor: Actor | null): Promise<AckOutcome[]> {
    const { outcomes, records } = await complete(this.pool, inputs, actor);
    this.emit(records);
    return outcomes;
  }

  async fail(inputs: FailInput[], actor: Actor | null): Promise<AckOutcome[]> {
    const { outcomes, records } = await fail(this.pool, inputs, actor);
    this.emit(records);
    return outcomes;
  }

  /** The lease holder hands back leases it will not run; the attempt is not counted. */
  async release(inputs: LeaseRef[], actor: Actor | null): Promise<AckOutcome[]> {
    const { outcomes, records } = await release(this.pool, inputs, actor);
    this.emit(records);
    return outcomes;
  }

  /** Cancels one job that has not ended; a job not found or already ended is an error naming its state. */
  async cancel(tenantId: string, jobId: string, actor: Actor, reason: string | null = null, tx?: Tx): Promise<void> {
    const [outcome] = await this.cancelMany(tenantId, [jobId], actor, reason, { tx });
    if (!outcome) throw new LedgerError('not_found', 'jobId', `job ${jobId} not found`);
    if (!outcome.record) throw new LedgerError('conflict', 'jobId', `job ${jobId} is ${outcome.state} and cannot be canceled`);
  }

  /**
   * Cancels the jobs of one tenant that are in one of `states` (default: every
   * state a job has not ended in) in one statement; the others are left as
   * they are. One outcome per job found, in id order.
   */
  async cancelMany(
    tenantId: string, jobIds: string[], actor: Actor, reason: string | null, opts: { states?: readonly JobState[]; tx?: Tx } = {},
  ): Promise<CancelOutcome[]> {
    const { outcomes, settled } = await cancel(opts.tx?.client ?? this.pool, tenantId, jobIds, actor, reason, opts.states);
    this.emitIn(opts.tx, [...outcomes.flatMap((o) => (o.record ? [o.record] : [])), ...settled]);
    return outcomes;
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

  /** Takes leases from their holders before their deadline (operator force release, lost workers); see LeaseSelector. */
  async forceRelease(
    selector: LeaseSelector, limit: number, actor: Actor, reason: string, cause: ReleaseCause = 'force_released', tx?: Tx,
  ): Promise<TransitionRecord[]> {
    const records = await forceRelease(tx?.client ?? this.pool, selector, limit, actor, reason, cause, this.config.leaseStuckAfterMs);
    this.emitIn(tx, records);
    return records;
  }

  /** Removes dead letters from the DLQ (dead_lettered -> cleared); returns how many were. Callers check a snapshot holds them. */
  async clear(tenantId: string, jobIds: string[], actor: Actor, reason: string, tx?: Tx): Promise<number> {
    const records = await clear(tx?.client ?? this.pool, tenantId, jobIds, actor, reason);
    this.emitIn(tx, records);
    return records.length;
  }

  /**
   * Re-enqueues ended jobs as new jobs pointing back at them (idempotent per
   * job). Pass `tx` to run inside the caller's transaction.
   */
  async replay(
    tenantId: string, jobIds: string[], opts: { priority: number | null; actor: Actor; reason: string; tx?: Tx },
  ): Promise<ReplayOutcome[]> {
    const { outcomes, records } = await replay(opts.tx?.client ?? this.pool, tenantId, [...new Set(jobIds)], opts);
    this.emitIn(opts.tx, records);
    return outcomes;
  }

  /**
   * Makes jobs waiting for their retry backoff claimable now ("retry now"); returns those it moved.
   * Pass `tx` to run inside the caller's transaction.
   */
  async retryNow(tenantId: string, jobIds: string[], actor: Actor, reason: string, tx?: Tx): Promise<TransitionRecord[]> {
    const records = await retryNow(tx?.client ?? this.pool, tenantId, jobIds, actor, reason);
    this.emitIn(tx, records);
    return records;
  }

  /** Deletes jobs that ended before `cutoff` with their history, from the history batches after `cursor` (see transitions/prune.ts). */
  pruneFinished(cutoff: Date, cursor: PruneCursor, limit: number): Promise<PruneResult> {
    return pruneFinished(this.pool, cutoff, cursor, limit);
  }

  /** Deletes workflows that ended before `cutoff`, with their jobs that ended. */
  pruneWorkflows(cutoff: Date, limit: number): Promise<{ jobs: number; workflows: number; scanned: number }> {
    return pruneWorkflows(this.pool, cutoff, limit);
  }

  getJob(tenantId: string, id: string): Promise<Job | null> {
    return getJob(this.pool, tenantId, id);
  }

  getHistory(tenantId: string, id: string): Promise<HistoryEntry[]> {
    return getHistory(this.pool, tenantId, id);
  }
}
