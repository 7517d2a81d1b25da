import { randomUUID } from 'node:crypto';
import { prepared, type Queryable } from '../db.ts';
import { covers, hourUsed, limitInForce, notPaused, pendingReleases, quotaInForce, quotaRoom, tokensNow } from '../flow-sql.ts';
import { appendHistory, recordTransitions } from './history.ts';
import type { Actor, ClaimRequest, ClaimRound, JobState, ThrottleReason, TransitionRecord } from '../types.ts';

/**
 * queued|failed -> leased, for up to `limit` runnable jobs of the given types,
 * in one statement, so flow control is enforced in the same transaction as
 * the claim:
 *
 * - The tenants with claimable work of each type are found by skipping
 *   through the claim index (one probe per tenant, never a scan of a queue).
 * - Dispatch pauses (src/flow/pauses.ts) hold back what they cover.
 * - Quotas covering the work (src/ledger/flow-sql.ts) give the room left:
 *   concurrency (net of slots acks released), tokens, hourly count. They are
 *   locked in key order and spent from in the same statement (see the two
 *   forms below), so two claimers never spend the same room.
 * - Tenants share the claim by weighted round robin: each (type, tenant) gets
 *   its share of `limit`, taken from the head of its own queue (priority,
 *   then run_after, then id), and the heads are interleaved. Which tenant
 *   goes first turns with every claim (a sequence), so even claims of one
 *   job at a time take turns. One tenant's backlog cannot delay another
 *   tenant's job by more than one round.
 * - Quotas shared by several (type, tenant) pairs ('*' rows) cut the merged
 *   list at their room.
 *
 * SKIP LOCKED keeps concurrent claimers off each other's rows, so no job is
 * handed to two workers. Work that a control held back comes back as
 * "throttle" rows (with the reason and when it may next run), not as leases.
 */
/** Bounds of the parents' results a claim carries (see Lease.parents). */
export const PARENT_RESULT_BYTES = 64 * 1024;
export const PARENT_RESULTS_BYTES = 1024 * 1024;

/** Each parent's result of leased job `j`, by step name (job id outside a workflow), bounded in size. */
const PARENT_RESULTS = `
  SELECT jsonb_object_agg(coalesce(r.step_name, r.id::text),
    CASE WHEN r.bytes <= ${PARENT_RESULT_BYTES} AND r.total <= ${PARENT_RESULTS_BYTES} THEN r.result
         ELSE jsonb_build_object('truncated', true, 'jobId', r.id::text, 'bytes', r.bytes) END)
  FROM (
    SELECT p.id, p.step_name, p.result, coalesce(octet_length(p.result::text), 0) AS bytes,
           sum(coalesce(octet_length(p.result::text), 0)) OVER (ORDER BY p.id) AS total
    FROM orch.job_edges e JOIN orch.jobs p ON p.tenant_id = e.tenant_id AND p.id = e.parent_id
    WHERE e.tenant_id = j.tenant_id AND e.child_id = j.id
  ) r`;

/**
 * The first tenant (after `after`, if given) with claimable work of `jobType`, as a scalar subquery.
 * Ordered like jobs_claim_idx, so each probe is one descent of that index (the primary key also
 * sorts by tenant, but walking it would step over every job the tenant ever had).
 */
const tenantWithWork = (jobType: string, after?: string) =>
  `(SELECT j.tenant_id FROM orch.jobs j WHERE j.job_type = ${jobType} AND j.state IN ('queued', 'failed')${after ? ` AND j.tenant_id > ${after}` : ''}
    ORDER BY j.tenant_id, j.priority DESC, j.run_after, j.id LIMIT 1)`;

/** A claim restricted to tenants ($4) considers every (type, tenant) it names. */
const NAMED_PAIRS = 'SELECT t.job_type, u.tenant_id FROM unnest($1::text[]) AS t(job_type) CROSS JOIN unnest($4::text[]) AS u(tenant_id)';

