import { appendEvents } from '../events/envelope.ts';
import type { Queryable } from '../ledger/db.ts';
import { inTransaction, type Ledger } from '../ledger/ledger.ts';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';
import { renderTemplate } from '../windows/template.ts';
import { advanceWatermarks, settleWindows, watermarkOf, windowCounts } from '../windows/windows.ts';
import { windowValues } from './backfills.ts';

/** Windows settled per run; a backlog is worked off by runs that follow at once. */
const SETTLE_BATCH = 5000;
/** Running backfills looked at per run, oldest first. */
const BACKFILL_BATCH = 20;

/**
 * The leader-only service that moves windows along (docs/schedules.md):
 * 1. settles every window (of backfills and schedules) whose job ended;
 * 2. launches the next windows of each running backfill, in order, up to its
 *    concurrency: each window's job (idempotency key
 *    `backfill:<id>:<window>[:run<n>]`) is enqueued in the transaction that
 *    marks the window running, so a crash never loses or doubles one;
 * 3. marks a backfill with no window left to run done;
 * then moves the watermarks of every schedule and backfill that changed, and
 * publishes a `backfill.progress` event for each backfill among them.
 */
export class BackfillRunner extends PeriodicService {
  readonly name = 'backfill-runner';
  /** Backfills whose launch failed: logged once until they launch again. */
  private readonly failing = new Set<string>();

  constructor(private readonly ledger: Ledger, intervalMs: number, log: Logger) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    // No transaction when no window runs: an open transaction anywhere on the server holds back every
    // reader of the outbox (the relay, SSE), so an idle runner opens none.
    const { rows: [busy] } = await this.ledger.pool.query<{ running: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM orch.windows WHERE state = 'running') AS running`);
    // a window's end and the watermark it moves commit together
    const settled = !busy!.running ? [] : await inTransaction(this.ledger.pool, async ({ client }) => {
      const owners = await settleWindows(client, SETTLE_BATCH);
      await this.record(client, owners.map((o) => o.ownerId));
      return owners;
    });
    const changed = new Set<string>();
    // only backfills with something to do: a window to start and room for it, or nothing left (done);
    // one saturated by its concurrency never holds the others back
    const { rows } = await this.ledger.pool.query<{ id: string }>(
      `SELECT b.id FROM orch.backfills b
       WHERE b.state = 'running' AND (
         EXISTS (SELECT 1 FROM orch.windows w WHERE w.owner_id = b.id AND w.state = 'pending')
           AND (SELECT count(*) FROM orch.windows w WHERE w.owner_id = b.id AND w.state = 'running') < b.concurrency
         OR NOT EXISTS (SELECT 1 FROM orch.windows w WHERE w.owner_id = b.id AND w.state IN ('pending', 'running')))
       ORDER BY b.created_at LIMIT $1`, [BACKFILL_BATCH]);
    let launched = 0;
    for (const { id } of rows) {
      try {
        const n = await this.launch(id);
        if (n !== null) {
          changed.add(id);
          launched += n;
        }
        if (this.failing.delete(id)) this.log.info({ backfill: id }, 'backfill launches windows again');
      } catch (err) {
        // backpressure on its tenant, say: the others go on, and it is tried again next run
        if (!this.failing.has(id)) this.log.warn({ err, backfill: id }, 'a backfill could not start its next windows; it is tried again');
        this.failing.add(id);
      }
    }
    // a backfill done with windows skipped (they ran before) has a watermark to move too
    if (changed.size > 0) await inTransaction(this.ledger.pool, ({ client }) => this.record(client, [...changed]));
    const settledCount = settled.reduce((sum, o) => sum + o.settled, 0);
    // a full page of backfills that launched nothing (their tenants at their backpressure limit) waits for the interval
    return { count: settledCount + launched, more: settledCount >= SETTLE_BATCH || (rows.length === BACKFILL_BATCH && launched > 0) };
  }

  /** Starts the backfill's next windows up to its concurrency; null when nothing changed. */
  private launch(id: string): Promise<number | null> {
    return inTransaction(this.ledger.pool, async (tx) => {
      const { rows: [b] } = await tx.client.query<{ tenant_id: string; job_type: string; payload: unknown; priority: number; concurrency: number; now: Date }>(
        `SELECT tenant_id, job_type, payload, priority, concurrency, now() AS now FROM orch.backfills WHERE id = $1 AND state = 'running' FOR UPDATE SKIP LOCKED`, [id]);
      if (!b) return null;
      const running = (await tx.client.query<{ running: number }>(
        `SELECT count(*)::int AS running FROM orch.windows WHERE owner_id = $1 AND state = 'running'`, [id])).rows[0]!.running;
      const { rows: pending } = await tx.client.query<{ seq: number; starts_at: Date; ends_at: Date; runs: number }>(
        `SELECT seq, starts_at, ends_at, runs FROM orch.windows WHERE owner_id = $1 AND state = 'pending' ORDER BY seq LIMIT $2`,
        [id, Math.max(0, b.concurrency - running)]);
      if (pending.length === 0) {
        if (running > 0) return null;
        // nothing left to start or to wait for: the backfill is done
        await tx.client.query(`UPDATE orch.backfills SET state = 'done', finished_at = now(), updated_at = now() WHERE id = $1`, [id]);
        return 0;
      }
      const watermark = await watermarkOf(tx.client, b.tenant_id, b.job_type);
      const jobs = await this.ledger.enqueue(pending.map((w) => ({
        tenantId: b.tenant_id, jobType: b.job_type, priority: b.priority,
        payload: renderTemplate(b.payload, windowValues(id, { seq: w.seq, starts: w.starts_at, ends: w.ends_at }, watermark, b.now)),
        idempotencyKey: `backfill:${id}:${w.seq}${w.runs > 0 ? `:run${w.runs + 1}` : ''}`,
      })), { tx, actor: 'system:backfill-runner', cause: 'backfilled', reason: `backfill ${id}` });
      await tx.client.query(
        `UPDATE orch.windows w SET state = 'running', job_id = x.job_id, runs = w.runs + 1
         FROM unnest($2::int[], $3::bigint[]) AS x(seq, job_id) WHERE w.owner_id = $1 AND w.seq = x.seq`,
        [id, pending.map((w) => w.seq), jobs.map((j) => j.id)]);
      return jobs.length;
    });
  }

  /** Moves the watermarks of these schedules and backfills, and writes a backfill.progress event with the counts of each backfill among them. */
  private async record(client: Queryable, ownerIds: string[]): Promise<void> {
    if (ownerIds.length === 0) return;
    await advanceWatermarks(client, ownerIds);
    const { rows } = await client.query<{ id: string; tenant_id: string; job_type: string; state: string; windows: number; watermark: Date | null }>(
      'SELECT id, tenant_id, job_type, state, windows, watermark FROM orch.backfills WHERE id = ANY($1::uuid[])', [ownerIds]);
    const counts = await windowCounts(client, rows.map((r) => r.id));
    const at = new Date().toISOString();
    await appendEvents(client, rows.map((r) => ({
      tenantId: r.tenant_id, type: 'backfill.progress' as const, at, actor: 'system:backfill-runner', target: `backfill:${r.id}`,
      data: { backfillId: r.id, jobType: r.job_type, state: r.state, windows: r.windows, watermark: r.watermark?.toISOString() ?? null, ...counts.get(r.id) },
    })));
  }
}
