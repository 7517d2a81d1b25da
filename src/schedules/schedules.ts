import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { OperatorAction } from '../audit/audit-log.ts';
import { runOperatorAction } from '../audit/operator-action.ts';
import type { Queryable } from '../ledger/db.ts';
import { LedgerError } from '../ledger/errors.ts';
import { JobTypes } from '../ledger/job-types.ts';
import type { Ledger, Tx } from '../ledger/ledger.ts';
import { MAX_PRIORITY, parseTime, prepareJob, toStorableJson } from '../ledger/validate.ts';
import { checkTemplate, renderTemplate, type TemplateName, type TemplateValues } from '../windows/template.ts';
import { watermarkOf } from '../windows/windows.ts';
import { nextTick, parseCron, validateTimeZone, type Recurrence } from './cron.ts';

export const CATCH_UP_POLICIES = ['skip', 'latest', 'all'] as const;
export type CatchUp = (typeof CATCH_UP_POLICIES)[number];
export const SCHEDULE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$';
const NAME_RE = new RegExp(SCHEDULE_NAME_PATTERN);
/** Template values a schedule's payload may use. */
export const SCHEDULE_TEMPLATE: readonly TemplateName[] = ['windowStart', 'windowEnd', 'windowIndex', 'tick', 'watermark', 'now', 'scheduleName'];

