import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { notPaused } from '../../flow/pauses.ts';
import { appendHistory, historyInsert } from './history.ts';
import type { Actor, ClaimRequest, JobState, Lease, TransitionRecord } from '../types.ts';

/**
 * queued|failed -> leased, for up to `limit` runnable jobs of the given types,
 * in one statement. SKIP LOCKED keeps concurrent claimers off each other's
 * rows, so no job is handed to two workers. Each type is read from its own
 * ordered index range (priority, then run_after, then id) and the best of
 * those win, so asking for many types never sorts the whole queue.
 * Work covered by a dispatch pause (src/flow/pauses.ts) is skipped, not touched.
 */
const claimStatement = prepared('claim', `
WITH picked AS (
  -- types paused for every tenant are dropped up front, so their queues are not even scanned
  SELECT c.tenant_id, c.id, c.state
  FROM (SELECT job_type FROM unnest($1::text[]) AS u(job_type) WHERE ${notPaused("'*'", 'u.job_type')}) AS t
  CROSS JOIN LATERAL (
    SELECT j.tenant_id, j.id, j.state, j.priority, j.run_after FROM orch.jobs j
    WHERE j.job_type = t.job_type AND j.state IN ('queued', 'failed') AND j.run_after <= now()
      AND ($4::text[] IS NULL OR j.tenant_id = ANY($4::text[]))
      AND ${notPaused('j.tenant_id', 'j.job_type')}
    ORDER BY j.priority DESC, j.run_after, j.id
    LIMIT $2 FOR UPDATE SKIP LOCKED
  ) c
  ORDER BY c.priority DESC, c.run_after, c.id
  LIMIT $2
), upd AS (
  UPDATE orch.jobs j SET
    state = 'leased', attempt = j.attempt + 1, lease_id = gen_random_uuid(),
    lease_until = now() + make_interval(secs => coalesce($5::integer, jt.lease_ms) / 1000.0),
    worker_id = $3, heartbeat_at = now(), started_at = now(),
    deadline_at = now() + make_interval(secs => jt.timeout_ms / 1000.0),
    acked = NULL, progress = NULL, progress_message = NULL, updated_at = now(), ${appendHistory('$7')}
  FROM picked p, orch.job_types jt
  WHERE j.tenant_id = p.tenant_id AND j.id = p.id AND jt.name = j.job_type
  RETURNING j.id, j.tenant_id, j.job_type, j.priority, j.payload, j.attempt, j.max_attempts, j.lease_id,
    -- times as ISO 8601 text: formatting here is cheaper than parsing to Date and back in Node
    to_json(j.lease_until) #>> '{}' AS lease_until, j.idempotency_key, j.correlation_id,
    to_json(j.deadline_at) #>> '{}' AS deadline_at, j.run_after, p.state AS from_state,
    extract(epoch FROM now() - greatest(j.run_after, j.created_at)) * 1000 AS latency_ms,
    coalesce($5::integer, jt.lease_ms) AS lease_ms
), entries AS (
  SELECT id, tenant_id, from_state, 'leased'::orch.job_state AS to_state, attempt, lease_id, NULL::jsonb AS error FROM upd
), hist AS (
  ${historyInsert('entries', '$7::uuid', '$6', 'NULL')}
)
SELECT id, tenant_id, job_type, priority, payload, attempt, max_attempts, lease_id, lease_until, idempotency_key,
       correlation_id, deadline_at, from_state, latency_ms, lease_ms
FROM upd ORDER BY priority DESC, run_after, id`);

interface ClaimRow {
  id: string;
  tenant_id: string;
  job_type: string;
  priority: number;
  payload: unknown;
  attempt: number;
  max_attempts: number;
  lease_id: string;
  lease_until: string;
  idempotency_key: string | null;
  correlation_id: string | null;
  deadline_at: string | null;
  from_state: JobState;
  latency_ms: number;
  lease_ms: number;
}

export async function claim(db: Queryable, req: ClaimRequest, actor: Actor): Promise<{ leases: Lease[]; records: TransitionRecord[] }> {
  if (req.limit <= 0 || req.jobTypes.length === 0) return { leases: [], records: [] };
  const { rows } = await claimStatement<ClaimRow>(db, [
    req.jobTypes, req.limit, req.workerId, req.tenantIds ?? null, req.leaseMs ?? null, actor, randomUUID(),
  ]);
  const leases = rows.map((r) => ({
    jobId: r.id,
    leaseId: r.lease_id,
    leaseUntil: r.lease_until,
    leaseMs: r.lease_ms,
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    idempotencyKey: r.idempotency_key ?? `orch-job-${r.id}`,
    tenantId: r.tenant_id,
    jobType: r.job_type,
    priority: r.priority,
    payload: r.payload,
    correlationId: r.correlation_id,
    deadlineAt: r.deadline_at,
  }));
  const records = rows.map((r) => ({
    jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: r.from_state, to: 'leased' as const,
    attempt: r.attempt, dispatchLatencyMs: Math.max(0, Number(r.latency_ms)),
  }));
  return { leases, records };
}
