import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { OperatorAction } from '../audit/audit-log.ts';
import { runOperatorAction } from '../audit/operator-action.ts';
import type { Queryable } from '../ledger/db.ts';
import { LedgerError } from '../ledger/errors.ts';
import { JobTypes } from '../ledger/job-types.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { MAX_PRIORITY, parseTime, prepareJob, toStorableJson } from '../ledger/validate.ts';
import { checkTemplate, renderTemplate, type TemplateName, type TemplateValues } from '../windows/template.ts';
import { emptyCounts, windowCounts, type WindowCounts, type WindowState } from '../windows/windows.ts';

export const REPROCESS_POLICIES = ['none', 'failed', 'all'] as const;
export type Reprocess = (typeof REPROCESS_POLICIES)[number];
export const BACKFILL_STATES = ['running', 'paused', 'canceled', 'done'] as const;
export type BackfillState = (typeof BACKFILL_STATES)[number];
/** Windows one backfill may cut its range into: a bigger range takes a wider window or several backfills. */
export const MAX_WINDOWS = 10_000;
/** Template values a backfill's payload may use. */
export const BACKFILL_TEMPLATE: readonly TemplateName[] = ['windowStart', 'windowEnd', 'windowIndex', 'watermark', 'now', 'backfillId'];

export interface BackfillSpec {
  jobType: string;
  from: string;
  to: string;
  windowMs: number;
  payload?: unknown;
  priority?: number;
  concurrency?: number;
  reprocess?: Reprocess;
}


export interface Backfill {
  id: string;
  tenantId: string;
  jobType: string;
  from: string;
  to: string;
  windowMs: number;
  payload: unknown;
  priority: number;
  concurrency: number;
  reprocess: Reprocess;
  state: BackfillState;
  windows: number;
  watermark: string | null;
  actor: string;
  reason: string;
  ticket: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  progress: WindowCounts & {
    /** Windows done (succeeded or skipped) per minute since the backfill began. */
    perMinute: number;
    /** When the windows left should be done at that rate; null when nothing is left or nothing has finished yet. */
    estimatedEndAt: string | null;
  };
}

/** One window of a plan: whether a backfill would run a job for it, the state it would start in, and why when not pending. */
export interface PlannedWindow { index: number; start: string; end: string; action: 'run' | 'skip'; state: WindowState; reason: string | null; jobId?: string }
export interface BackfillPlan { jobType: string; windows: number; run: number; skip: number; items: PlannedWindow[] }

interface BackfillRow {
  id: string; tenant_id: string; job_type: string; range_from: Date; range_to: Date; window_ms: string; payload: unknown; priority: number;
  concurrency: number; reprocess: Reprocess; state: BackfillState; windows: number; watermark: Date | null; actor: string; reason: string;
  ticket: string; created_at: Date; updated_at: Date; finished_at: Date | null; now: Date;
}

const SELECT_BACKFILL = 'SELECT b.*, now() AS now FROM orch.backfills b';

interface Checked { tenantId: string; jobType: string; from: Date; to: Date; windowMs: number; payload: unknown; priority: number; concurrency: number; reprocess: Reprocess }

/** The rules of a backfill: a 400 naming the field for each. */
function check(tenantId: string, spec: BackfillSpec, maxPayloadBytes: number): Checked {
  JobTypes.validateName(spec.jobType, 'jobType');
  const from = parseTime(spec.from, 'from');
  const to = parseTime(spec.to, 'to');
  if (to <= from) throw new LedgerError('invalid', 'to', 'to must be after from');
  if (!(Number.isInteger(spec.windowMs) && spec.windowMs >= 1000)) throw new LedgerError('invalid', 'windowMs', 'windowMs must be a whole number of milliseconds, at least 1000 (1s)');
  const windows = Math.ceil((to.getTime() - from.getTime()) / spec.windowMs);
  if (windows > MAX_WINDOWS) {
    throw new LedgerError('invalid', 'windowMs', `from ${spec.from} to ${spec.to} in windows of ${spec.windowMs} ms is ${windows} windows, over the limit of ${MAX_WINDOWS}; take a wider window or split the range`);
  }
  const concurrency = spec.concurrency ?? 1;
  if (!(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 10_000)) throw new LedgerError('invalid', 'concurrency', 'concurrency must be an integer from 1 to 10000');
  const priority = spec.priority ?? 0;
  if (!(Number.isInteger(priority) && priority >= 0 && priority <= MAX_PRIORITY)) throw new LedgerError('invalid', 'priority', `priority must be an integer from 0 to ${MAX_PRIORITY}`);
  const payload = spec.payload ?? null;
  toStorableJson(payload, 'payload');
  checkTemplate(payload, BACKFILL_TEMPLATE);
  const sample = renderTemplate(payload, windowValues('00000000-0000-0000-0000-000000000000', { seq: windows, starts: from, ends: to }, from.toISOString(), new Date()));
  prepareJob({ tenantId, jobType: spec.jobType, payload: sample }, maxPayloadBytes);
  return { tenantId, jobType: spec.jobType, from, to, windowMs: spec.windowMs, payload, priority, concurrency, reprocess: spec.reprocess ?? 'none' };
}