export interface Schedule {
  id: string;
  tenantId: string;
  name: string;
  jobType: string;
  payload: unknown;
  priority: number;
  maxAttempts: number | null;
  cron: string | null;
  everyMs: number | null;
  timeZone: string;
  startsAt: string | null;
  endsAt: string | null;
  enabled: boolean;
  catchUp: CatchUp;
  catchUpMax: number;
  nextTickAt: string | null;
  lastTickAt: string | null;
  lastJobId: string | null;
  ticks: number;
  missedTicks: number;
  watermark: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

/** What a caller sets; on update, fields left out keep their values. */
export interface ScheduleSpec {
  jobType: string;
  payload?: unknown;
  priority?: number;
  maxAttempts?: number | null;
  cron?: string | null;
  everyMs?: number | null;
  timeZone?: string;
  startsAt?: string | null;
  endsAt?: string | null;
  enabled?: boolean;
  catchUp?: CatchUp;
  catchUpMax?: number;
}

export interface ScheduleRow {
  id: string; tenant_id: string; name: string; job_type: string; payload: unknown; priority: number; max_attempts: number | null;
  cron: string | null; every_ms: string | null; time_zone: string; starts_at: Date | null; ends_at: Date | null; enabled: boolean;
  catch_up: CatchUp; catch_up_max: number; next_tick_at: Date | null; last_tick_at: Date | null; last_job_id: string | null;
  ticks: string; missed_ticks: string; watermark: Date | null; created_by: string; created_at: Date; updated_at: Date;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export const toSchedule = (r: ScheduleRow): Schedule => ({
  id: r.id, tenantId: r.tenant_id, name: r.name, jobType: r.job_type, payload: r.payload, priority: r.priority, maxAttempts: r.max_attempts,
  cron: r.cron, everyMs: r.every_ms === null ? null : Number(r.every_ms), timeZone: r.time_zone, startsAt: iso(r.starts_at), endsAt: iso(r.ends_at),
  enabled: r.enabled, catchUp: r.catch_up, catchUpMax: r.catch_up_max, nextTickAt: iso(r.next_tick_at), lastTickAt: iso(r.last_tick_at),
  lastJobId: r.last_job_id, ticks: Number(r.ticks), missedTicks: Number(r.missed_ticks), watermark: iso(r.watermark), createdBy: r.created_by,
  createdAt: r.created_at.toISOString(), updatedAt: r.updated_at.toISOString(),
});

/** When a schedule ticks, from its stored row. */
export function recurrenceOf(r: Pick<ScheduleRow, 'cron' | 'every_ms' | 'time_zone' | 'starts_at' | 'ends_at' | 'created_at'>): Recurrence {
  return {
    cron: r.cron, everyMs: r.every_ms === null ? null : Number(r.every_ms), timeZone: r.time_zone,
    anchor: r.starts_at ?? r.created_at, endsAt: r.ends_at,
  };
}

/** The values a tick's payload is made from. */
export function tickValues(s: { name: string; startsAt: Date | null; createdAt: Date; lastTickAt: Date | null }, tick: Date, index: number, watermark: string | null, now: Date): TemplateValues {
  return {
    windowStart: (s.lastTickAt ?? s.startsAt ?? s.createdAt).toISOString(), windowEnd: tick.toISOString(), windowIndex: index,
    tick: tick.toISOString(), watermark, now: now.toISOString(), scheduleName: s.name,
  };
}

interface Checked { spec: Required<Omit<ScheduleSpec, 'maxAttempts' | 'cron' | 'everyMs' | 'startsAt' | 'endsAt'>> & { maxAttempts: number | null; cron: string | null; everyMs: number | null }; startsAt: Date | null; endsAt: Date | null }

/** Every rule of a schedule, so a bad one is a 400 naming its field and never a tick that fails. */
function check(spec: ScheduleSpec, maxPayloadBytes: number): Checked {
  JobTypes.validateName(spec.jobType, 'jobType');
  const cron = spec.cron ?? null;
  const everyMs = spec.everyMs ?? null;
  if ((cron === null) === (everyMs === null)) throw new LedgerError('invalid', 'cron', 'give exactly one of cron and everyMs');
  if (cron !== null) parseCron(cron);
  if (everyMs !== null && !(Number.isInteger(everyMs) && everyMs >= 1000 && everyMs <= 366 * 86_400_000)) {
    throw new LedgerError('invalid', 'everyMs', 'everyMs must be a whole number of milliseconds from 1000 (1s) to 366 days');
  }
  const timeZone = spec.timeZone ?? 'UTC';
  validateTimeZone(timeZone);
  const startsAt = spec.startsAt ? parseTime(spec.startsAt, 'startsAt') : null;
  const endsAt = spec.endsAt ? parseTime(spec.endsAt, 'endsAt') : null;
  if (startsAt && endsAt && endsAt <= startsAt) throw new LedgerError('invalid', 'endsAt', 'endsAt must be after startsAt');
  const priority = spec.priority ?? 0;
  if (!(Number.isInteger(priority) && priority >= 0 && priority <= MAX_PRIORITY)) throw new LedgerError('invalid', 'priority', `priority must be an integer from 0 to ${MAX_PRIORITY}`);
  const catchUpMax = spec.catchUpMax ?? 100;
  if (!(Number.isInteger(catchUpMax) && catchUpMax >= 1 && catchUpMax <= 10_000)) throw new LedgerError('invalid', 'catchUpMax', 'catchUpMax must be an integer from 1 to 10000');
  const payload = spec.payload ?? null;
  toStorableJson(payload, 'payload');
  checkTemplate(payload, SCHEDULE_TEMPLATE);
  // A payload that renders over the size limit would fail every tick: refuse it now.
  const sample = renderTemplate(payload, tickValues({ name: 'n'.repeat(128), startsAt, createdAt: new Date(), lastTickAt: null }, new Date(), 0, new Date().toISOString(), new Date()));
  prepareJob({ tenantId: 'sample', jobType: spec.jobType, payload: sample, maxAttempts: spec.maxAttempts ?? undefined }, maxPayloadBytes);
  return {
    spec: { jobType: spec.jobType, payload, priority, maxAttempts: spec.maxAttempts ?? null, cron, everyMs, timeZone, enabled: spec.enabled ?? true, catchUp: spec.catchUp ?? 'latest', catchUpMax },
    startsAt, endsAt,
  };
}

const what = (action: string, tenantId: string, name: string) => ({ action, tenantId, target: `schedule:${name}` });

/**
 * Schedule definitions and the operator actions on them. Each change is
 * audited with its `schedule.changed` event in one transaction; the next
 * tick is computed from the database clock when timing changes. Ticks are
 * fired by the Scheduler (src/schedules/scheduler.ts), on the leader only.
 */
export class Schedules {
  /** `nudge` tells the scheduler a schedule changed, so a next tick sooner than its next scan is not missed by it. */
  constructor(private readonly pool: pg.Pool, private readonly ledger: Ledger, private readonly maxPayloadBytes: number, private readonly nudge: () => void) {}

