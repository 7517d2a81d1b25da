import type pg from 'pg';
import { recordAudit, type OperatorAction } from '../audit/audit-log.ts';
import { runOperatorAction } from '../audit/operator-action.ts';
import { withTransaction, type Queryable } from '../ledger/db.ts';
import { LedgerError } from '../ledger/errors.ts';
import { JobTypes } from '../ledger/job-types.ts';
import { CURRENT_COUNTS } from '../ledger/queue-counts.ts';
import type { Tenants } from '../ledger/tenants.ts';
import { JOBS_CHANNEL } from '../ledger/channel.ts';
import { validateTenant } from '../ledger/validate.ts';
import { ALL } from './pauses.ts';
import { covers, pauseCovers, pendingReleases, quotaInForce, quotaRoom } from '../ledger/flow-sql.ts';

/** Limits of a quota; null means no limit of that kind. */
export interface QuotaLimits {
  maxActive: number | null;
  ratePerSecond: number | null;
  burst: number | null;
  maxPerHour: number | null;
}

export interface Quota extends QuotaLimits {
  tenantId: string;
  jobType: string;
  weight: number;
  paused: boolean;
  /** A temporary raise in force: these limits replace the ones above until `until`. */
  boost: (QuotaLimits & { until: string; reason: string | null; ticket: string | null; actor: string | null }) | null;
  reason: string;
  ticket: string | null;
  actor: string;
  updatedAt: string;
}

/** What a quota is using now, for /quotas/summary. */
export interface QuotaUse {
  tenantId: string;
  jobType: string;
  /** Limits in force (boosted while a boost lasts). */
  limits: QuotaLimits;
  boostedUntil: string | null;
  paused: boolean;
  active: number;
  tokensLeft: number | null;
  usedThisHour: number;
  throttledCount: number;
  /** Why a claim would be held back now, or null when the quota has room. */
  throttledBy: 'rate' | 'concurrency' | 'quota' | 'paused' | null;
  /** When the quota next allows a claim, when that is a matter of time (token refill, hourly window). */
  nextEligibleAt: string | null;
}

export type QuotaChange = Partial<QuotaLimits> & { weight?: number };

export interface BoostRequest {
  /** Multiplies the rate (and burst) and the concurrency cap. */
  factor?: number;
  maxActive?: number;
  ratePerSecond?: number;
  burst?: number;
  durationMs: number;
}

export const MAX_BOOST_MS = 7 * 24 * 3600 * 1000;

/** A quota row's columns, and whether a dispatch pause (src/flow/pauses.ts) holds back all the work it covers. */
const ROW = `*, ${pauseCovers('orch.quotas.tenant_id', 'orch.quotas.job_type')} AS paused`;

interface QuotaRow {
  tenant_id: string; job_type: string; max_active: number | null; rate_per_second: number | null; burst: number | null;
  max_per_hour: number | null; weight: number; paused: boolean; boost_until: Date | null; boost_max_active: number | null;
  boost_rate: number | null; boost_burst: number | null; boost_reason: string | null; boost_ticket: string | null;
  boost_actor: string | null; reason: string; ticket: string | null; actor: string; updated_at: Date;
}

const limitsOf = (r: Pick<QuotaRow, 'max_active' | 'rate_per_second' | 'burst' | 'max_per_hour'>): QuotaLimits => ({
  maxActive: r.max_active, ratePerSecond: r.rate_per_second, burst: r.burst, maxPerHour: r.max_per_hour,
});

const toQuota = (r: QuotaRow): Quota => ({
  tenantId: r.tenant_id, jobType: r.job_type, ...limitsOf(r), weight: r.weight, paused: r.paused,
  boost: r.boost_until && r.boost_until > new Date()
    ? {
      maxActive: r.boost_max_active ?? r.max_active, ratePerSecond: r.boost_rate ?? r.rate_per_second,
      burst: r.boost_burst ?? r.burst, maxPerHour: r.max_per_hour,
      until: r.boost_until.toISOString(), reason: r.boost_reason, ticket: r.boost_ticket, actor: r.boost_actor,
    }
    : null,
  reason: r.reason, ticket: r.ticket, actor: r.actor, updatedAt: r.updated_at.toISOString(),
});

function check(ok: boolean, field: string, message: string): void {
  if (!ok) throw new LedgerError('invalid', field, message);
}

