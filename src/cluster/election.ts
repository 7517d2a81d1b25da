import type { Queryable } from '../ledger/db.ts';

/**
 * The leader lease in orch.cluster_leader (migrations/0013_cluster.sql), one
 * statement per step. Times are the database's clock, so replicas' clocks
 * never disagree about who leads.
 */

export interface Term {
  term: number;
  /** True when this call started the term (a new leader), false when it renewed it. */
  fresh: boolean;
}

/**
 * Renews this replica's lease, or takes the lease when it expired (or was
 * never taken), as a new term recorded in orch.leader_terms. Null when
 * another replica holds an unexpired lease.
 */
export async function electOrRenew(db: Queryable, replicaId: string, ttlMs: number): Promise<Term | null> {
  const { rows } = await db.query<{ term: string; fresh: boolean }>(`
    WITH current AS (
      SELECT term, replica_id, expires_at > now() AS live FROM orch.cluster_leader FOR UPDATE
    ), renewed AS (
      UPDATE orch.cluster_leader l SET renewed_at = now(), expires_at = now() + make_interval(secs => $2::float8 / 1000)
      FROM current c WHERE c.live AND c.replica_id = $1
      RETURNING l.term
    ), taken AS (
      INSERT INTO orch.cluster_leader AS l (term, replica_id, elected_at, renewed_at, expires_at)
      SELECT coalesce((SELECT max(term) FROM orch.leader_terms), 0) + 1, $1, now(), now(), now() + make_interval(secs => $2::float8 / 1000)
      WHERE NOT EXISTS (SELECT 1 FROM current WHERE live)
      ON CONFLICT (singleton) DO UPDATE SET term = EXCLUDED.term, replica_id = EXCLUDED.replica_id,
        elected_at = EXCLUDED.elected_at, renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at
      -- re-checked on the row as committed: of two replicas that both found no leader, one takes it
      WHERE l.expires_at <= now()
      RETURNING l.term
    ), recorded AS (
      INSERT INTO orch.leader_terms (term, replica_id) SELECT term, $1 FROM taken
    )
    SELECT term::text, false AS fresh FROM renewed UNION ALL SELECT term::text, true FROM taken`, [replicaId, ttlMs]);
  return rows[0] ? { term: Number(rows[0].term), fresh: rows[0].fresh } : null;
}

/** Ends this replica's term at once (a clean shutdown), so another replica need not wait for it to expire. */
export async function resign(db: Queryable, replicaId: string, term: number): Promise<void> {
  await db.query('UPDATE orch.cluster_leader SET expires_at = now() WHERE replica_id = $1 AND term = $2', [replicaId, term]);
}

export interface ReplicaReport {
  id: string;
  host: string;
  version: string;
  notify: 'listen' | 'poll';
  services: string[];
}

/** This replica is alive, with what it runs now. */
export async function reportReplica(db: Queryable, r: ReplicaReport): Promise<void> {
  await db.query(
    `INSERT INTO orch.replicas (id, host, version, notify, services) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, version = EXCLUDED.version, notify = EXCLUDED.notify,
       services = EXCLUDED.services, last_seen_at = now(), stopped_at = NULL`,
    [r.id, r.host, r.version, r.notify, r.services]);
}

/** This replica stopped cleanly. */
export async function replicaStopped(db: Queryable, id: string): Promise<void> {
  await db.query("UPDATE orch.replicas SET stopped_at = now(), services = '{}' WHERE id = $1", [id]);
}
