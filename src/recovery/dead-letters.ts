import type pg from 'pg';
import { DeltaFold } from '../ledger/delta-fold.ts';
import { CURRENT_COUNTS } from '../ledger/queue-counts.ts';
import { JOB_COLUMNS, toJob, type JobRow } from '../ledger/rows.ts';
import type { Job } from '../ledger/types.ts';

/** Which dead letters an operation is about. Every field narrows; an empty filter means the tenant's whole DLQ. */
export interface DlqFilter {
  jobType?: string;
  errorClass?: string;
  /** Dead-lettered at or after this time. */
  since?: string;
  /** Dead-lettered before this time. */
  until?: string;
}

export interface DlqCluster {
  jobType: string;
  errorClass: string;
  /** The error message with ids, numbers and hex replaced by placeholders (orch.error_fingerprint). */
  message: string;
  /** Entries of this cluster in the DLQ now. */
  count: number;
  firstSeen: string;
  lastSeen: string;
}

export interface DlqTypeStats {
  jobType: string;
  depth: number;
  oldestAt: string | null;
}

export interface DlqStats {
  tenantId: string;
  depth: number;
  oldestAt: string | null;
  byJobType: DlqTypeStats[];
  /** Largest first. */
  clusters: DlqCluster[];
}

export interface DlqEntry {
  job: Job;
  /** The job created by replaying this entry, if it was replayed. */
  replayJobId: string | null;
}

/** SQL conditions on orch.jobs (alias-free) for a filter, appending their values to `params`. */
export function filterConditions(f: DlqFilter, params: unknown[]): string[] {
  const where: string[] = [];
  if (f.jobType !== undefined) where.push(`job_type = $${params.push(f.jobType)}`);
  if (f.errorClass !== undefined) where.push(`last_error->>'class' = $${params.push(f.errorClass)}`);
  if (f.since !== undefined) where.push(`finished_at >= $${params.push(f.since)}::timestamptz`);
  if (f.until !== undefined) where.push(`finished_at < $${params.push(f.until)}::timestamptz`);
  return where;
}

/**
 * The dead-letter queue: jobs in state dead_lettered, read through partial
 * indexes that hold only them. Depth comes from the queue counts and error
 * clusters from orch.dlq_clusters (kept by every transition through
 * recordTransitions), so stats cost the same at a million entries as at ten.
 */
export class DeadLetters {
  /**
   * Folds orch.dlq_cluster_deltas into orch.dlq_clusters (run by the DeltaRollup service). A cluster
   * whose count falls to zero keeps its row (and its first/last seen); reads skip it.
   */
  readonly clusterFold: DeltaFold;

  constructor(private readonly pool: pg.Pool) {
    this.clusterFold = new DeltaFold(pool, 'orch.dlq_cluster_deltas', `
      WITH taken AS (DELETE FROM orch.dlq_cluster_deltas RETURNING tenant_id, job_type, error_class, fingerprint, delta, at),
      folded AS (
        INSERT INTO orch.dlq_clusters AS c (tenant_id, job_type, error_class, fingerprint, n, first_seen, last_seen)
        SELECT tenant_id, job_type, error_class, fingerprint, sum(delta), min(at), max(at) FROM taken
        GROUP BY tenant_id, job_type, error_class, fingerprint
        ON CONFLICT (tenant_id, job_type, error_class, fingerprint) DO UPDATE SET
          n = c.n + EXCLUDED.n, first_seen = least(c.first_seen, EXCLUDED.first_seen), last_seen = greatest(c.last_seen, EXCLUDED.last_seen)
      )
      SELECT count(*) AS n FROM taken`);
  }