/** The head of queue `o` (job_type, tenant_id) in priority order, up to `limit` rows, locked. */
const queueHead = (limit: string) => `
    SELECT j.ctid AS row_ctid, j.tenant_id, j.id, j.state, j.priority, j.run_after FROM orch.jobs j
    WHERE j.job_type = o.job_type AND j.tenant_id = o.tenant_id AND j.state IN ('queued', 'failed') AND j.run_after <= now()
    ORDER BY j.priority DESC, j.run_after, j.id
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED`;

/**
 * The rows of `picked` (row_ctid, tenant_id, id, state, n_all: the order the
 * leases come back in) become leases, with their history, counts and events.
 * Shared by both claim statements.
 */
const TAKE_LEASES = `upd AS (
  UPDATE orch.jobs j SET
    state = 'leased', attempt = j.attempt + 1, lease_id = gen_random_uuid(),
    lease_ms = coalesce($5::integer, jt.lease_ms), lease_until = now() + make_interval(secs => coalesce($5::integer, jt.lease_ms) / 1000.0),
    worker_id = $3, heartbeat_at = now(), started_at = now(),
    deadline_at = now() + make_interval(secs => jt.timeout_ms / 1000.0),
    acked = NULL, progress = NULL, progress_message = NULL, updated_at = now(), ${appendHistory('$7')}
  FROM picked p, orch.job_types jt
  -- by row address (a TID scan whatever the estimates): this statement holds the rows locked, so they cannot move
  WHERE j.ctid = ANY (ARRAY(SELECT row_ctid FROM picked)) AND j.ctid = p.row_ctid AND jt.name = j.job_type
  RETURNING j.id, j.tenant_id, j.job_type, j.priority, j.payload, j.attempt, j.max_attempts, j.lease_id,
    -- times as ISO 8601 text: formatting here is cheaper than parsing to Date and back in Node
    to_json(j.lease_until) #>> '{}' AS lease_until, j.idempotency_key, j.correlation_id,
    to_json(j.deadline_at) #>> '{}' AS deadline_at, j.run_after, p.state AS from_state,
    extract(epoch FROM now() - greatest(j.run_after, j.created_at)) * 1000 AS latency_ms,
    coalesce($5::integer, jt.lease_ms) AS lease_ms, p.n_all,
    -- parents' results, for the few jobs that waited for parents (a CASE: no probe for any other)
    CASE WHEN j.has_parents THEN (${PARENT_RESULTS}) END AS parents
), entries AS (
  SELECT id, tenant_id, job_type, from_state, 'leased'::orch.job_state AS to_state, attempt, lease_id, NULL::jsonb AS error FROM upd
), ${recordTransitions('entries', '$7::uuid', '$6', 'NULL', "'claimed'")}`;

const LEASE_ROWS = `SELECT 'lease' AS kind, id, tenant_id, job_type, priority, payload, attempt, max_attempts, lease_id, lease_until,
  idempotency_key, correlation_id, deadline_at, from_state, latency_ms, lease_ms, NULL AS reason, NULL::float8 AS retry_ms, n_all, parents
FROM upd`;

/** A row that only says something of the claim as a whole (`kind`), shaped like a lease row. */
const marker = (kind: string) => `SELECT '${kind}', ${Array(19).fill('NULL').join(', ')}`;