/** Limits must be sane on their own and together: a bucket needs a burst of at least one token and at least its rate. */
export function validateLimits(l: QuotaLimits, weight: number): void {
  check(l.maxActive === null || (Number.isInteger(l.maxActive) && l.maxActive >= 0 && l.maxActive <= 1_000_000), 'maxActive', 'maxActive must be an integer from 0 to 1000000, or null');
  check(l.ratePerSecond === null || (Number.isFinite(l.ratePerSecond) && l.ratePerSecond > 0 && l.ratePerSecond <= 1_000_000), 'ratePerSecond', 'ratePerSecond must be above 0 and at most 1000000, or null');
  check(l.burst === null || (Number.isFinite(l.burst) && l.burst >= 1 && l.burst <= 10_000_000), 'burst', 'burst must be at least 1 and at most 10000000, or null');
  check(l.burst === null || l.ratePerSecond !== null, 'burst', 'burst needs ratePerSecond');
  check(l.burst === null || l.ratePerSecond === null || l.burst >= l.ratePerSecond, 'burst', 'burst must not be below ratePerSecond');
  check(l.maxPerHour === null || (Number.isInteger(l.maxPerHour) && l.maxPerHour >= 0 && l.maxPerHour <= 1_000_000_000), 'maxPerHour', 'maxPerHour must be an integer from 0 to 1000000000, or null');
  check(Number.isInteger(weight) && weight >= 1 && weight <= 1000, 'weight', 'weight must be an integer from 1 to 1000');
}

const target = (tenantId: string, jobType: string) => `quota:${tenantId}/${jobType}`;
const noQuota = (tenantId: string, jobType: string) => new LedgerError('not_found', 'jobType', `no quota for tenant ${tenantId} and job type ${jobType}`);

/**
 * Quotas per (tenant, job type), either of which may be "*". Every change is
 * one transaction together with its audit record. Enforcement lives in the
 * claim statement (src/ledger/transitions/claim.ts); this is the control side.
 */
export class Quotas {
  constructor(private readonly pool: pg.Pool, private readonly tenants: Tenants) {}

  private async validateScope(db: Queryable, tenantId: string, jobType: string): Promise<void> {
    if (tenantId !== ALL) {
      validateTenant(tenantId, 'tenantId');
      await this.tenants.mustExist(db, tenantId);
    }
    if (jobType !== ALL) JobTypes.validateName(jobType, 'jobType');
  }

  async list(): Promise<Quota[]> {
    const { rows } = await this.pool.query<QuotaRow>(`SELECT ${ROW} FROM orch.quotas ORDER BY tenant_id, job_type`);
    return rows.map(toQuota);
  }

  async get(tenantId: string, jobType: string): Promise<Quota> {
    const { rows } = await this.pool.query<QuotaRow>(`SELECT ${ROW} FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2`, [tenantId, jobType]);
    if (!rows[0]) throw noQuota(tenantId, jobType);
    return toQuota(rows[0]);
  }

  /** Locks and returns the quota row, or throws not_found. */
  private async lock(tx: Queryable, tenantId: string, jobType: string): Promise<QuotaRow> {
    const { rows } = await tx.query<QuotaRow>(`SELECT ${ROW} FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2 FOR UPDATE`, [tenantId, jobType]);
    if (!rows[0]) throw noQuota(tenantId, jobType);
    return rows[0];
  }