  async stats(tenantId: string, clusterLimit = 20): Promise<DlqStats> {
    const [types, clusters] = await Promise.all([
      this.pool.query<{ job_type: string; n: string; oldest: Date | null }>(
        `SELECT c.job_type, c.n,
           (SELECT min(j.finished_at) FROM orch.jobs j WHERE j.tenant_id = $1 AND j.job_type = c.job_type AND j.state = 'dead_lettered') AS oldest
         FROM ${CURRENT_COUNTS} c WHERE c.tenant_id = $1 AND c.state = 'dead_lettered' AND c.n > 0 ORDER BY c.n DESC, c.job_type`, [tenantId]),
      this.pool.query<{ job_type: string; error_class: string; fingerprint: string; n: string; first_seen: Date; last_seen: Date }>(
        `SELECT job_type, error_class, fingerprint, sum(n) AS n, min(first_seen) AS first_seen, max(last_seen) AS last_seen FROM (
           SELECT job_type, error_class, fingerprint, n, first_seen, last_seen FROM orch.dlq_clusters WHERE tenant_id = $1
           UNION ALL
           SELECT job_type, error_class, fingerprint, delta, at, at FROM orch.dlq_cluster_deltas WHERE tenant_id = $1
         ) x GROUP BY job_type, error_class, fingerprint HAVING sum(n) > 0
         ORDER BY n DESC, last_seen DESC LIMIT $2`, [tenantId, clusterLimit]),
    ]);
    const byJobType = types.rows.map((r) => ({ jobType: r.job_type, depth: Number(r.n), oldestAt: r.oldest?.toISOString() ?? null }));
    const oldest = byJobType.map((t) => t.oldestAt).filter((t): t is string => t !== null).sort()[0] ?? null;
    return {
      tenantId,
      depth: byJobType.reduce((n, t) => n + t.depth, 0),
      oldestAt: oldest,
      byJobType,
      clusters: clusters.rows.map((r) => ({
        jobType: r.job_type, errorClass: r.error_class, message: r.fingerprint, count: Number(r.n),
        firstSeen: r.first_seen.toISOString(), lastSeen: r.last_seen.toISOString(),
      })),
    };
  }

  /** Newest first; keyset pages on (finished_at, id), so the millionth entry costs what the first does. */
  async list(tenantId: string, f: DlqFilter & { cursor?: string; limit: number }): Promise<{ entries: DlqEntry[]; nextCursor: string | null }> {
    const params: unknown[] = [tenantId];
    const where = ['tenant_id = $1', `state = 'dead_lettered'`, ...filterConditions(f, params)];
    if (f.cursor !== undefined) {
      where.push(`(finished_at, id) < (SELECT c.finished_at, c.id FROM orch.jobs c WHERE c.tenant_id = $1 AND c.id = $${params.push(f.cursor)})`);
    }
    const { rows } = await this.pool.query<JobRow & { replay_id: string | null }>(
      `SELECT ${JOB_COLUMNS}, (SELECT r.id FROM orch.jobs r WHERE r.tenant_id = j.tenant_id AND r.replay_of = j.id) AS replay_id
       FROM orch.jobs j WHERE ${where.join(' AND ')} ORDER BY finished_at DESC, id DESC LIMIT $${params.push(f.limit)}`, params);
    const entries = rows.map((r) => ({ job: toJob(r), replayJobId: r.replay_id }));
    return { entries, nextCursor: entries.length === f.limit ? entries[entries.length - 1]!.job.id : null };
  }

  /** Ids of the tenant's dead letters matching `f`, ascending, at most `max` (+1, so callers can tell it was cut). */
  async selectIds(tenantId: string, f: DlqFilter & { jobIds?: string[] }, max: number): Promise<string[]> {
    const params: unknown[] = [tenantId];
    const where = ['tenant_id = $1', `state = 'dead_lettered'`, ...filterConditions(f, params)];
    if (f.jobIds !== undefined) where.push(`id = ANY($${params.push(f.jobIds)}::bigint[])`);
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id FROM orch.jobs WHERE ${where.join(' AND ')} ORDER BY id LIMIT $${params.push(max + 1)}`, params);
    return rows.map((r) => r.id);
  }
}