/** The values a window's payload is made from. */
export function windowValues(backfillId: string, w: { seq: number; starts: Date; ends: Date }, watermark: string | null, now: Date): TemplateValues {
  return {
    windowStart: w.starts.toISOString(), windowEnd: w.ends.toISOString(), windowIndex: w.seq, watermark, now: now.toISOString(), backfillId,
  };
}

/**
 * The windows of the range, and what to do with each given the windows of
 * the same tenant, job type and bounds that came before (in another backfill
 * or a schedule), so a second request never doubles work:
 * - one running there is followed: this window runs on that job;
 * - one pending there is `covered`: that backfill will run it;
 * - one that succeeded is `skipped` (it counts as complete), unless reprocess is `all`;
 * - one that failed or was canceled starts `failed` (retry runs it), unless reprocess is `failed` or `all`.
 */
async function planWindows(db: Queryable, c: Checked): Promise<PlannedWindow[]> {
  const { rows } = await db.query<{ starts_at: Date; ends_at: Date; state: WindowState; owner_id: string; job_id: string | null }>(
    `SELECT DISTINCT ON (starts_at, ends_at) starts_at, ends_at, state, owner_id, job_id::text FROM orch.windows
     WHERE tenant_id = $1 AND job_type = $2 AND starts_at >= $3 AND ends_at <= $4
     ORDER BY starts_at, ends_at, (state IN ('pending', 'running')) DESC, settled_at DESC NULLS LAST`,
    [c.tenantId, c.jobType, c.from, c.to]);
  const before = new Map(rows.map((r) => [`${r.starts_at.getTime()}/${r.ends_at.getTime()}`, r]));
  const items: PlannedWindow[] = [];
  for (let start = c.from.getTime(), index = 0; start < c.to.getTime(); start += c.windowMs, index++) {
    const end = Math.min(start + c.windowMs, c.to.getTime());
    const item = { index, start: new Date(start).toISOString(), end: new Date(end).toISOString() };
    const prior = before.get(`${start}/${end}`);
    const where = prior ? `${prior.owner_id}` : '';
    if (prior?.state === 'running' && prior.job_id) {
      items.push({ ...item, action: 'skip', state: 'running', reason: `running in ${where}: follows its job ${prior.job_id}`, jobId: prior.job_id });
    } else if (prior?.state === 'pending' || prior?.state === 'covered') {
      items.push({ ...item, action: 'skip', state: 'covered', reason: `pending in ${where}, which runs it` });
    } else if ((prior?.state === 'succeeded' || prior?.state === 'skipped') && c.reprocess !== 'all') {
      items.push({ ...item, action: 'skip', state: 'skipped', reason: `succeeded in ${where} (reprocess all runs it again)` });
    } else if ((prior?.state === 'failed' || prior?.state === 'canceled') && c.reprocess === 'none') {
      items.push({ ...item, action: 'skip', state: 'failed', reason: `${prior.state} in ${where} (reprocess failed runs it again; so does retry)` });
    } else {
      items.push({ ...item, action: 'run', state: 'pending', reason: null });
    }
  }
  return items;
}

const what = (action: string, tenantId: string, id: string) => ({ action, tenantId, target: `backfill:${id}` });

/**
 * Backfills: a range of the past cut into windows, one job each, launched
 * by the backfill runner (src/backfills/runner.ts, leader only) at most
 * `concurrency` at a time, in order. Every action is an operator action of
 * scope orch:backfill (reason and ticket), audited with its event.
 */
export class Backfills {
  constructor(private readonly pool: pg.Pool, private readonly ledger: Ledger, private readonly maxPayloadBytes: number, private readonly nudge: () => void) {}

