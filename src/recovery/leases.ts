import type { Queryable } from '../ledger/db.ts';

export interface LeaseView {
  jobId: string;
  tenantId: string;
  jobType: string;
  leaseId: string;
  workerId: string | null;
  attempt: number;
  startedAt: string;
  leaseUntil: string;
  /** Seconds since the claim. */
  ageSeconds: number;
  /** Seconds since the last heartbeat (or the claim, before the first one). */
  heartbeatAgeSeconds: number;
  progress: number | null;
  progressMessage: string | null;
  /** Heartbeat older than the stuck threshold, or the lease already past its deadline and not yet reaped. */
  stuck: boolean;
}

/** A PostgreSQL session waiting on a lock, or holding one that others wait on. */
export interface LockView {
  pid: number;
  /** "waiting" (blocked by blockedBy) or "blocking" (others wait on it). */
  role: 'waiting' | 'blocking';
  blockedBy: number[];
  state: string | null;
  waitEvent: string | null;
  transactionSeconds: number | null;
  application: string | null;
  /** The orch tables it holds or wants locks on. */
  relations: string[];
  query: string | null;
}

export interface LeaseFilter {
  tenantId: string;
  jobType?: string;
  workerId?: string;
  stuckAfterMs: number;
  limit: number;
}

/** Active leases of a tenant, stuck ones first, then by oldest heartbeat. Reads leased rows only (the partial lease index). */
export async function listLeases(db: Queryable, f: LeaseFilter): Promise<LeaseView[]> {
  const where = ['state = \'leased\'', 'tenant_id = $1'];
  const params: unknown[] = [f.tenantId, f.stuckAfterMs, f.limit];
  if (f.jobType !== undefined) where.push(`job_type = $${params.push(f.jobType)}`);
  if (f.workerId !== undefined) where.push(`worker_id = $${params.push(f.workerId)}`);
  const { rows } = await db.query<{
    id: string; tenant_id: string; job_type: string; lease_id: string; worker_id: string | null; attempt: number; started_at: Date;
    lease_until: Date; age: number; hb_age: number; progress: number | null; progress_message: string | null; stuck: boolean;
  }>(`SELECT id, tenant_id, job_type, lease_id, worker_id, attempt, started_at, lease_until, progress, progress_message,
        extract(epoch FROM now() - started_at)::float8 AS age,
        extract(epoch FROM now() - coalesce(heartbeat_at, started_at))::float8 AS hb_age,
        (coalesce(heartbeat_at, started_at) < now() - make_interval(secs => $2::float8 / 1000) OR lease_until < now()) AS stuck
      FROM orch.jobs WHERE ${where.join(' AND ')}
      ORDER BY stuck DESC, coalesce(heartbeat_at, started_at), id LIMIT $3`, params);
  const secs = (s: number) => Math.round(s * 10) / 10;
  return rows.map((r) => ({
    jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, leaseId: r.lease_id, workerId: r.worker_id, attempt: r.attempt,
    startedAt: r.started_at.toISOString(), leaseUntil: r.lease_until.toISOString(), ageSeconds: secs(r.age),
    heartbeatAgeSeconds: secs(r.hb_age), progress: r.progress, progressMessage: r.progress_message, stuck: r.stuck,
  }));
}

/**
 * The runbook's "stuck locks in the Postgres locks view", as one query:
 * sessions of this database waiting on a lock, and the sessions blocking
 * them (pg_blocking_pids), with the orch tables each touches.
 */
export async function listBlockingLocks(db: Queryable): Promise<LockView[]> {
  const { rows } = await db.query<{
    pid: number; blocked_by: number[] | null; state: string | null; wait_event: string | null; xact_s: number | null;
    application_name: string | null; relations: string[] | null; query: string | null;
  }>(`WITH waiting AS (
        SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
      ), involved AS (
        SELECT pid FROM waiting UNION SELECT unnest(blocked_by) FROM waiting
      )
      SELECT a.pid, w.blocked_by, a.state, a.wait_event_type || ':' || a.wait_event AS wait_event,
        extract(epoch FROM now() - a.xact_start)::float8 AS xact_s, a.application_name, left(a.query, 300) AS query,
        (SELECT array_agg(DISTINCT c.relname::text ORDER BY c.relname::text) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
         WHERE l.pid = a.pid AND c.relnamespace = 'orch'::regnamespace) AS relations
      FROM involved i JOIN pg_stat_activity a ON a.pid = i.pid LEFT JOIN waiting w ON w.pid = a.pid
      ORDER BY (w.pid IS NULL) DESC, a.xact_start NULLS LAST, a.pid`);
  return rows.map((r) => ({
    pid: r.pid, role: r.blocked_by ? 'waiting' : 'blocking', blockedBy: r.blocked_by ?? [], state: r.state, waitEvent: r.wait_event,
    transactionSeconds: r.xact_s === null ? null : Math.round(r.xact_s * 10) / 10, application: r.application_name,
    relations: r.relations ?? [], query: r.query,
  }));
}

/** Per job type: leases held, the oldest heartbeat among them, workers claiming it. */
export interface LeaseSample {
  jobType: string;
  leases: number;
  oldestHeartbeatAgeSeconds: number;
  workers: number;
}

/**
 * The lease and worker gauges. Reads leased rows only (through the partial
 * lease index), so its cost follows the leases held now, not the ledger's size.
 */
export async function leaseSamples(db: Queryable): Promise<LeaseSample[]> {
  const { rows } = await db.query<{ job_type: string; leases: string; oldest: number; workers: string }>(`
    SELECT coalesce(l.job_type, w.job_type) AS job_type, coalesce(l.n, 0) AS leases, coalesce(l.oldest, 0) AS oldest, coalesce(w.n, 0) AS workers
    FROM (SELECT job_type, count(*) AS n, max(extract(epoch FROM now() - coalesce(heartbeat_at, started_at)))::float8 AS oldest
          FROM orch.jobs WHERE state = 'leased' GROUP BY job_type) l
    FULL JOIN (SELECT t.job_type, count(*) AS n FROM orch.workers w CROSS JOIN LATERAL unnest(w.job_types) AS t(job_type)
               WHERE w.lost_at IS NULL AND w.stopped_at IS NULL GROUP BY t.job_type) w ON w.job_type = l.job_type`);
  return rows.map((r) => ({ jobType: r.job_type, leases: Number(r.leases), oldestHeartbeatAgeSeconds: r.oldest, workers: Number(r.workers) }));
}
