import type { Artifact, FailInput, Lease } from '../ledger/types.ts';

/** What a handler gets for one job, and how a worker turns the handler's outcome into an ack. */

export interface JobContext<P = unknown> {
  readonly id: string;
  readonly jobType: string;
  readonly tenantId: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly payload: P;
  readonly idempotencyKey: string;
  readonly leaseId: string;
  readonly correlationId: string | null;
  /** For a job that waited for others: their results by step name (job id outside a workflow); {} otherwise. See Lease.parents. */
  readonly parents: Readonly<Record<string, unknown>>;
  /** Fires when the job is canceled, its lease is lost, or the worker is shutting down past its grace period. */
  readonly signal: AbortSignal;
  /** Reports progress (0..1); sent with the next heartbeat. */
  progress(fraction: number, message?: string): void;
  /** Attaches an artifact reference to the success ack. */
  addArtifact(artifact: Artifact): void;
}

export type Handler<P = unknown> = (job: JobContext<P>) => unknown;

/** Throw this (or any error with `retryable = false`) to send the job straight to the dead-letter state. */
export class NonRetryableError extends Error {
  readonly retryable = false;
  constructor(message: string, readonly errorClass = 'NonRetryableError') {
    super(message);
    this.name = errorClass;
  }
}

/**
 * A job in a handler's hands: the handler's JobContext and the worker's
 * bookkeeping in one object (one allocation per job; the AbortController only
 * when a handler reads job.signal).
 */
export class RunningJob<P> implements JobContext<P> {
  private controller: AbortController | null = null;
  progressValue: number | undefined = undefined;
  message: string | undefined = undefined;
  progressDirty = false;
  artifacts: Artifact[] | undefined = undefined;
  lost = false;

  constructor(readonly lease: Lease, public renewedAt: number) {}

  get id() { return this.lease.jobId; }
  get jobType() { return this.lease.jobType; }
  get tenantId() { return this.lease.tenantId; }
  get attempt() { return this.lease.attempt; }
  get maxAttempts() { return this.lease.maxAttempts; }
  get payload() { return this.lease.payload as P; }
  get idempotencyKey() { return this.lease.idempotencyKey; }
  get leaseId() { return this.lease.leaseId; }
  get correlationId() { return this.lease.correlationId; }
  get parents() { return this.lease.parents ?? {}; }

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    if (this.lost && !this.controller.signal.aborted) this.controller.abort(new Error('lease lost'));
    return this.controller.signal;
  }

  progress(fraction: number, message?: string): void {
    this.progressValue = Math.min(1, Math.max(0, fraction));
    this.message = message?.slice(0, 1024);
    this.progressDirty = true;
  }

  addArtifact(artifact: Artifact): void {
    (this.artifacts ??= []).push(artifact);
  }

  /** The lease is gone (canceled, expired, stolen, or the worker is stopping): no ack, and the signal fires. */
  lose(reason: string): void {
    this.lost = true;
    this.controller?.abort(new Error(reason));
  }
}

/** The error of a failed handler as the fail ack carries it: class, message, and whether a retry may help. */
export function errorInfo(err: unknown): FailInput['error'] {
  const e = err instanceof Error ? err : new Error(String(err));
  const cls = (e as { errorClass?: unknown }).errorClass;
  return {
    class: (typeof cls === 'string' && cls) || (e.name !== 'Error' ? e.name : e.constructor?.name) || 'Error',
    message: (e.message || String(err)).slice(0, 8192),
    retryable: (e as { retryable?: unknown }).retryable !== false,
  };
}