  async create(tenantId: string, name: string, spec: ScheduleSpec, op: OperatorAction): Promise<Schedule> {
    if (!NAME_RE.test(name)) throw new LedgerError('invalid', 'name', `name "${name.slice(0, 80)}" must match ${SCHEDULE_NAME_PATTERN}`);
    const c = check(spec, this.maxPayloadBytes);
    const created = await runOperatorAction(this.pool, op, what('schedule.create', tenantId, name), async ({ client }) => {
      const now = await dbNow(client);
      const next = firstTick(c, now, now);
      const { rows } = await client.query<ScheduleRow>(
        `INSERT INTO orch.schedules (tenant_id, name, job_type, payload, priority, max_attempts, cron, every_ms, time_zone, starts_at, ends_at,
           enabled, catch_up, catch_up_max, next_tick_at, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)
         ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *`,
        [tenantId, name, c.spec.jobType, JSON.stringify(c.spec.payload), c.spec.priority, c.spec.maxAttempts, c.spec.cron, c.spec.everyMs, c.spec.timeZone,
          c.startsAt, c.endsAt, c.spec.enabled, c.spec.catchUp, c.spec.catchUpMax, next, op.actor, now]);
      if (!rows[0]) throw new LedgerError('conflict', 'name', `tenant ${tenantId} already has a schedule named ${name}`);
      return { result: toSchedule(rows[0]), details: { jobType: c.spec.jobType, cron: c.spec.cron, everyMs: c.spec.everyMs, timeZone: c.spec.timeZone } };
    });
    this.nudge();
    return created;
  }

  /** Changes the fields given; a change of timing moves the next tick to the first one after now. */
  async update(tenantId: string, name: string, patch: Partial<ScheduleSpec>, op: OperatorAction): Promise<Schedule> {
    const updated = await runOperatorAction(this.pool, op, what('schedule.update', tenantId, name), async ({ client }) => {
      const row = await lockSchedule(client, tenantId, name);
      const current = toSchedule(row);
      const timing = 'cron' in patch || 'everyMs' in patch;
      const merged: ScheduleSpec = {
        jobType: patch.jobType ?? current.jobType, payload: 'payload' in patch ? patch.payload : current.payload, priority: patch.priority ?? current.priority,
        maxAttempts: 'maxAttempts' in patch ? patch.maxAttempts : current.maxAttempts,
        // giving one of cron and everyMs replaces the other
        cron: timing ? patch.cron ?? null : current.cron, everyMs: timing ? patch.everyMs ?? null : current.everyMs,
        timeZone: patch.timeZone ?? current.timeZone, startsAt: 'startsAt' in patch ? patch.startsAt : current.startsAt,
        endsAt: 'endsAt' in patch ? patch.endsAt : current.endsAt, enabled: patch.enabled ?? current.enabled,
        catchUp: patch.catchUp ?? current.catchUp, catchUpMax: patch.catchUpMax ?? current.catchUpMax,
      };
      const c = check(merged, this.maxPayloadBytes);
      const now = await dbNow(client);
      // enabling a paused schedule is a resume: ticks that passed while it was paused were not wanted
      const retime = timing || 'timeZone' in patch || 'startsAt' in patch || 'endsAt' in patch || (patch.enabled === true && !row.enabled);
      const next = retime ? firstTick(c, now, row.created_at) : row.next_tick_at;
      const { rows } = await client.query<ScheduleRow>(
        `UPDATE orch.schedules SET job_type = $2, payload = $3, priority = $4, max_attempts = $5, cron = $6, every_ms = $7, time_zone = $8,
           starts_at = $9, ends_at = $10, enabled = $11, catch_up = $12, catch_up_max = $13, next_tick_at = $14, updated_at = now()
         WHERE id = $1 RETURNING *`,
        [row.id, c.spec.jobType, JSON.stringify(c.spec.payload), c.spec.priority, c.spec.maxAttempts, c.spec.cron, c.spec.everyMs, c.spec.timeZone,
          c.startsAt, c.endsAt, c.spec.enabled, c.spec.catchUp, c.spec.catchUpMax, next]);
      return { result: toSchedule(rows[0]!), details: { changed: Object.keys(patch) } };
    });
    this.nudge();
    return updated;
  }

