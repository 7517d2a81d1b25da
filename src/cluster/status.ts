import type { Queryable } from '../ledger/db.ts';

export interface ReplicaStatus {
  id: string;
  host: string;
  version: string;
  notify: 'listen' | 'poll';
  services: string[];
  startedAt: string;
  lastSeenAt: string;
  /** up (reported within three renew intervals), stopped (said so), or lost (silent). */
  state: 'up' | 'stopped' | 'lost';
  leader: boolean;
}

export interface ClusterStatus {
  leader: { replicaId: string; term: number; since: string; expiresAt: string; live: boolean } | null;
  replicas: ReplicaStatus[];
}

/** Replicas stopped or silent longer than this drop out of the status. */
const FORGET_AFTER = '1 hour';

/** Who leads, since when, and every replica seen in the last hour with what it runs. */
export async function clusterStatus(db: Queryable, renewMs: number): Promise<ClusterStatus> {
  const { rows: leaders } = await db.query<{ replica_id: string; term: string; elected_at: Date; expires_at: Date; live: boolean }>(
    'SELECT replica_id, term::text, elected_at, expires_at, expires_at > now() AS live FROM orch.cluster_leader');
  const l = leaders[0];
  const { rows } = await db.query<{
    id: string; host: string; version: string; notify: 'listen' | 'poll'; services: string[]; started_at: Date; last_seen_at: Date;
    stopped: boolean; silent: boolean;
  }>(
    `SELECT id, host, version, notify, services, started_at, last_seen_at, stopped_at IS NOT NULL AS stopped,
       last_seen_at < now() - make_interval(secs => $1::float8 * 3 / 1000) AS silent
     FROM orch.replicas WHERE greatest(last_seen_at, stopped_at) > now() - interval '${FORGET_AFTER}'
     ORDER BY started_at, id`, [renewMs]);
  const leaderId = l?.live ? l.replica_id : null;
  return {
    leader: l ? { replicaId: l.replica_id, term: Number(l.term), since: l.elected_at.toISOString(), expiresAt: l.expires_at.toISOString(), live: l.live } : null,
    replicas: rows.map((r) => ({
      id: r.id, host: r.host, version: r.version, notify: r.notify,
      services: r.stopped || r.silent ? [] : r.services,
      startedAt: r.started_at.toISOString(), lastSeenAt: r.last_seen_at.toISOString(),
      state: r.stopped ? 'stopped' : r.silent ? 'lost' : 'up',
      leader: r.id === leaderId && !r.stopped && !r.silent,
    })),
  };
}