const claimSql = (optimistic: boolean) => `
WITH RECURSIVE heads AS (
  SELECT t.job_type, ${tenantWithWork('t.job_type')} AS tenant_id FROM unnest($1::text[]) AS t(job_type) WHERE $4::text[] IS NULL
  UNION ALL
  SELECT h.job_type, ${tenantWithWork('h.job_type', 'h.tenant_id')} FROM heads h WHERE h.tenant_id IS NOT NULL
), pairs AS (
  SELECT job_type, tenant_id FROM heads WHERE tenant_id IS NOT NULL
  UNION ALL
  ${NAMED_PAIRS}
), quota_rows AS (
  SELECT q.* FROM orch.quotas q
  WHERE q.job_type IN (SELECT job_type FROM pairs UNION ALL SELECT '*')
    AND q.tenant_id IN (SELECT tenant_id FROM pairs UNION ALL SELECT '*')
  ${optimistic ? '' : 'ORDER BY q.tenant_id, q.job_type FOR UPDATE OF q'}
), ${optimistic ? `in_force AS (
  -- read without locks: releases not yet folded count as still active, which can only understate the room
  SELECT ${quotaInForce('l', `l.active - ${pendingReleases('l')}`)} FROM quota_rows l` : `released AS (
  -- slots acks gave back; DELETE ... RETURNING takes each row once even if another claim of the
  -- quota saw it in its snapshot (that claim waited for our lock and finds the row gone)
  DELETE FROM orch.quota_releases r USING quota_rows l WHERE r.tenant_id = l.tenant_id AND r.job_type = l.job_type
  RETURNING r.tenant_id, r.job_type, r.n
), in_force AS (
  SELECT ${quotaInForce('l', 'l.active - coalesce(rs.n, 0)')}
  FROM quota_rows l LEFT JOIN (SELECT tenant_id, job_type, sum(n) AS n FROM released GROUP BY tenant_id, job_type) rs
    USING (tenant_id, job_type)`}
), room AS (
  ${quotaRoom('in_force')}
), pair_room AS (
  SELECT p.job_type, p.tenant_id, ${notPaused('p.tenant_id', 'p.job_type')} AS dispatchable,
    r.room, coalesce(r.weight, 1) AS weight, r.reason, r.next_eligible_at
  FROM pairs p LEFT JOIN LATERAL (
    SELECT min(x.room) AS room,
      (array_agg(x.weight ORDER BY x.job_type = '*') FILTER (WHERE x.tenant_id <> '*'))[1] AS weight,
      (array_agg(x.reason ORDER BY x.reason) FILTER (WHERE x.room = 0))[1] AS reason,
      max(x.next_eligible_at) AS next_eligible_at
    FROM room x WHERE ${covers('x', 'p.tenant_id', 'p.job_type')}
  ) r ON true
), open_pairs AS (
  SELECT o.*, (o.pair_no + (SELECT nextval('orch.claim_turn'))) % o.pairs AS turn,
    least(ceil($2::numeric * o.weight / o.total_weight), o.room) AS share FROM (
    SELECT pr.*, sum(pr.weight) OVER () AS total_weight, row_number() OVER (ORDER BY pr.job_type, pr.tenant_id) AS pair_no,
           count(*) OVER () AS pairs
    FROM pair_room pr WHERE pr.dispatchable AND coalesce(pr.room, 1) > 0) o
), candidates AS (
  SELECT c.*, o.job_type, o.weight, o.turn,
    row_number() OVER (PARTITION BY o.job_type, o.tenant_id ORDER BY c.priority DESC, c.run_after, c.id) AS k
  FROM open_pairs o
  CROSS JOIN LATERAL (${queueHead('o.share')}
  ) c
), ranked AS (
  SELECT c.row_ctid, c.tenant_id, c.id, c.state,
    row_number() OVER (ORDER BY (c.k - 1)::numeric / c.weight, c.turn, c.k) AS n_all,
    row_number() OVER (PARTITION BY c.tenant_id ORDER BY (c.k - 1)::numeric / c.weight, c.turn, c.k) AS n_tenant,
    row_number() OVER (PARTITION BY c.job_type ORDER BY (c.k - 1)::numeric / c.weight, c.turn, c.k) AS n_type,
    (SELECT x.room FROM room x WHERE x.tenant_id = '*' AND x.job_type = '*') AS room_all,
    (SELECT x.room FROM room x WHERE x.tenant_id = c.tenant_id AND x.job_type = '*') AS room_tenant,
    (SELECT x.room FROM room x WHERE x.tenant_id = '*' AND x.job_type = c.job_type) AS room_type
  FROM candidates c
), picked AS (
  SELECT row_ctid, tenant_id, id, state, n_all FROM ranked
  WHERE n_all <= $2 AND n_all <= coalesce(room_all, n_all) AND n_tenant <= coalesce(room_tenant, n_tenant)
    AND n_type <= coalesce(room_type, n_type)
), ${TAKE_LEASES}, spent AS (
  SELECT x.tenant_id, x.job_type, count(*)::integer AS n FROM upd u JOIN room x ON ${covers('x', 'u.tenant_id', 'u.job_type')}
  GROUP BY x.tenant_id, x.job_type
), throttled AS (
  -- pairs a control held back this round that had work runnable now
  SELECT pr.job_type, pr.tenant_id, CASE WHEN NOT pr.dispatchable THEN 'paused' ELSE pr.reason END AS reason, pr.next_eligible_at
  FROM pair_room pr
  WHERE (NOT pr.dispatchable OR pr.room = 0) AND EXISTS (
    SELECT 1 FROM orch.jobs j WHERE j.job_type = pr.job_type AND j.tenant_id = pr.tenant_id
      AND j.state IN ('queued', 'failed') AND j.run_after <= now())
), drained AS (
  -- every open queue ran out before its share, no shared cap cut the list and nothing runnable was held
  -- back: this claim left no runnable job behind (short of rows another claim holds), so the next one
  -- can wait for a notification instead of asking at once (src/dispatch/dispatcher.ts)
  SELECT true AS drained FROM open_pairs o
    LEFT JOIN (SELECT job_type, tenant_id, count(*) AS n FROM candidates GROUP BY job_type, tenant_id) c USING (job_type, tenant_id)
  HAVING bool_and(coalesce(c.n, 0) < o.share) IS NOT FALSE
    AND (SELECT count(*) FROM candidates) = (SELECT count(*) FROM picked) AND NOT EXISTS (SELECT 1 FROM throttled)
), held AS (
  SELECT x.tenant_id, x.job_type, count(*)::integer AS n FROM throttled t JOIN room x ON ${covers('x', 't.tenant_id', 't.job_type')} AND x.room = 0
  GROUP BY x.tenant_id, x.job_type
), ${optimistic ? `relocked AS (
  -- the quotas are locked only now, after the jobs were taken (the initplan on spent runs first),
  -- and in key order like every other locker of quota rows, so claims cannot deadlock
  SELECT q.tenant_id, q.job_type FROM orch.quotas q JOIN room r USING (tenant_id, job_type)
  WHERE (SELECT count(*) FROM spent) >= 0
  ORDER BY q.tenant_id, q.job_type FOR UPDATE OF q
), folded AS (
  -- slots acks gave back; under the quota's lock, so one claim at a time takes them
  DELETE FROM orch.quota_releases r USING relocked x WHERE r.tenant_id = x.tenant_id AND r.job_type = x.job_type
  RETURNING r.tenant_id, r.job_type, r.n
), released AS (
  SELECT tenant_id, job_type, sum(n)::integer AS n FROM folded GROUP BY tenant_id, job_type
), quota_use AS (
  -- computed from the row as it is now (an UPDATE re-checks the latest version), and only where the
  -- spending still fits; a quota that another claim filled meanwhile is left alone and caught below.
  -- The WHERE is first tested on the row as this statement's snapshot saw it, so a row changed since
  -- can also fail it falsely: that costs a rerun in the locking form, never an overspend. The locking
  -- form cannot share this UPDATE for that reason: its snapshot predates the row it locked.
  UPDATE orch.quotas q SET
    active = q.active - coalesce(rl.n, 0) + coalesce(s.n, 0),
    tokens = CASE WHEN s.n IS NULL OR q.rate_per_second IS NULL THEN q.tokens ELSE ${tokensNow('q')} - s.n END,
    tokens_at = CASE WHEN s.n IS NULL OR q.rate_per_second IS NULL THEN q.tokens_at ELSE now() END,
    hour_start = CASE WHEN s.n IS NOT NULL AND q.hour_start + interval '1 hour' <= now() THEN now() ELSE q.hour_start END,
    hour_count = CASE WHEN s.n IS NULL THEN q.hour_count ELSE ${hourUsed('q')} + s.n END,
    throttled_count = q.throttled_count + coalesce(h.n, 0)
  FROM relocked r LEFT JOIN spent s USING (tenant_id, job_type) LEFT JOIN held h USING (tenant_id, job_type)
    LEFT JOIN released rl USING (tenant_id, job_type)
  WHERE q.tenant_id = r.tenant_id AND q.job_type = r.job_type AND (s.n IS NOT NULL OR h.n IS NOT NULL OR rl.n IS NOT NULL)
    AND (s.n IS NULL OR ((${limitInForce('q', 'max_active')} IS NULL OR q.active - coalesce(rl.n, 0) + s.n <= ${limitInForce('q', 'max_active')})
      AND (q.rate_per_second IS NULL OR ${tokensNow('q')} - s.n >= 0)
      AND (q.max_per_hour IS NULL OR ${hourUsed('q')} + s.n <= q.max_per_hour)))
  RETURNING (s.n IS NOT NULL) AS spent
), conflict AS (
  -- some quota had no room left for what this claim took: undo the whole statement (40001)
  SELECT orch.quota_conflict() WHERE (SELECT count(*) FROM spent) > (SELECT count(*) FROM quota_use WHERE spent)
)` : `quota_use AS (
  UPDATE orch.quotas q SET
    active = r.active + coalesce(s.n, 0),
    tokens = CASE WHEN s.n IS NULL OR r.tokens_now IS NULL THEN q.tokens ELSE r.tokens_now - s.n END,
    tokens_at = CASE WHEN s.n IS NULL OR r.tokens_now IS NULL THEN q.tokens_at ELSE now() END,
    hour_start = CASE WHEN s.n IS NOT NULL AND q.hour_start + interval '1 hour' <= now() THEN now() ELSE q.hour_start END,
    hour_count = CASE WHEN s.n IS NULL THEN q.hour_count ELSE r.hour_used + s.n END,
    throttled_count = q.throttled_count + coalesce(h.n, 0)
  FROM room r LEFT JOIN spent s USING (tenant_id, job_type) LEFT JOIN held h USING (tenant_id, job_type)
    LEFT JOIN (SELECT tenant_id, job_type, sum(n) AS n FROM released GROUP BY tenant_id, job_type) rl USING (tenant_id, job_type)
  WHERE q.tenant_id = r.tenant_id AND q.job_type = r.job_type AND (s.n IS NOT NULL OR h.n IS NOT NULL OR rl.n IS NOT NULL)
)`}
${LEASE_ROWS}${optimistic ? ' WHERE (SELECT count(*) FROM conflict) = 0' : ''}
UNION ALL
SELECT 'throttle', NULL, tenant_id, job_type, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, reason,
       extract(epoch FROM next_eligible_at - now()) * 1000, NULL, NULL
FROM throttled
UNION ALL
${marker('drained')} FROM drained
ORDER BY kind, n_all`;

/**
 * The common claim in a statement of a third the fixed cost (an idle worker taking one job:
 * about 0.6 against 1.0 ms): when the types and tenants asked for have claimable work in one
 * (type, tenant) queue only, and no quota or pause covers it, there is nothing to share out or
 * hold back, and the head of that queue is what the fair claim would take. Otherwise it takes
 * nothing and answers 'contended', and the fair claim runs. Work of no queue at all is drained.
 */
const singleQueueClaim = prepared('claim_single', `
WITH pairs AS (
  SELECT job_type, tenant_id FROM (
    SELECT t.job_type, ${tenantWithWork('t.job_type')} AS tenant_id FROM unnest($1::text[]) AS t(job_type) WHERE $4::text[] IS NULL
  ) first WHERE tenant_id IS NOT NULL
  UNION ALL
  ${NAMED_PAIRS}
), pair AS (
  SELECT p.job_type, p.tenant_id FROM pairs p
  WHERE (SELECT count(*) FROM pairs) = 1
    -- the first tenant with work of the type found above; a second one means sharing
    AND ($4::text[] IS NOT NULL OR ${tenantWithWork('p.job_type', 'p.tenant_id')} IS NULL)
    AND NOT EXISTS (SELECT 1 FROM orch.quotas q WHERE ${covers('q', 'p.tenant_id', 'p.job_type')})
    AND ${notPaused('p.tenant_id', 'p.job_type')}
), picked AS (
  SELECT c.row_ctid, c.tenant_id, c.id, c.state, row_number() OVER (ORDER BY c.priority DESC, c.run_after, c.id) AS n_all
  FROM pair o CROSS JOIN LATERAL (${queueHead('$2')}
  ) c
), ${TAKE_LEASES}
${LEASE_ROWS}
UNION ALL
${marker('drained')} WHERE (EXISTS (SELECT 1 FROM pair) AND (SELECT count(*) FROM picked) < $2) OR NOT EXISTS (SELECT 1 FROM pairs)
UNION ALL
${marker('contended')} WHERE EXISTS (SELECT 1 FROM pairs) AND NOT EXISTS (SELECT 1 FROM pair)
ORDER BY kind, n_all`);

/**
 * Two forms of the statement. The optimistic one reads the quotas without
 * locking them and spends from them at the very end, only where the spending
 * still fits the row as it is then; if a concurrent claim took the room in
 * between, the statement fails as a whole (40001) and the claim runs again
 * in the pessimistic form, which locks the quotas first. Claims of work under
 * a quota that is not close to its limits therefore do not queue behind each
 * other for the whole statement, only for its last step.
 */
const optimisticClaim = prepared('claim', claimSql(true));
const lockingClaim = prepared('claim_locking', claimSql(false));
const SERIALIZATION_FAILURE = '40001';

type ClaimRow = LeaseRow | ThrottleRow | { kind: 'drained' | 'contended' };

interface LeaseRow {
  kind: 'lease';
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
  parents: Record<string, unknown> | null;
}

interface ThrottleRow { kind: 'throttle'; tenant_id: string; job_type: string; reason: ThrottleReason; retry_ms: number | null }

/** The tenants whose queues a claim looks at (null: all): the claimer's scope, narrowed by onlyTenants. */
function tenantsLookedAt({ tenantIds, onlyTenants }: ClaimRequest): string[] | null {
  if (!onlyTenants) return tenantIds ?? null;
  return tenantIds ? onlyTenants.filter((t) => tenantIds.includes(t)) : onlyTenants;
}

export async function claim(db: Queryable, req: ClaimRequest, actor: Actor): Promise<ClaimRound & { records: TransitionRecord[] }> {
  if (req.limit <= 0 || req.jobTypes.length === 0) return { leases: [], throttled: [], records: [], drained: false };
  const params = [req.jobTypes, req.limit, req.workerId, tenantsLookedAt(req), req.leaseMs ?? null, actor, randomUUID()];
  let { rows } = await singleQueueClaim<ClaimRow>(db, params);
  if (rows.some((r) => r.kind === 'contended')) {
    ({ rows } = await optimisticClaim<ClaimRow>(db, params).catch((err: unknown) => {
      if ((err as { code?: string }).code !== SERIALIZATION_FAILURE) throw err;
      return lockingClaim<ClaimRow>(db, params);
    }));
  }
  const leaseRows = rows.filter((r): r is LeaseRow => r.kind === 'lease');
  const leases = leaseRows.map((r) => ({
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
    ...(r.parents ? { parents: r.parents } : {}),
  }));
  const records = leaseRows.map((r) => ({
    jobId: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: r.from_state, to: 'leased' as const, cause: 'claimed' as const,
    attempt: r.attempt, dispatchLatencyMs: Math.max(0, Number(r.latency_ms)),
  }));
  const throttled = rows.filter((r): r is ThrottleRow => r.kind === 'throttle').map((r) => ({
    tenantId: r.tenant_id, jobType: r.job_type, reason: r.reason,
    retryInMs: r.retry_ms === null ? null : Math.max(0, Math.ceil(Number(r.retry_ms))),
  }));
  return { leases, throttled, records, drained: rows.some((r) => r.kind === 'drained') };
}
