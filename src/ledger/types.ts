export const JOB_STATES = ['queued', 'leased', 'succeeded', 'failed', 'dead_lettered', 'canceled', 'timed_out', 'cleared', 'waiting'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** Orders of a job list: newest/oldest by creation (id); priority is the claim order of waiting work. */
export const JOB_SORTS = ['newest', 'oldest', 'priority'] as const;
export type JobSort = (typeof JOB_SORTS)[number];
/** States a job can be canceled from: it has not ended. */
export const CANCELABLE_STATES = ['queued', 'failed', 'leased', 'waiting'] as const satisfies readonly JobState[];
/** States a job can be replayed from: it ended without success and will not run again by itself. */
export const REPLAYABLE_STATES = ['dead_lettered', 'cleared', 'canceled', 'timed_out'] as const satisfies readonly JobState[];
/** What an operator does to every job a filter selects (POST /jobs/bulk): retry = a failed job waiting for its backoff runs now. */
export const BULK_ACTIONS = ['cancel', 'replay', 'retry'] as const;
export type BulkAction = (typeof BULK_ACTIONS)[number];

/** Who caused a transition: "api", "worker:<id>", "system:<service>", "operator:<subject>". */
export type Actor = string;

export interface EnqueueInput {
  tenantId: string;
  jobType: string;
  payload: unknown;
  priority?: number;
  runAfter?: Date;
  maxAttempts?: number;
  idempotencyKey?: string;
  correlationId?: string;
  /** Jobs this one waits for (state `waiting`) before it is queued. */
  dependsOn?: Dependency[];
  /** The workflow and step this job is (src/workflows; set by a workflow's submission). */
  workflowId?: string;
  stepName?: string;
}

/**
 * What a dependent does when a parent ends without success (dead-lettered,
 * canceled, timed out): `cancel` it (and what depends on it), `ignore` the
 * failure and run, or `wait` until a replay of the parent succeeds.
 */
export const EDGE_POLICIES = ['cancel', 'ignore', 'wait'] as const;
export type EdgePolicy = (typeof EDGE_POLICIES)[number];

/** A parent: an existing job of the same tenant (`jobId`), or the input at `index` of the same batch. */
export type Dependency = ({ jobId: string; index?: never } | { index: number; jobId?: never }) & { onFailure?: EdgePolicy };

export interface EnqueueResult {
  id: string;
  tenantId: string;
  jobType: string;
  state: JobState;
  /** false when an idempotency key matched an existing job, which is returned instead. */
  created: boolean;
}

export interface ErrorInfo {
  class: string;
  message: string;
  retryable?: boolean;
  details?: unknown;
}

export interface Artifact {
  name: string;
  uri: string;
  sha256: string;
}

export interface Job {
  id: string;
  tenantId: string;
  jobType: string;
  state: JobState;
  priority: number;
  payload: unknown;
  runAfter: string;
  attempt: number;
  maxAttempts: number;
  idempotencyKey: string | null;
  correlationId: string | null;
  replayOf: string | null;
  leaseId: string | null;
  leaseUntil: string | null;
  workerId: string | null;
  heartbeatAt: string | null;
  startedAt: string | null;
  deadlineAt: string | null;
  progress: number | null;
  progressMessage: string | null;
  result: unknown;
  artifacts: Artifact[] | null;
  lastError: ErrorInfo | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  /** Queued (or waiting to retry) but held back by a dispatch pause. */
  paused: boolean;
  /** The workflow and step it belongs to, if any. */
  workflowId: string | null;
  stepName: string | null;
  /** While waiting: the parents it still waits for. */
  pendingParents: number;
}

export interface HistoryEntry {
  at: string;
  from: JobState | null;
  to: JobState;
  attempt: number;
  leaseId: string | null;
  actor: Actor;
  /** What made the transition (see TRANSITION_CAUSES); `reason` is the note recorded with it. */
  cause: TransitionCause;
  reason: string | null;
  error: ErrorInfo | null;
}

/** What a worker receives for each claimed job. */
export interface Lease {
  jobId: string;
  leaseId: string;
  leaseUntil: string;
  /** Lease length: renew (heartbeat) well within it. */
  leaseMs: number;
  attempt: number;
  maxAttempts: number;
  /** The job's idempotency key, or a stable key derived from its id: side effects keyed on it happen once. */
  idempotencyKey: string;
  tenantId: string;
  jobType: string;
  priority: number;
  payload: unknown;
  correlationId: string | null;
  deadlineAt: string | null;
  /**
   * For a job that waited for others: each parent's result, by step name (by
   * job id outside a workflow). A result over 64 KiB, or past 1 MiB in all,
   * is replaced by { truncated: true, jobId, bytes }: fetch that job instead.
   */
  parents?: Record<string, unknown>;
}

export interface ClaimRequest {
  workerId: string;
  jobTypes: string[];
  limit: number;
  /** The tenants the worker claims for (its scope and its registry record); undefined means all tenants. */
  tenantIds?: string[];
  /** This claim looks only at these tenants' queues, within tenantIds (an express claim's, src/dispatch/dispatcher.ts). */
  onlyTenants?: string[];
  /** Overrides the job type's lease length for these leases. */
  leaseMs?: number;
  /** The worker's host and version, shown in the worker registry. */
  host?: string;
  version?: string;
}

export interface LeaseRef {
  /** The lease's tenant (every lease names it): jobs are keyed by tenant and id. */
  tenantId: string;
  jobId: string;
  leaseId: string;
}

export interface HeartbeatInput extends LeaseRef {
  progress?: number;
  message?: string;
}

export interface CompleteInput extends LeaseRef {
  result?: unknown;
  artifacts?: Artifact[];
}

export interface FailInput extends LeaseRef {
  error: ErrorInfo;
}

/**
 * Why an ack or heartbeat did not apply. "duplicate" is the one benign case:
 * the same lease already acked with the same outcome, so the repeat is a no-op.
 */
export type RefusalReason = 'not_found' | 'lease_expired' | 'lease_lost' | 'canceled' | 'timed_out' | 'already_acked';

export type AckOutcome =
  | { jobId: string; status: 'ok'; state: JobState }
  | { jobId: string; status: 'duplicate'; state: JobState }
  | { jobId: string; status: 'refused'; reason: RefusalReason; state: JobState | null };

export type HeartbeatOutcome =
  | { jobId: string; status: 'ok'; leaseUntil: string }
  | { jobId: string; status: 'refused'; reason: RefusalReason; state: JobState | null };

export interface JobTypeDefinition {
  name: string;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  backoffJitter: number;
  leaseMs: number;
  timeoutMs: number | null;
  implicit: boolean;
  createdAt: string;
  updatedAt: string;
}

/** One applied transition, handed to observers (metrics now, more later). */
/**
 * What made a transition, fixed by the statement that wrote it and stored
 * with its history (orch.job_transitions.cause): the events, the metrics and
 * the history read it, never the free-text reason (an operator's note).
 */
export const TRANSITION_CAUSES = [
  'enqueued', 'replayed', 'claimed', 'worker_completed', 'worker_failed', 'worker_released',
  'lease_expired', 'timed_out', 'force_released', 'worker_lost', 'operator_canceled', 'dlq_cleared',
  'scheduled', 'backfilled', 'dependencies_met', 'dependency_failed', 'operator_retried',
] as const;
export type TransitionCause = (typeof TRANSITION_CAUSES)[number];

/**
 * Transitions of a started job that end no attempt: a DLQ clear, a job handed
 * back unrun, a waiting job's release, a retry made due now. The outcome
 * counters (orchestrator_jobs_total) and the alert conditions read from the
 * history (src/metrics/history.ts) both leave them out.
 */
export const NO_OUTCOME_CAUSES: ReadonlySet<TransitionCause> = new Set(['dlq_cleared', 'worker_released', 'dependencies_met', 'operator_retried']);

/** What made a job: a producer's enqueue, a schedule's tick, a backfill's window. */
export type EnqueueCause = Extract<TransitionCause, 'enqueued' | 'scheduled' | 'backfilled'>;

export interface TransitionRecord {
  /** What made it; `reason` is the note recorded with it (a code, or an operator's words). */
  cause: TransitionCause;
  jobId: string;
  tenantId: string;
  jobType: string;
  from: JobState | null;
  to: JobState;
  attempt: number;
  reason?: string;
  errorClass?: string;
  /** Enqueue (or run-after) to lease, for claims. */
  dispatchLatencyMs?: number;
  /** Lease to outcome, for acks. */
  runMs?: number;
}

export interface LedgerObserver {
  onTransitions(records: TransitionRecord[]): void;
  /** Claim rounds that found work a control held back. */
  onThrottled?(throttles: Throttle[]): void;
  /** Every claim statement run, with the leases it took (0: it found nothing to take). */
  onClaimed?(leases: number): void;
  /** An enqueue of `jobs` jobs refused by backpressure. */
  onEnqueueRefused?(tenantId: string, jobs: number): void;
}

export const THROTTLE_REASONS = ['rate', 'concurrency', 'quota', 'paused'] as const;
export type ThrottleReason = (typeof THROTTLE_REASONS)[number];

/** Work of one tenant and type that a claim round found but a control held back. */
export interface Throttle {
  tenantId: string;
  jobType: string;
  reason: ThrottleReason;
  /** When the control may next allow a claim (token refill, hourly window); null when unknown (a slot must free up, a pause must end). */
  retryInMs: number | null;
}

export interface ClaimRound {
  leases: Lease[];
  throttled: Throttle[];
  /** The claim left no runnable job of its types and tenants behind: nothing more to take until news arrives. */
  drained: boolean;
}