  /**
   * Creates a quota or changes some of its limits: fields left out keep their
   * values, null removes a limit. A new quota starts with a full bucket and
   * counts the leases already running under it.
   */
  async set(tenantId: string, jobType: string, change: QuotaChange, op: OperatorAction): Promise<Quota> {
    return this.change(op, 'quota.update', tenantId, jobType, async (tx) => {
      await this.validateScope(tx, tenantId, jobType);
      const { rows: current } = await tx.query<QuotaRow>(`SELECT ${ROW} FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2 FOR UPDATE`, [tenantId, jobType]);
      const before = current[0];
      const base: QuotaLimits = before ? limitsOf(before) : { maxActive: null, ratePerSecond: null, burst: null, maxPerHour: null };
      const next: QuotaLimits = {
        maxActive: change.maxActive !== undefined ? change.maxActive : base.maxActive,
        ratePerSecond: change.ratePerSecond !== undefined ? change.ratePerSecond : base.ratePerSecond,
        burst: change.burst !== undefined ? change.burst : base.burst,
        maxPerHour: change.maxPerHour !== undefined ? change.maxPerHour : base.maxPerHour,
      };
      // A rate without a burst gets a bucket of one second's worth (at least one token); removing the rate removes the bucket.
      check(next.ratePerSecond !== null || change.burst === undefined || change.burst === null, 'burst', 'burst needs ratePerSecond');
      if (next.ratePerSecond === null) next.burst = null;
      else if (next.burst === null) next.burst = Math.max(1, next.ratePerSecond);
      const weight = change.weight ?? before?.weight ?? 1;
      validateLimits(next, weight);
      const { rows } = await tx.query<QuotaRow>(
        `INSERT INTO orch.quotas (tenant_id, job_type, max_active, rate_per_second, burst, max_per_hour, weight, tokens, reason, ticket, actor)
         VALUES ($1, $2, $3, $4, $5::float8, $6, $7, coalesce($5::float8, 0), $8, $9, $10)
         ON CONFLICT (tenant_id, job_type) DO UPDATE SET
           max_active = EXCLUDED.max_active, rate_per_second = EXCLUDED.rate_per_second, burst = EXCLUDED.burst,
           max_per_hour = EXCLUDED.max_per_hour, weight = EXCLUDED.weight, reason = EXCLUDED.reason,
           -- a bucket that did not exist before starts full, like a new quota's
           tokens = CASE WHEN orch.quotas.rate_per_second IS NULL THEN EXCLUDED.tokens ELSE orch.quotas.tokens END,
           tokens_at = CASE WHEN orch.quotas.rate_per_second IS NULL THEN now() ELSE orch.quotas.tokens_at END,
           ticket = EXCLUDED.ticket, actor = EXCLUDED.actor, updated_at = now()
         RETURNING ${ROW}`,
        [tenantId, jobType, next.maxActive, next.ratePerSecond, next.burst, next.maxPerHour, weight, op.reason, op.ticket, op.actor],
      );
      if (!before) await reconcileActive(tx, tenantId, jobType);
      await wake(tx, jobType);
      return { result: toQuota(rows[0]!), action: before ? 'quota.update' : 'quota.create', details: { before: before ? limitsOf(before) : null, after: next, weight } };
    });
  }

  async remove(tenantId: string, jobType: string, op: OperatorAction): Promise<Quota> {
    return this.change(op, 'quota.delete', tenantId, jobType, async (tx) => {
      const row = await this.lock(tx, tenantId, jobType);
      await tx.query('DELETE FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2', [tenantId, jobType]);
      await tx.query('DELETE FROM orch.quota_releases WHERE tenant_id = $1 AND job_type = $2', [tenantId, jobType]);
      await wake(tx, jobType);
      return { result: toQuota(row), details: { before: limitsOf(row) } };
    });
  }

