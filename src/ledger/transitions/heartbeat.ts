import { prepared, type Queryable } from '../db.ts';
import { checkText } from '../validate.ts';
import { WORKER_REFRESH_MS } from '../workers.ts';
import type { HeartbeatInput, HeartbeatOutcome } from '../types.ts';
import { LEASE_CHECK_COLUMNS, refusalReason, type LeaseCheckRow } from './lease-check.ts';

/**
 * Renews leases by the length their claim was granted and records progress;
 * no state changes, so no history row. A lease that lapsed but that nobody
 * reaped or claimed again is still the holder's and is renewed (a worker cut
 * off by a server or database outage keeps its job). A lease that was
 * reaped, taken by another claim, canceled or is past its run-time limit is
 * refused, which is how a worker learns to stop. The holder's worker record
 * is refreshed. Outcomes come back in input order.
 */
const heartbeatStatement = prepared('heartbeat', `
WITH input AS (
  SELECT * FROM ROWS FROM (json_to_recordset($1::json) AS (tenant_id text, job_id bigint, lease_id uuid, progress real, message text))
    WITH ORDINALITY AS i(tenant_id, job_id, lease_id, progress, message, ord)
), upd AS (
  UPDATE orch.jobs j SET
    lease_until = now() + make_interval(secs => coalesce(j.lease_ms, jt.lease_ms) / 1000.0),
    heartbeat_at = now(), progress = coalesce(i.progress, j.progress),
    progress_message = coalesce(i.message, j.progress_message), updated_at = now()
  FROM input i, orch.job_types jt
  WHERE j.tenant_id = i.tenant_id AND j.id = i.job_id AND j.lease_id = i.lease_id AND j.state = 'leased'
    AND (j.deadline_at IS NULL OR j.deadline_at > now()) AND jt.name = j.job_type
  RETURNING j.id, j.tenant_id, j.job_type, j.attempt, j.lease_id, j.correlation_id, j.lease_until, j.worker_id, j.progress, j.progress_message,
    (i.progress IS NOT NULL OR i.message IS NOT NULL) AS reported
), progress_events AS (
  -- job.progress events (src/events/envelope.ts) for heartbeats that reported progress
  INSERT INTO orch.outbox (tenant_id, events)
  SELECT tenant_id, jsonb_agg(jsonb_build_object('type', 'job.progress', 'at', now(), 'actor', 'worker:' || worker_id, 'jobId', id::text,
    'jobType', job_type, 'attempt', attempt, 'leaseId', lease_id, 'status', 'leased', 'correlationId', correlation_id,
    'data', jsonb_build_object('progress', progress, 'message', progress_message)) ORDER BY id)
  FROM upd WHERE reported GROUP BY tenant_id
), seen AS (
  -- the worker registry (src/ledger/workers.ts): a worker that heartbeats is alive. The holder is the
  -- lease tenant's worker of that id, or else the one claiming for every tenant ('*'): never both, so
  -- one tenant's heartbeats cannot revive (or keep alive) a record that is not theirs
  UPDATE orch.workers w SET last_seen = now(), lost_at = NULL, stopped_at = NULL
  FROM (SELECT DISTINCT tenant_id, worker_id FROM upd) u
  WHERE w.worker_id = u.worker_id
    AND w.tenant_id = CASE WHEN EXISTS (SELECT 1 FROM orch.workers o WHERE o.tenant_id = u.tenant_id AND o.worker_id = u.worker_id)
                           THEN u.tenant_id ELSE '*' END
    AND w.last_seen < now() - interval '${WORKER_REFRESH_MS} milliseconds'
)
SELECT ${LEASE_CHECK_COLUMNS}, u.lease_until AS new_lease_until
FROM input i LEFT JOIN upd u ON u.id = i.job_id LEFT JOIN orch.jobs j ON j.tenant_id = i.tenant_id AND j.id = i.job_id AND u.id IS NULL
ORDER BY i.ord`);

export async function heartbeat(db: Queryable, inputs: HeartbeatInput[]): Promise<HeartbeatOutcome[]> {
  if (inputs.length === 0) return [];
  inputs.forEach((h, i) => h.message !== undefined && checkText(h.message, inputs.length > 1 ? `leases[${i}].message` : 'message'));
  const spec = inputs.map((h) => ({ tenant_id: h.tenantId, job_id: h.jobId, lease_id: h.leaseId, progress: h.progress ?? null, message: h.message ?? null }));
  const { rows } = await heartbeatStatement<LeaseCheckRow & { new_lease_until: Date | null }>(db, [JSON.stringify(spec)]);
  return rows.map((r) => {
    if (r.applied) return { jobId: r.job_id, status: 'ok', leaseUntil: r.new_lease_until!.toISOString() };
    return { jobId: r.job_id, status: 'refused', reason: refusalReason(r, 'renew') ?? 'already_acked', state: r.state };
  });
}
