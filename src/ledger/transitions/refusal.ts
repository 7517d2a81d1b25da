import type { JobState, RefusalReason } from '../types.ts';

/** The current row of a job an ack or heartbeat named, read in the same statement. */
export interface LeaseCheckRow {
  job_id: string;
  applied: boolean;
  state: JobState | null;
  same_lease: boolean | null;
  acked: 'succeeded' | 'failed' | null;
  expired: boolean | null;
  overdue: boolean | null;
}

/** SQL fragment: the columns of LeaseCheckRow for input i, update result u and current row j. */
export const LEASE_CHECK_COLUMNS = `i.job_id::text AS job_id, (u.id IS NOT NULL) AS applied, j.state,
  (j.lease_id = i.lease_id) AS same_lease, j.acked, (j.lease_until < now()) AS expired, (j.deadline_at < now()) AS overdue`;

/**
 * Why a lease operation did not apply, or null when it is a repeat of the
 * ack already recorded for this lease (a no-op, reported as a duplicate).
 */
export function refusalReason(row: LeaseCheckRow, attempted: 'succeeded' | 'failed' | 'heartbeat'): RefusalReason | null {
  if (row.state === null) return 'not_found';
  if (!row.same_lease) return 'lease_lost';
  if (row.acked !== null) return row.acked === attempted ? null : 'already_acked';
  if (row.state === 'canceled') return 'canceled';
  if (row.state === 'timed_out' || (row.state === 'leased' && row.overdue && attempted === 'heartbeat')) return 'timed_out';
  return 'lease_expired';
}