  /**
   * Raises the rate and/or concurrency for a bounded time. The limits set
   * before stay in the row and are in force again at boost_until by
   * construction (the claim reads the boost only while it lasts), so a
   * restart cannot leave a boost behind.
   */
  async boost(tenantId: string, jobType: string, req: BoostRequest, op: OperatorAction): Promise<Quota> {
    check(Number.isInteger(req.durationMs) && req.durationMs >= 1000 && req.durationMs <= MAX_BOOST_MS, 'durationSeconds', 'a boost lasts from 1 second to 7 days');
    check(req.factor === undefined || (Number.isFinite(req.factor) && req.factor > 1 && req.factor <= 100), 'factor', 'factor must be above 1 and at most 100');
    check(req.factor !== undefined || req.maxActive !== undefined || req.ratePerSecond !== undefined || req.burst !== undefined,
      'factor', 'give a factor or at least one of maxActive, ratePerSecond, burst');
    return this.change(op, 'quota.boost', tenantId, jobType, async (tx) => {
      const row = await this.lock(tx, tenantId, jobType);
      const f = req.factor;
      const boosted: QuotaLimits = {
        maxActive: req.maxActive ?? (f !== undefined && row.max_active !== null ? Math.ceil(row.max_active * f) : row.max_active),
        ratePerSecond: req.ratePerSecond ?? (f !== undefined && row.rate_per_second !== null ? row.rate_per_second * f : row.rate_per_second),
        burst: req.burst ?? (f !== undefined && row.burst !== null ? row.burst * f : row.burst),
        maxPerHour: row.max_per_hour,
      };
      if (boosted.ratePerSecond !== null && boosted.burst !== null && req.burst === undefined) boosted.burst = Math.max(boosted.burst, boosted.ratePerSecond);
      check(boosted.ratePerSecond === null || row.rate_per_second !== null, 'ratePerSecond', 'this quota has no rate limit to boost');
      check(boosted.maxActive === null || row.max_active !== null, 'maxActive', 'this quota has no concurrency cap to boost');
      check(row.max_active !== null || row.rate_per_second !== null, 'factor', 'this quota has no rate or concurrency limit to boost');
      validateLimits(boosted, row.weight);
      // A boost raises; lowering a limit is `quota set`.
      check(boosted.maxActive === null || boosted.maxActive >= row.max_active!, 'maxActive', 'a boost cannot lower maxActive');
      check(boosted.ratePerSecond === null || boosted.ratePerSecond >= row.rate_per_second!, 'ratePerSecond', 'a boost cannot lower ratePerSecond');
      check(boosted.burst === null || boosted.burst >= row.burst!, 'burst', 'a boost cannot lower burst');
      const { rows } = await tx.query<QuotaRow>(
        `UPDATE orch.quotas SET boost_until = now() + make_interval(secs => $3::float8 / 1000), boost_max_active = $4,
           boost_rate = $5, boost_burst = $6, boost_reason = $7, boost_ticket = $8, boost_actor = $9, updated_at = now()
         WHERE tenant_id = $1 AND job_type = $2 RETURNING ${ROW}`,
        [tenantId, jobType, req.durationMs, boosted.maxActive, boosted.ratePerSecond, boosted.burst, op.reason, op.ticket, op.actor],
      );
      const quota = toQuota(rows[0]!);
      await wake(tx, jobType);
      return { result: quota, details: { base: limitsOf(row), boosted, until: quota.boost!.until } };
    });
  }

  /** Ends a boost early: the limits set before it are in force again. */
  async restore(tenantId: string, jobType: string, op: OperatorAction): Promise<Quota> {
    return this.change(op, 'quota.restore', tenantId, jobType, async (tx) => {
      const row = await this.lock(tx, tenantId, jobType);
      if (!row.boost_until || row.boost_until <= new Date()) throw new LedgerError('not_found', 'jobType', `no boost in force for tenant ${tenantId} and job type ${jobType}`);
      const { rows } = await tx.query<QuotaRow>(`UPDATE orch.quotas SET ${CLEAR_BOOST}, updated_at = now() WHERE tenant_id = $1 AND job_type = $2 RETURNING ${ROW}`, [tenantId, jobType]);
      return { result: toQuota(rows[0]!), details: { restored: limitsOf(row) } };
    });
  }

  /** Use of every quota now: active leases, tokens left, throttled count, next eligible time. Reads quota rows only. */
  async summary(): Promise<QuotaUse[]> {
    const { rows } = await this.pool.query<{
      tenant_id: string; job_type: string; max_active: number | null; rate: number | null; burst: number | null; max_per_hour: number | null;
      boosted: boolean; boost_until: Date | null; paused: boolean; active: number; tokens_now: number | null; hour_used: number;
      throttled_count: string; reason: QuotaUse['throttledBy']; next_eligible_at: Date | null;
    }>(`WITH f AS (SELECT ${quotaInForce('q', `q.active - ${pendingReleases('q')}`)}, q.boost_until FROM orch.quotas q)
        ${quotaRoom('f')} ORDER BY f.tenant_id, f.job_type`);
    return rows.map((r) => ({
      tenantId: r.tenant_id, jobType: r.job_type,
      limits: { maxActive: r.max_active, ratePerSecond: r.rate, burst: r.burst, maxPerHour: r.max_per_hour },
      boostedUntil: r.boosted ? r.boost_until!.toISOString() : null,
      paused: r.paused, active: r.active,
      tokensLeft: r.tokens_now === null ? null : Math.floor(r.tokens_now * 1000) / 1000,
      usedThisHour: r.hour_used, throttledCount: Number(r.throttled_count), throttledBy: r.reason,
      nextEligibleAt: r.next_eligible_at ? r.next_eligible_at.toISOString() : null,
    }));
  }