  /** What a backfill would do, without doing it (`--dry-run`). */
  async plan(db: Queryable, tenantId: string, spec: BackfillSpec): Promise<BackfillPlan> {
    const c = check(tenantId, spec, this.maxPayloadBytes);
    const items = await planWindows(db, c);
    const run = items.filter((i) => i.action === 'run').length;
    return { jobType: c.jobType, windows: items.length, run, skip: items.length - run, items: items.map(({ jobId: _, ...i }) => i) };
  }

  async create(tenantId: string, spec: BackfillSpec, op: OperatorAction): Promise<Backfill> {
    const c = check(tenantId, spec, this.maxPayloadBytes);
    await this.ledger.jobTypes.ensure([c.jobType]);
    await this.ledger.tenants.ensure([tenantId]);
    const id = randomUUID();
    await runOperatorAction(this.pool, op, what('backfill.create', tenantId, id), async ({ client }) => {
      // one plan at a time per tenant and job type, so two requests for one range cannot both decide to run a window
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`orch.backfill:${tenantId}:${c.jobType}`]);
      const items = await planWindows(client, c);
      await client.query(
        `INSERT INTO orch.backfills (id, tenant_id, job_type, range_from, range_to, window_ms, payload, priority, concurrency, reprocess, windows, actor, reason, ticket)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
        [id, tenantId, c.jobType, c.from, c.to, c.windowMs, JSON.stringify(c.payload), c.priority, c.concurrency, c.reprocess, items.length, op.actor, op.reason, op.ticket]);
      await client.query(
        `INSERT INTO orch.windows (owner_id, seq, tenant_id, job_type, starts_at, ends_at, state, note, job_id)
         SELECT $1, i, $2, $3, s, e, st, n, j FROM unnest($4::int[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[], $9::bigint[]) AS x(i, s, e, st, n, j)`,
        [id, tenantId, c.jobType, items.map((i) => i.index), items.map((i) => i.start), items.map((i) => i.end), items.map((i) => i.state),
          items.map((i) => i.reason), items.map((i) => i.jobId ?? null)]);
      const skipped = items.filter((i) => i.action === 'skip').length;
      return { result: id, details: { from: c.from.toISOString(), to: c.to.toISOString(), windowMs: c.windowMs, windows: items.length, skipped, concurrency: c.concurrency, reprocess: c.reprocess } };
    });
    this.nudge();
    return this.get(this.pool, tenantId, id);
  }

  /** pause: no new windows start (running ones finish); resume: they start again. */
  async setState(tenantId: string, id: string, action: 'pause' | 'resume', op: OperatorAction): Promise<Backfill> {
    const [from, to] = action === 'pause' ? ['running', 'paused'] : ['paused', 'running'];
    await runOperatorAction(this.pool, op, what(`backfill.${action}`, tenantId, id), async ({ client }) => {
      const b = await lockBackfill(client, tenantId, id);
      if (b.state !== from) throw new LedgerError('conflict', 'state', `backfill ${id} is ${b.state}; only a ${from} one can ${action}`);
      await client.query('UPDATE orch.backfills SET state = $2, updated_at = now() WHERE id = $1', [id, to]);
      return { result: null, details: {} };
    });
    this.nudge();
    return this.get(this.pool, tenantId, id);
  }

  /**
   * Cancels the windows not started and the jobs of started ones still waiting; jobs running now finish.
   * A window that follows another backfill's job (runs 0) leaves that job alone: it is not this backfill's.
   */
  async cancel(tenantId: string, id: string, op: OperatorAction): Promise<Backfill> {
    await runOperatorAction(this.pool, op, what('backfill.cancel', tenantId, id), async (tx) => {
      const b = await lockBackfill(tx.client, tenantId, id);
      if (b.state === 'canceled' || b.state === 'done') throw new LedgerError('conflict', 'state', `backfill ${id} is already ${b.state}`);
      const { rowCount } = await tx.client.query(
        `UPDATE orch.windows SET state = 'canceled', settled_at = now() WHERE owner_id = $1 AND state = 'pending'`, [id]);
      const { rows } = await tx.client.query<{ job_id: string }>(
        `SELECT w.job_id FROM orch.windows w JOIN orch.jobs j ON j.tenant_id = w.tenant_id AND j.id = w.job_id
         WHERE w.owner_id = $1 AND w.state = 'running' AND w.runs > 0 AND j.state IN ('queued', 'failed')
         FOR UPDATE OF j`, [id]);
      await this.ledger.cancelMany(tenantId, rows.map((r) => r.job_id), op.actor, `backfill ${id} canceled: ${op.reason}`, { tx, states: ['queued', 'failed'] });
      await tx.client.query(`UPDATE orch.backfills SET state = 'canceled', updated_at = now() WHERE id = $1`, [id]);
      return { result: null, details: { windowsCanceled: rowCount ?? 0, jobsCanceled: rows.length } };
    });
    this.nudge();
    return this.get(this.pool, tenantId, id);
  }

  /** Runs the failed (and canceled) windows again, as new jobs; windows that succeeded are left alone. A paused backfill stays paused. */
  async retry(tenantId: string, id: string, op: OperatorAction): Promise<Backfill> {
    await runOperatorAction(this.pool, op, what('backfill.retry', tenantId, id), async ({ client }) => {
      await lockBackfill(client, tenantId, id);
      const { rowCount } = await client.query(
        `UPDATE orch.windows SET state = 'pending', settled_at = NULL WHERE owner_id = $1 AND state IN ('failed', 'canceled')`, [id]);
      if (!rowCount) throw new LedgerError('conflict', 'state', `backfill ${id} has no failed or canceled window to retry`);
      // a paused backfill stays paused (resume starts the windows); a canceled or done one runs again
      await client.query(
        `UPDATE orch.backfills SET state = CASE WHEN state = 'paused' THEN 'paused' ELSE 'running' END, finished_at = NULL, updated_at = now() WHERE id = $1`, [id]);
      return { result: null, details: { windows: rowCount } };
    });
    this.nudge();
    return this.get(this.pool, tenantId, id);
  }

  async get(db: Queryable, tenantId: string, id: string): Promise<Backfill> {
    const [b] = await this.read(db, 'WHERE b.tenant_id = $1 AND b.id = $2', [tenantId, id]);
    if (!b) throw new LedgerError('not_found', 'id', `no backfill ${id} for tenant ${tenantId}`);
    return b;
  }

  /** Newest first. */
  list(db: Queryable, tenantIds: readonly string[] | undefined, state?: BackfillState): Promise<Backfill[]> {
    return this.read(db, 'WHERE ($1::text[] IS NULL OR b.tenant_id = ANY($1)) AND ($2::text IS NULL OR b.state = $2) ORDER BY b.created_at DESC LIMIT 200',
      [tenantIds ?? null, state ?? null]);
  }

  private async read(db: Queryable, where: string, params: unknown[]): Promise<Backfill[]> {
    const { rows } = await db.query<BackfillRow>(`${SELECT_BACKFILL} ${where}`, params);
    const counts = await windowCounts(db, rows.map((r) => r.id));
    return rows.map((r) => toBackfill(r, counts.get(r.id) ?? emptyCounts()));
  }
}

function toBackfill(r: BackfillRow, c: WindowCounts): Backfill {
  const end = (r.finished_at ?? r.now).getTime();
  const minutes = Math.max(1 / 60, (end - r.created_at.getTime()) / 60_000);
  const done = c.succeeded + c.skipped;
  const perMinute = done / minutes;
  const left = c.pending + c.running;
  return {
    id: r.id, tenantId: r.tenant_id, jobType: r.job_type, from: r.range_from.toISOString(), to: r.range_to.toISOString(), windowMs: Number(r.window_ms),
    payload: r.payload, priority: r.priority, concurrency: r.concurrency, reprocess: r.reprocess, state: r.state, windows: r.windows,
    watermark: r.watermark?.toISOString() ?? null, actor: r.actor, reason: r.reason, ticket: r.ticket, createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(), finishedAt: r.finished_at?.toISOString() ?? null,
    progress: {
      ...c, perMinute: Math.round(perMinute * 100) / 100,
      estimatedEndAt: left > 0 && c.succeeded > 0 && r.state === 'running' ? new Date(r.now.getTime() + (left / perMinute) * 60_000).toISOString() : null,
    },
  };
}

async function lockBackfill(db: Queryable, tenantId: string, id: string): Promise<BackfillRow> {
  const { rows } = await db.query<BackfillRow>(`${SELECT_BACKFILL} WHERE b.tenant_id = $1 AND b.id = $2 FOR UPDATE`, [tenantId, id]);
  if (!rows[0]) throw new LedgerError('not_found', 'id', `no backfill ${id} for tenant ${tenantId}`);
  return rows[0];
}
