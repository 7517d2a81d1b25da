import { appendEvents } from '../events/envelope.ts';
import { inTransaction, type Ledger } from '../ledger/ledger.ts';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';
import { renderTemplate } from '../windows/template.ts';
import { watermarkOf } from '../windows/windows.ts';
import { ticksUpTo } from './cron.ts';
import { recurrenceOf, tickValues, type ScheduleRow } from './schedules.ts';

/** Due schedules handled per run; more wait for the next run, which follows at once. */
const BATCH = 50;
/** Late ticks remembered per schedule while counting how many passed (catch-up `all` keeps at most catchUpMax of them). */
const KEEP_ON_TIME = 1000;

export interface TickObserver {
  /** Ticks that enqueued a job, with how late (database clock) each fired. */
  onTicks(ticks: { tenantId: string; schedule: string; lagMs: number }[]): void;
}

/**
 * Fires the ticks of due schedules: the leader-only service of
 * docs/schedules.md. Each schedule is one transaction: lock its row (SKIP
 * LOCKED), read the database clock, enqueue one job per tick that fires
 * (idempotency key `schedule:<id>:<tick>`), record each tick's window, move
 * `next_tick_at` past now and count the ticks missed. A crash before the
 * commit leaves the schedule due, after it leaves the tick done: no tick is
 * lost or doubled, whatever replica fires it next.
 *
 * A tick up to `graceMs` late (a busy database, a leader failover) always
 * fires. Older ticks were missed while no server ran; the catch-up policy
 * says which of them still fire: `skip` none, `latest` the most recent
 * one, `all` the most recent `catchUpMax`. The rest count as missed.
 */
export class Scheduler extends PeriodicService {
  readonly name = 'scheduler';
  /** Schedules whose last tick failed (backpressure, an outage): logged once until they fire again. */
  private readonly failing = new Set<string>();

  constructor(
    private readonly ledger: Ledger,
    private readonly observer: TickObserver,
    private readonly graceMs: number,
    intervalMs: number,
    log: Logger,
  ) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const { rows } = await this.ledger.pool.query<{ id: string }>(
      'SELECT id FROM orch.schedules WHERE enabled AND next_tick_at <= now() ORDER BY next_tick_at LIMIT $1', [BATCH]);
    let fired = 0;
    for (const { id } of rows) {
      try {
        fired += await this.fire(id);
        if (this.failing.delete(id)) this.log.info({ schedule: id }, 'schedule ticks again');
      } catch (err) {
        if (!this.failing.has(id)) this.log.warn({ err, schedule: id }, 'a schedule could not tick; it stays due and is tried again');
        this.failing.add(id);
      }
    }
    // wake up for the next tick if it falls due before the next scan: ticks fire on time, not up to an interval late
    const { rows: [soonest] } = await this.ledger.pool.query<{ ms: number | null }>(
      `SELECT (extract(epoch FROM min(next_tick_at) - now()) * 1000)::float8 AS ms FROM orch.schedules WHERE enabled AND next_tick_at IS NOT NULL`);
    // (one still due now is one that failed: it waits for the interval like any retry, not a busy loop)
    const ms = soonest?.ms ?? null;
    return { count: fired, more: rows.length === BATCH && fired > 0, ...(ms !== null && ms > 0 ? { nextInMs: Math.ceil(ms) } : {}) };
  }

  /** Fires one schedule's due ticks in one transaction; returns how many enqueued a job. */
  private async fire(id: string): Promise<number> {
    const lags: { tenantId: string; schedule: string; lagMs: number }[] = [];
    const fired = await inTransaction(this.ledger.pool, async (tx) => {
      const { rows } = await tx.client.query<ScheduleRow & { now: Date }>(
        'SELECT *, now() AS now FROM orch.schedules WHERE id = $1 AND enabled AND next_tick_at <= now() FOR UPDATE SKIP LOCKED', [id]);
      const s = rows[0];
      if (!s) return 0;
      const now = s.now.getTime();
      const r = recurrenceOf(s);
      const { ticks, total, next } = ticksUpTo(r, s.next_tick_at!.getTime(), now, s.catch_up_max + KEEP_ON_TIME);
      const onTime = ticks.filter((t) => now - t <= this.graceMs);
      const late = ticks.slice(0, ticks.length - onTime.length);
      const lateFiring = s.catch_up === 'skip' ? [] : s.catch_up === 'latest' ? late.slice(-1) : late.slice(-s.catch_up_max);
      const firing = [...lateFiring, ...onTime];
      const missed = total - firing.length;
      const watermark = await watermarkOf(tx.client, s.tenant_id, s.job_type);
      let lastTick = s.last_tick_at;
      const inputs = firing.map((t, i) => {
        const tick = new Date(t);
        const values = tickValues({ name: s.name, startsAt: s.starts_at, createdAt: s.created_at, lastTickAt: lastTick }, tick, Number(s.ticks) + i, watermark, s.now);
        const windowStart = lastTick ?? s.starts_at ?? s.created_at;
        lastTick = tick;
        return {
          window: { starts: windowStart, ends: tick },
          job: {
            tenantId: s.tenant_id, jobType: s.job_type, payload: renderTemplate(s.payload, values), priority: s.priority,
            maxAttempts: s.max_attempts ?? undefined, idempotencyKey: `schedule:${s.id}:${tick.toISOString()}`,
          },
        };
      });
      const jobs = inputs.length > 0
        ? await this.ledger.enqueue(inputs.map((i) => i.job), { tx, actor: 'system:scheduler', cause: 'scheduled', reason: `schedule ${s.name}` })
        : [];
      if (jobs.length > 0) {
        await tx.client.query(
          `INSERT INTO orch.windows (owner_id, seq, tenant_id, job_type, starts_at, ends_at, state, job_id, runs)
           SELECT $1, $2 + n - 1, $3, $4, s, e, 'running', j, 1 FROM unnest($5::timestamptz[], $6::timestamptz[], $7::bigint[]) WITH ORDINALITY AS x(s, e, j, n)
           ON CONFLICT (owner_id, seq) DO NOTHING`,
          [s.id, Number(s.ticks), s.tenant_id, s.job_type, inputs.map((i) => i.window.starts), inputs.map((i) => i.window.ends), jobs.map((j) => j.id)]);
      }
      await tx.client.query(
        `UPDATE orch.schedules SET next_tick_at = $2, last_tick_at = $3, last_job_id = coalesce($4, last_job_id),
           ticks = ticks + $5, missed_ticks = missed_ticks + $6 WHERE id = $1`,
        [s.id, next === null ? null : new Date(next), lastTick, jobs.at(-1)?.id ?? null, jobs.length, missed]);
      const at = s.now.toISOString();
      await appendEvents(tx.client, firing.map((t, i) => ({
        tenantId: s.tenant_id, type: 'schedule.ticked' as const, at, actor: 'system:scheduler', target: `schedule:${s.name}`,
        jobId: jobs[i]!.id, jobType: s.job_type, attempt: 0, status: jobs[i]!.state,
        data: { schedule: s.name, scheduleId: s.id, tick: new Date(t).toISOString(), lagMs: now - t, ...(i === 0 && missed > 0 ? { missedTicks: missed } : {}) },
      })));
      if (missed > 0) this.log.warn({ schedule: s.name, tenant: s.tenant_id, missed, catchUp: s.catch_up }, 'schedule missed ticks (no server ran them in time)');
      for (const t of firing) lags.push({ tenantId: s.tenant_id, schedule: s.name, lagMs: now - t });
      return jobs.length;
    });
    if (lags.length > 0) this.observer.onTicks(lags);
    return fired;
  }
}