  /** Clears boosts whose time ran out and records each restore in the audit log. Returns how many. */
  async endExpiredBoosts(): Promise<number> {
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<Omit<QuotaRow, 'paused'>>(
        `UPDATE orch.quotas q SET ${CLEAR_BOOST} FROM (
           SELECT tenant_id, job_type, boost_until, boost_max_active, boost_rate, boost_burst FROM orch.quotas
           WHERE boost_until <= now() ORDER BY tenant_id, job_type FOR UPDATE) old
         WHERE q.tenant_id = old.tenant_id AND q.job_type = old.job_type
         RETURNING q.*, old.boost_until`);
      for (const r of rows) {
        await recordAudit(tx, {
          actor: 'system:quota-keeper', tenantId: r.tenant_id === ALL ? null : r.tenant_id, action: 'quota.boost_expired',
          target: target(r.tenant_id, r.job_type), reason: 'boost time ran out', ticket: null, result: 'ok',
          details: { restored: limitsOf(r), boostEndedAt: r.boost_until?.toISOString() },
        });
      }
      return rows.length;
    });
  }

  /** Reclaims the space of folded release rows (claims delete them all the time; autovacuum may be off). */
  async compact(): Promise<void> {
    await this.pool.query('VACUUM orch.quota_releases');
  }

  /** Recounts every quota's active leases from the job table (a cheap safety net; see reconcileActive). */
  async reconcile(): Promise<void> {
    await withTransaction(this.pool, (tx) => reconcileActive(tx, null, null));
  }

  /** One quota's change, with its audit entry (src/audit/operator-action.ts). */
  private change(
    op: OperatorAction, action: string, tenantId: string, jobType: string,
    fn: (tx: Queryable) => Promise<{ result: Quota; details: Record<string, unknown>; action?: string }>,
  ): Promise<Quota> {
    return runOperatorAction(this.pool, op, { action, tenantId: tenantId === ALL ? null : tenantId, target: target(tenantId, jobType) }, ({ client }) => fn(client));
  }
}

const CLEAR_BOOST = `boost_until = NULL, boost_max_active = NULL, boost_rate = NULL, boost_burst = NULL,
  boost_reason = NULL, boost_ticket = NULL, boost_actor = NULL`;

/** Idle claimers of the type look again at once: a control change may have made room. */
async function wake(tx: Queryable, jobType: string): Promise<void> {
  await tx.query(`SELECT pg_notify('${JOBS_CHANNEL}', $1)`, [jobType === ALL ? '*' : `${jobType} 0`]);
}

/**
 * Sets `active` of one quota (or all) to the number of leased jobs it covers (from the queue counts).
 * The rows are locked first and counted in a later statement, so the count
 * sees every claim that committed before the lock, and claims after it wait.
 * Needed when a quota is created while its work is already running, and as a
 * periodic safety net.
 */
async function reconcileActive(tx: Queryable, tenantId: string | null, jobType: string | null): Promise<void> {
  await tx.query(
    `SELECT 1 FROM orch.quotas WHERE $1::text IS NULL OR (tenant_id = $1 AND job_type = $2)
     ORDER BY tenant_id, job_type FOR UPDATE`, [tenantId, jobType]);
  // One statement, one snapshot: releases whose acks committed are deleted together with counting
  // their jobs as no longer leased; later releases stay and are netted out by the next claim. The
  // leased counts come from the queue counts, which every transition writes in its own transaction,
  // so they agree with that snapshot without reading the job table.
  await tx.query(
    `WITH leased AS (SELECT tenant_id, job_type, n FROM ${CURRENT_COUNTS} c WHERE state = 'leased'),
     gone AS (DELETE FROM orch.quota_releases r WHERE $1::text IS NULL OR (r.tenant_id = $1 AND r.job_type = $2) RETURNING 1)
     UPDATE orch.quotas q SET active = coalesce((SELECT sum(l.n) FROM leased l WHERE ${covers('q', 'l.tenant_id', 'l.job_type')}), 0)
     WHERE ($1::text IS NULL OR (q.tenant_id = $1 AND q.job_type = $2)) AND (SELECT count(*) FROM gone) >= 0`, [tenantId, jobType]);
}
