import type { AckOutcome, JobState, RefusalReason, TransitionCause, TransitionRecord } from '../types.ts';
import { settledRecords } from './history.ts';

/** The current row of a job an ack or heartbeat named, read in the same statement. */
export interface LeaseCheckRow {
  job_id: string;
  applied: boolean;
  state: JobState | null;
  same_lease: boolean | null;
  acked: 'succeeded' | 'failed' | null;
  overdue: boolean | null;
}

/** SQL fragment: the columns of LeaseCheckRow for input i, update result u and current row j. */
export const LEASE_CHECK_COLUMNS = `i.job_id::text AS job_id, (u.id IS NOT NULL) AS applied, j.state,
  (j.lease_id = i.lease_id) AS same_lease, j.acked, (j.deadline_at < now()) AS overdue`;

/** An ack settles a lease with an outcome; a renewal (heartbeat, release) needs the lease still live. */
export type LeaseAction = 'succeeded' | 'failed' | 'renew';

/**
 * Why a lease operation did not apply, or null when it is a repeat of the
 * ack already recorded for this lease (a no-op, reported as a duplicate).
 */
export function refusalReason(row: LeaseCheckRow, action: LeaseAction): RefusalReason | null {
  if (row.state === null) return 'not_found';
  if (!row.same_lease) return 'lease_lost';
  if (row.acked !== null) return row.acked === action ? null : 'already_acked';
  if (row.state === 'canceled') return 'canceled';
  if (row.state === 'timed_out' || (row.state === 'leased' && row.overdue && action === 'renew')) return 'timed_out';
  return 'lease_expired';
}

/** A row of a statement that ends a lease (complete, fail, release): the check plus what changed. */
export interface LeaseEndRow extends LeaseCheckRow {
  tenant_id: string | null;
  job_type: string | null;
  attempt: number | null;
  new_state: JobState | null;
  run_ms: string | null;
  error_class: string | null;
  /** Ending statements only (complete, fail): the dependents they settled (SETTLED_COLUMN). */
  settled?: [string, string, string, JobState][];
}

/** Per-job outcomes (in input order) and the transition records of those that applied. */
export function leaseEndOutcomes(rows: LeaseEndRow[], action: LeaseAction, cause: TransitionCause, reason?: string) {
  const outcomes: AckOutcome[] = [];
  const records: TransitionRecord[] = [];
  for (const r of rows) {
    if (r.applied) {
      const to = r.new_state!;
      outcomes.push({ jobId: r.job_id, status: 'ok', state: to });
      records.push({
        cause, jobId: r.job_id, tenantId: r.tenant_id!, jobType: r.job_type!, from: 'leased', to, attempt: r.attempt!,
        ...(r.run_ms === null ? {} : { runMs: Number(r.run_ms) }),
        ...(r.error_class ? { errorClass: r.error_class } : {}),
        ...(reason ? { reason } : {}),
      });
      continue;
    }
    const refusal = refusalReason(r, action);
    outcomes.push(refusal === null
      ? { jobId: r.job_id, status: 'duplicate', state: r.state! }
      : { jobId: r.job_id, status: 'refused', reason: refusal, state: r.state });
  }
  return { outcomes, records: [...records, ...settledRecords(rows)] };
}

/**
 * The actor an ack's history records: the caller's ($2), or when the caller has no identity of its
 * own (the server runs without authentication) the lease's holder, `worker:<id>`, never "anonymous".
 */
export const ACK_ACTOR = "coalesce($2, 'worker:' || worker_id)";
