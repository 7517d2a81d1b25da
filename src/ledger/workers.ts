import type pg from 'pg';
import type { Queryable } from './db.ts';

/** How often one server writes a worker's record at most: claims and heartbeats come far more often. */
export const WORKER_REFRESH_MS = 2000;
/** Workers not seen for this long leave the registry. */
const FORGET_AFTER = '7 days';
/** The tenant of a worker that claims for every tenant (an all-tenant principal without X-Tenant-Id). */
export const ALL_TENANTS = '*';

export interface WorkerSighting {
  workerId: string;
  /** The tenants it claims for; undefined = every tenant. */
  tenantIds?: string[];
  jobTypes: string[];
  host?: string;
  version?: string;
}

export type WorkerStatus = 'active' | 'stopped' | 'lost';

export interface WorkerRecord {
  workerId: string;
  /** The tenant it claims for, or "*" for a worker that claims for every tenant. */
  tenantId: string;
  host: string | null;
  version: string | null;
  jobTypes: string[];
  firstSeen: string;
  lastSeen: string;
  /** Seconds since the worker was last seen. */
  silentSeconds: number;
  /**
   * "active"; "stopped" once it said it stopped (an SDK worker's stop(), SIGTERM); "lost" once
   * silent past ORCH_WORKER_LOST_AFTER_MS without saying so (its leases were then released).
   */
  status: WorkerStatus;
  lostAt: string | null;
  stoppedAt: string | null;
  /** Leases the worker holds now. */
  inFlight: number;
}

/** A worker marked lost: the leases it holds in `tenantId` ("*": in every tenant) are to be released. */
export interface LostWorker { tenantId: string; workerId: string }

/** The key of `Workers.written`: one sighting writes the records of all its tenants at once. */
const writtenKey = (tenantIds: string[], workerId: string): string => `${tenantIds.join(',')}\u0000${workerId}`;

/**
 * The worker registry (orch.workers): who is claiming, for which tenant and
 * job types, and when each was last heard from. A worker belongs to the
 * tenant it claims for, and its id is unique per tenant: one tenant's claim
 * never touches another tenant's record. Claims refresh it here; heartbeats
 * refresh it inside the heartbeat statement; the lease reaper marks silent
 * workers lost and takes their leases back; a worker that stops says so.
 */
export class Workers {
  /** When this server last wrote each worker's record, so a busy worker costs one write per WORKER_REFRESH_MS. */
  private readonly written = new Map<string, { at: number; jobTypes: string }>();

  constructor(private readonly pool: pg.Pool) {}

  async seen(w: WorkerSighting): Promise<void> {
    const now = Date.now();
    const tenants = w.tenantIds ?? [ALL_TENANTS];
    const jobTypes = [...w.jobTypes].sort().join(',');
    const key = writtenKey(tenants, w.workerId);
    const last = this.written.get(key);
    if (last && now - last.at < WORKER_REFRESH_MS && last.jobTypes === jobTypes) return;
    if (this.written.size > 10_000) this.written.clear();
    this.written.set(key, { at: now, jobTypes });
    await this.pool.query(
      `INSERT INTO orch.workers AS w (tenant_id, worker_id, host, version, job_types)
       SELECT t, $1, $2, $3, $4 FROM unnest($5::text[]) AS t
       ON CONFLICT (tenant_id, worker_id) DO UPDATE SET last_seen = now(), lost_at = NULL, stopped_at = NULL, job_types = EXCLUDED.job_types,
         host = coalesce(EXCLUDED.host, w.host), version = coalesce(EXCLUDED.version, w.version)`,
      [w.workerId, w.host ?? null, w.version ?? null, jobTypes.split(','), tenants],
    );
  }

  /**
   * The worker said it stopped (its leases handed back): it is "stopped", never "lost". `tenantIds`
   * names its records as its claims did (undefined = the record of a worker claiming for every
   * tenant), so a stop never touches another tenant's worker of the same id. Returns the records changed.
   */
  async stopped(workerId: string, tenantIds: string[] | undefined): Promise<number> {
    const tenants = tenantIds ?? [ALL_TENANTS];
    const { rowCount } = await this.pool.query(
      `UPDATE orch.workers SET stopped_at = now(), last_seen = now()
       WHERE worker_id = $1 AND tenant_id = ANY($2) AND lost_at IS NULL`,
      [workerId, tenants]);
    this.written.delete(writtenKey(tenants, workerId));
    return rowCount ?? 0;
  }

  /** Marks running workers silent for lostAfterMs as lost; returns the ones newly marked. */
  async markLost(lostAfterMs: number): Promise<LostWorker[]> {
    const { rows } = await this.pool.query<{ tenant_id: string; worker_id: string }>(
      `UPDATE orch.workers SET lost_at = now()
       WHERE lost_at IS NULL AND stopped_at IS NULL AND last_seen < now() - make_interval(secs => $1::float8 / 1000)
       RETURNING tenant_id, worker_id`,
      [lostAfterMs]);
    this.written.clear();
    return rows.map((r) => ({ tenantId: r.tenant_id, workerId: r.worker_id }));
  }

  async forgetOld(): Promise<number> {
    const { rowCount } = await this.pool.query(`DELETE FROM orch.workers WHERE last_seen < now() - interval '${FORGET_AFTER}'`);
    return rowCount ?? 0;
  }

  /**
   * The workers of these tenants (and those claiming for every tenant), most recently seen first,
   * with the leases each holds now in those tenants (a scan of leased rows only). `db` is the
   * tenant-scoped reader in the API, so row-level security holds even if this filter were wrong.
   */
  async list(db: Queryable, tenantIds: string[] | undefined): Promise<WorkerRecord[]> {
    const { rows } = await db.query<{
      tenant_id: string; worker_id: string; host: string | null; version: string | null; job_types: string[]; first_seen: Date; last_seen: Date;
      silent: number; lost_at: Date | null; stopped_at: Date | null; in_flight: string;
    }>(`WITH held AS (
          -- one pass over the leased rows (the partial lease index), whatever the number of workers
          SELECT tenant_id, worker_id, count(*) AS n FROM orch.jobs
          WHERE state = 'leased' AND ($1::text[] IS NULL OR tenant_id = ANY($1)) GROUP BY 1, 2
        )
        SELECT w.*, extract(epoch FROM now() - w.last_seen)::float8 AS silent,
          (SELECT coalesce(sum(h.n), 0) FROM held h WHERE h.worker_id = w.worker_id AND (w.tenant_id = '*' OR h.tenant_id = w.tenant_id)) AS in_flight
        FROM orch.workers w
        WHERE $1::text[] IS NULL OR w.tenant_id = ANY($1) OR w.tenant_id = '*'
        ORDER BY w.last_seen DESC, w.worker_id, w.tenant_id`, [tenantIds ?? null]);
    return rows.map((r) => ({
      workerId: r.worker_id, tenantId: r.tenant_id, host: r.host, version: r.version, jobTypes: r.job_types,
      firstSeen: r.first_seen.toISOString(), lastSeen: r.last_seen.toISOString(), silentSeconds: Math.round(r.silent * 10) / 10,
      status: r.lost_at ? 'lost' : r.stopped_at ? 'stopped' : 'active',
      lostAt: r.lost_at?.toISOString() ?? null, stoppedAt: r.stopped_at?.toISOString() ?? null, inFlight: Number(r.in_flight),
    }));
  }
}