  /**
   * Pause: no ticks until resumed (ticks that pass meanwhile are not missed,
   * they were not wanted). Resume: the next tick is the first after now.
   */
  async setEnabled(tenantId: string, name: string, enabled: boolean, op: OperatorAction): Promise<Schedule> {
    const changed = await runOperatorAction(this.pool, op, what(enabled ? 'schedule.resume' : 'schedule.pause', tenantId, name), async ({ client }) => {
      const row = await lockSchedule(client, tenantId, name);
      const now = await dbNow(client);
      const next = enabled && !row.enabled ? nextTick(recurrenceOf(row), now.getTime()) : row.next_tick_at?.getTime() ?? null;
      const { rows } = await client.query<ScheduleRow>(
        'UPDATE orch.schedules SET enabled = $2, next_tick_at = $3, updated_at = now() WHERE id = $1 RETURNING *',
        [row.id, enabled, next === null ? null : new Date(next)]);
      return { result: toSchedule(rows[0]!), details: {} };
    });
    this.nudge();
    return changed;
  }

  /** Removes the schedule and its windows; jobs it made stay, and so does the watermark of its tenant and job type. */
  async delete(tenantId: string, name: string, op: OperatorAction): Promise<Schedule> {
    return runOperatorAction(this.pool, op, what('schedule.delete', tenantId, name), async ({ client }) => {
      const row = await lockSchedule(client, tenantId, name);
      await client.query('DELETE FROM orch.windows WHERE owner_id = $1', [row.id]);
      await client.query('DELETE FROM orch.schedules WHERE id = $1', [row.id]);
      return { result: toSchedule(row), details: {} };
    });
  }

  /** Runs the schedule's job once now, outside its ticks (they are unchanged): `orch schedules trigger`. */
  async trigger(tenantId: string, name: string, op: OperatorAction): Promise<{ schedule: Schedule; jobId: string }> {
    return runOperatorAction(this.pool, op, what('schedule.trigger', tenantId, name), async (tx: Tx) => {
      const row = await lockSchedule(tx.client, tenantId, name);
      const now = await dbNow(tx.client);
      const s = { name: row.name, startsAt: row.starts_at, createdAt: row.created_at, lastTickAt: row.last_tick_at };
      const payload = renderTemplate(row.payload, tickValues(s, now, Number(row.ticks), await watermarkOf(tx.client, tenantId, row.job_type), now));
      const [job] = await this.ledger.enqueue([{
        tenantId, jobType: row.job_type, payload, priority: row.priority, maxAttempts: row.max_attempts ?? undefined,
        idempotencyKey: `schedule:${row.id}:trigger:${op.requestId ?? randomUUID()}`,
      }], { tx, actor: op.actor, cause: 'scheduled', reason: op.reason });
      return { result: { schedule: toSchedule(row), jobId: job!.id }, details: { jobId: job!.id } };
    });
  }

  async list(db: Queryable, tenantIds: readonly string[] | undefined): Promise<Schedule[]> {
    const { rows } = await db.query<ScheduleRow>(
      'SELECT * FROM orch.schedules WHERE $1::text[] IS NULL OR tenant_id = ANY($1) ORDER BY tenant_id, name', [tenantIds ?? null]);
    return rows.map(toSchedule);
  }

  async get(db: Queryable, tenantId: string, name: string): Promise<Schedule> {
    const { rows } = await db.query<ScheduleRow>('SELECT * FROM orch.schedules WHERE tenant_id = $1 AND name = $2', [tenantId, name]);
    if (!rows[0]) throw new LedgerError('not_found', 'name', `no schedule named ${name} for tenant ${tenantId}`);
    return toSchedule(rows[0]);
  }
}

async function dbNow(db: Queryable): Promise<Date> {
  return (await db.query<{ now: Date }>('SELECT now()')).rows[0]!.now;
}

async function lockSchedule(db: Queryable, tenantId: string, name: string): Promise<ScheduleRow> {
  const { rows } = await db.query<ScheduleRow>('SELECT * FROM orch.schedules WHERE tenant_id = $1 AND name = $2 FOR UPDATE', [tenantId, name]);
  if (!rows[0]) throw new LedgerError('not_found', 'name', `no schedule named ${name} for tenant ${tenantId}`);
  return rows[0];
}

/** The first tick after now of a checked spec; a schedule that would never tick is refused. */
function firstTick(c: Checked, now: Date, createdAt: Date): Date {
  const next = nextTick({ cron: c.spec.cron, everyMs: c.spec.everyMs, timeZone: c.spec.timeZone, anchor: c.startsAt ?? createdAt, endsAt: c.endsAt }, now.getTime());
  if (next === null) throw new LedgerError('invalid', c.spec.cron !== null ? 'cron' : 'endsAt', 'this schedule would never tick (the expression matches no date, or it ends before its next tick)');
  return new Date(next);
}
