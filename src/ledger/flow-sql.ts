import { JOBS_CHANNEL } from './channel.ts';

/**
 * The SQL both sides of a quota share: what a quota allows right now (claim
 * and /quotas/summary read the same definition) and the release of slots
 * when leases end. Limits come from the boost while one is in force, so a
 * boost ends at boost_until without anyone writing the row.
 */

/** A limit of quota row `q` in force now: the boost's while it lasts, else the row's own. */
export const limitInForce = (q: string, limit: 'max_active' | 'rate_per_second' | 'burst') => {
  const boosted = { max_active: 'boost_max_active', rate_per_second: 'boost_rate', burst: 'boost_burst' }[limit];
  return `(CASE WHEN ${q}.boost_until > now() THEN coalesce(${q}.${boosted}, ${q}.${limit}) ELSE ${q}.${limit} END)`;
};

/** Claims counted in the current hourly window of quota row `q`. */
export const hourUsed = (q: string) => `(CASE WHEN ${q}.hour_start + interval '1 hour' <= now() THEN 0 ELSE ${q}.hour_count END)`;

/** Tokens in the bucket of quota row `q` now, refilled since tokens_at (NULL without a rate). */
export const tokensNow = (q: string) =>
  `least(${limitInForce(q, 'burst')}, ${q}.tokens + ${limitInForce(q, 'rate_per_second')} * extract(epoch FROM now() - ${q}.tokens_at))`;

/** Columns of the quota row `q` with its limits in force and its use brought up to now(); `active` may net out releases. */
export const quotaInForce = (q: string, active = `${q}.active`) => `
  ${q}.tenant_id, ${q}.job_type, ${q}.weight, ${pauseCovers(`${q}.tenant_id`, `${q}.job_type`)} AS paused, (${active})::integer AS active, ${q}.max_per_hour, ${q}.throttled_count,
  ${q}.tokens, ${q}.tokens_at, ${q}.hour_start,
  (${q}.boost_until > now()) AS boosted,
  ${limitInForce(q, 'max_active')} AS max_active,
  ${limitInForce(q, 'rate_per_second')} AS rate,
  ${limitInForce(q, 'burst')} AS burst,
  ${hourUsed(q)} AS hour_used`;

/**
 * From a CTE `source` of quotaInForce rows: the token level now, the room
 * left (NULL = unlimited; least() skips NULLs) and, when there is none, the
 * reason a claim is held back and when the quota can next allow one.
 */
export const quotaRoom = (source: string) => `
  SELECT f.*, r.tokens_now, r.room,
    CASE WHEN f.paused THEN 'paused'
         WHEN f.max_active - f.active <= 0 THEN 'concurrency'
         WHEN r.tokens_now < 1 THEN 'rate'
         WHEN f.max_per_hour - f.hour_used <= 0 THEN 'quota' END AS reason,
    CASE WHEN f.paused OR coalesce(r.room, 1) > 0 THEN NULL
         ELSE greatest(
           CASE WHEN r.tokens_now < 1 THEN now() + make_interval(secs => (1 - r.tokens_now) / f.rate) END,
           CASE WHEN f.max_per_hour - f.hour_used <= 0 THEN f.hour_start + interval '1 hour' END) END AS next_eligible_at
  FROM ${source} f
  CROSS JOIN LATERAL (
    SELECT least(f.burst, f.tokens + f.rate * extract(epoch FROM now() - f.tokens_at)) AS tokens_now
  ) t
  CROSS JOIN LATERAL (
    -- greatest() and least() skip NULLs: a quota without limits must stay NULL (unlimited), not become 0
    SELECT t.tokens_now, CASE WHEN f.paused THEN 0 WHEN l.room IS NULL THEN NULL ELSE greatest(0, l.room) END AS room
    FROM (SELECT least(f.max_active - f.active, floor(t.tokens_now)::integer, f.max_per_hour - f.hour_used) AS room) l
  ) r`;

/** SQL: quota row `q` covers work of tenant `tenant` and type `jobType`. */
export const covers = (q: string, tenant: string, jobType: string) =>
  `${q}.tenant_id IN (${tenant}, '*') AND ${q}.job_type IN (${jobType}, '*')`;

/**
 * CTEs that give back the concurrency slots of leases a transition ended,
 * for transitions whose `entries` CTE has tenant_id, job_type, from_state
 * and to_state: one orch.quota_releases row per covering quota. Insert-only,
 * so an ack never waits on a quota row a claim holds; the quota's next claim
 * folds the rows in. Freed slots of capped quotas wake claimers of the type
 * (identical notifications in one transaction are delivered once).
 */
export const freeQuotaSlots = (entries: string) => `
ended_leases AS (
  SELECT tenant_id, job_type, count(*) AS n FROM ${entries}
  WHERE from_state = 'leased' AND to_state <> 'leased' GROUP BY tenant_id, job_type
), slots_freed AS (
  INSERT INTO orch.quota_releases (tenant_id, job_type, n)
  SELECT q.tenant_id, q.job_type, sum(e.n) FROM ended_leases e JOIN orch.quotas q ON ${covers('q', 'e.tenant_id', 'e.job_type')}
  GROUP BY q.tenant_id, q.job_type
  RETURNING (SELECT count(pg_notify('${JOBS_CHANNEL}', e.job_type || ' ' || e.n)) FROM ended_leases e
             WHERE EXISTS (SELECT 1 FROM orch.quotas q WHERE q.tenant_id = orch.quota_releases.tenant_id
               AND q.job_type = orch.quota_releases.job_type AND coalesce(q.max_active, q.boost_max_active) IS NOT NULL)
             AND ${covers('orch.quota_releases', 'e.tenant_id', 'e.job_type')}) AS woken
)`;

/** SQL: slots released to quota `q` by acks and not yet folded into q.active. */
export const pendingReleases = (q: string) =>
  `coalesce((SELECT sum(r.n) FROM orch.quota_releases r WHERE r.tenant_id = ${q}.tenant_id AND r.job_type = ${q}.job_type), 0)`;

/**
 * SQL for "a dispatch pause covers the work of this tenant and type" (either
 * may be a quota's '*', which only a pause of '*' covers). The claim applies
 * it to every candidate pair, the quotas to their rows (a quota's `paused`);
 * the uncorrelated first test runs once per statement, so without any pause
 * the rows cost nothing.
 */
export const pauseCovers = (tenant: string, jobType: string) =>
  `((SELECT EXISTS (SELECT 1 FROM orch.dispatch_pauses)) AND EXISTS (SELECT 1 FROM orch.dispatch_pauses dp WHERE ${covers('dp', tenant, jobType)}))`;

/** SQL for "no pause covers a job of this tenant and type". */
export const notPaused = (tenant: string, jobType: string) => `(NOT ${pauseCovers(tenant, jobType)})`;
