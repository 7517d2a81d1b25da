import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { ENDS_JOBS } from './history.ts';
import type { Actor, TransitionRecord } from '../types.ts';
import { takeLeasesStatement, takenRecords, type TakenLeaseRow } from './expire.ts';

/** Which leases to take back; a lease matching any of the given criteria is taken. */
export interface LeaseSelector {
  /** Only this tenant's leases; null = every tenant (the lease reaper releasing a lost worker's leases). */
  tenantId: string | null;
  jobIds?: string[];
  leaseIds?: string[];
  workerIds?: string[];
  /** Stuck leases: last heartbeat (or claim, if none) older than this, or past their deadline and not reaped yet. */
  stuckAfterMs?: number;
  /**
   * And only leases whose last heartbeat (or claim) is at least this old. A lost worker's leases are
   * all silent; a live worker of the same id in another tenant (or claiming for every tenant)
   * heartbeats its own, and keeps them.
   */
  silentForMs?: number;
}

/**
 * leased -> queued (or dead_lettered when attempts are spent), taken from the
 * holder by an operator or by the lease reaper, before the lease's deadline.
 * Scans only leased rows (the partial lease index). History records the actor
 * and reason; the old holder's late ack is refused. A row another session has
 * locked is skipped (the lease view's lock list shows who holds it).
 */
const forceReleaseStatement = prepared('force_release', takeLeasesStatement(`
  SELECT tenant_id, id,
    coalesce(heartbeat_at, started_at) < now() - make_interval(secs => $10::float8 / 1000) OR lease_until < now() AS charged
  FROM orch.jobs
  WHERE state = 'leased' AND ($4::text IS NULL OR tenant_id = $4)
    AND (id = ANY($5::bigint[]) OR lease_id = ANY($6::uuid[]) OR worker_id = ANY($7::text[])
      OR coalesce(heartbeat_at, started_at) < now() - make_interval(secs => $8::float8 / 1000) OR ($8 IS NOT NULL AND lease_until < now()))
    AND ($11::float8 IS NULL OR coalesce(heartbeat_at, started_at) < now() - make_interval(secs => $11::float8 / 1000))
  ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED`,
  '$9::text', '$12::text', { class: 'LeaseReleased', message: 'lease released by force' }), ENDS_JOBS);

/** Why leases are taken: an operator's force release, or the reaper acting on a lost worker. */
export type ReleaseCause = 'force_released' | 'worker_lost';

/**
 * `reason` is recorded in the history (the operator's X-Operator-Reason); `cause` labels the transition records.
 * An operator's release of a lease heartbeated within `healthyWithinMs` (and not past its deadline) gives the
 * attempt back; a stuck lease's attempt stays counted, as at its expiry. A lost worker's leases are all charged.
 */
export async function forceRelease(
  db: Queryable, selector: LeaseSelector, limit: number, actor: Actor, reason: string, cause: ReleaseCause, healthyWithinMs: number,
): Promise<TransitionRecord[]> {
  const { rows } = await forceReleaseStatement<TakenLeaseRow>(db, [
    limit, actor, randomUUID(), selector.tenantId, selector.jobIds ?? [], selector.leaseIds ?? [], selector.workerIds ?? [],
    selector.stuckAfterMs ?? null, reason, cause === 'worker_lost' ? 0 : healthyWithinMs, selector.silentForMs ?? null, cause,
  ]);
  return takenRecords(rows, cause, reason);
}
