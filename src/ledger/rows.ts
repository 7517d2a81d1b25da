import type { Artifact, ErrorInfo, HistoryEntry, Job, JobState, JobTypeDefinition, TransitionCause } from './types.ts';

/** Column list shared by every query that returns whole jobs, so row mapping has one shape. */
export const JOB_COLUMNS = `id, tenant_id, job_type, state, priority, payload, run_after, attempt, max_attempts,
  idempotency_key, correlation_id, replay_of, lease_id, lease_until, worker_id, heartbeat_at, started_at,
  deadline_at, progress, progress_message, result, artifacts, last_error, created_at, updated_at, finished_at,
  workflow_id, step_name, pending_parents`;

export interface JobRow {
  id: string;
  tenant_id: string;
  job_type: string;
  state: JobState;
  priority: number;
  payload: unknown;
  run_after: Date;
  attempt: number;
  max_attempts: number;
  idempotency_key: string | null;
  correlation_id: string | null;
  replay_of: string | null;
  lease_id: string | null;
  lease_until: Date | null;
  worker_id: string | null;
  heartbeat_at: Date | null;
  started_at: Date | null;
  deadline_at: Date | null;
  progress: number | null;
  progress_message: string | null;
  result: unknown;
  artifacts: Artifact[] | null;
  last_error: ErrorInfo | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  paused?: boolean;
  workflow_id: string | null;
  step_name: string | null;
  pending_parents: number;
}

export const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

export function toJob(r: JobRow): Job {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    jobType: r.job_type,
    state: r.state,
    priority: r.priority,
    payload: r.payload,
    runAfter: r.run_after.toISOString(),
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    idempotencyKey: r.idempotency_key,
    correlationId: r.correlation_id,
    replayOf: r.replay_of,
    leaseId: r.lease_id,
    leaseUntil: iso(r.lease_until),
    workerId: r.worker_id,
    heartbeatAt: iso(r.heartbeat_at),
    startedAt: iso(r.started_at),
    deadlineAt: iso(r.deadline_at),
    progress: r.progress,
    progressMessage: r.progress_message,
    result: r.result ?? null,
    artifacts: r.artifacts,
    lastError: r.last_error,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    finishedAt: iso(r.finished_at),
    paused: r.paused ?? false,
    workflowId: r.workflow_id,
    stepName: r.step_name,
    pendingParents: r.pending_parents,
  };
}

export interface HistoryRow {
  at: Date;
  from_state: JobState | null;
  to_state: JobState;
  attempt: number;
  lease_id: string | null;
  actor: string;
  cause: TransitionCause;
  reason: string | null;
  error: ErrorInfo | null;
}

export function toHistory(r: HistoryRow): HistoryEntry {
  return {
    at: r.at.toISOString(),
    from: r.from_state,
    to: r.to_state,
    attempt: r.attempt,
    leaseId: r.lease_id,
    actor: r.actor,
    cause: r.cause,
    reason: r.reason,
    error: r.error,
  };
}

export interface JobTypeRow {
  name: string;
  max_attempts: number;
  backoff_base_ms: number;
  backoff_max_ms: number;
  backoff_jitter: number;
  lease_ms: number;
  timeout_ms: number | null;
  implicit: boolean;
  created_at: Date;
  updated_at: Date;
}

export function toJobType(r: JobTypeRow): JobTypeDefinition {
  return {
    name: r.name,
    maxAttempts: r.max_attempts,
    backoffBaseMs: r.backoff_base_ms,
    backoffMaxMs: r.backoff_max_ms,
    backoffJitter: r.backoff_jitter,
    leaseMs: r.lease_ms,
    timeoutMs: r.timeout_ms,
    implicit: r.implicit,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}
