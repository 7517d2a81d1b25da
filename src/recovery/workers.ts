import type pg from 'pg';
import type { Queryable } from '../ledger/db.ts';

/** How often one server writes a worker's record at most: claims and heartbeats come far more often. */
export const WORKER_REFRESH_MS = 2000;
/** Workers not seen for this long leave the registry. */
const FORGET_AFTER = '7 days';

export interface WorkerSighting {
  workerId: string;
  jobTypes: string[];
  host?: string;
  version?: string;
}

export interface WorkerRecord {
  workerId: string;
  host: string | null;
  version: string | null;
  jobTypes: string[];
  firstSeen: string;
  lastSeen: string;
  /** Seconds since the worker was last seen. */
  silentSeconds: number;
  /** "active", or "lost" once silent past ORCH_WORKER_LOST_AFTER_MS (its leases were then released). */
  status: 'active' | 'lost';
  lostAt: string | null;
  /** Leases the worker holds now. */
  inFlight: number;
}

/**
 * The worker registry (orch.workers): who is claiming, for which job types,
 * and when each was last heard from. Claims refresh it here; heartbeats
 * refresh it inside the heartbeat statement. The lease reaper marks silent
 * workers lost and takes their leases back.
 */
export class Workers {
  /** When this server last wrote each worker's record, so a busy worker costs one write per WORKER_REFRESH_MS. */
  private readonly written = new Map<string, { at: number; jobTypes: string }>();

  constructor(private readonly pool: pg.Pool) {}

  async seen(w: WorkerSighting): Promise<void> {
    const now = Date.now();
    const jobTypes = [...w.jobTypes].sort().join(',');
    const last = this.written.get(w.workerId);
    if (last && now - last.at < WORKER_REFRESH_MS && last.jobTypes === jobTypes) return;
    if (this.written.size > 10_000) this.written.clear();
    this.written.set(w.workerId, { at: now, jobTypes });
    await this.pool.query(
      `INSERT INTO orch.workers AS w (worker_id, host, version, job_types) VALUES ($1, $2, $3, $4)
       ON CONFLICT (worker_id) DO UPDATE SET last_seen = now(), lost_at = NULL, job_types = EXCLUDED.job_types,
         host = coalesce(EXCLUDED.host, w.host), version = coalesce(EXCLUDED.version, w.version)`,
      [w.workerId, w.host ?? null, w.version ?? null, jobTypes.split(',')],
    );
  }

  /** Marks workers silent for lostAfterMs as lost; returns the ones newly marked. */
  async markLost(lostAfterMs: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ worker_id: string }>(
      `UPDATE orch.workers SET lost_at = now()
       WHERE lost_at IS NULL AND last_seen < now() - make_interval(secs => $1::float8 / 1000) RETURNING worker_id`,
      [lostAfterMs]);
    for (const r of rows) this.written.delete(r.worker_id);
    return rows.map((r) => r.worker_id);
  }

  async forgetOld(): Promise<number> {
    const { rowCount } = await this.pool.query(`DELETE FROM orch.workers WHERE last_seen < now() - interval '${FORGET_AFTER}'`);
    return rowCount ?? 0;
  }

  /** Every registered worker, most recently seen first, with the leases it holds now (a scan of leased rows only). */
  async list(db: Queryable = this.pool): Promise<WorkerRecord[]> {
    const { rows } = await db.query<{
      worker_id: string; host: string | null; version: string | null; job_types: string[]; first_seen: Date; last_seen: Date;
      silent: number; lost_at: Date | null; in_flight: string;
    }>(`SELECT w.*, extract(epoch FROM now() - w.last_seen)::float8 AS silent, coalesce(l.n, 0) AS in_flight
        FROM orch.workers w
        LEFT JOIN (SELECT worker_id, count(*) AS n FROM orch.jobs WHERE state = 'leased' GROUP BY worker_id) l ON l.worker_id = w.worker_id
        ORDER BY w.last_seen DESC, w.worker_id`);
    return rows.map((r) => ({
      workerId: r.worker_id, host: r.host, version: r.version, jobTypes: r.job_types,
      firstSeen: r.first_seen.toISOString(), lastSeen: r.last_seen.toISOString(), silentSeconds: Math.round(r.silent * 10) / 10,
      status: r.lost_at ? 'lost' : 'active', lostAt: r.lost_at?.toISOString() ?? null, inFlight: Number(r.in_flight),
    }));
  }
}
