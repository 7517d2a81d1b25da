import { appendEvents } from '../events/envelope.ts';
import { inTransaction, type Ledger } from '../ledger/ledger.ts';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';
import { renderTemplate } from '../windows/template.ts';
import { advanceWatermarks, settleWindows, watermarkOf } from '../windows/windows.ts';
import { windowCounts, windowValues } from './backfills.ts';

/** Windows settled per run; a backlog is worked off by runs that follow at once. */
const SETTLE_BATCH = 5000;
/** Running backfills looked at per run, oldest first. */
const BACKFILL_BATCH = 20;

/**
 * The leader-only service that moves windows along (docs/schedules.md):
 * 1. settles every window (of backfills and schedules) whose job ended, and
 *    moves the watermarks;
 * 2. launches the next windows of each running backfill, in order, up to its
 *    concurrency: each window's job (idempotency key
 *    `backfill:<id>:<window>[:run<n>]`) is enqueued in the transaction that
 *    marks the window running, so a crash never loses or doubles one;
 * 3. marks a backfill with no window left to run done;
 * and publishes a `backfill.progress` event for each backfill that changed.
 */
export class BackfillRunner extends PeriodicService {
  readonly name = 'backfill-runner';

  constructor(private readonly ledger: Ledger, intervalMs: number, log: Logger) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const changed = new Set<string>();
    const settled = await inTransaction(this.ledger.pool, async ({ client }) => {
      const owners = await settleWindows(client, SETTLE_BATCH);
      await advanceWatermarks(client, owners.map((o) => o.ownerId));
      return owners;
    });
    for (const o of settled) changed.add(o.ownerId);
    const { rows } = await this.ledger.pool.query<{ id: string }>(
      `SELECT id FROM orch.backfills WHERE state = 'running' ORDER BY created_at LIMIT $1`, [BACKFILL_BATCH]);
    let launched = 0;
    for (const { id } of rows) {
      const n = await this.launch(id);
      if (n !== null) {
        changed.add(id);
        launched += n;
      }
    }
    await this.progress([...changed]);
    const settledCount = settled.reduce((sum, o) => sum + o.settled, 0);
    return { count: settledCount + launched, more: settledCount >= SETTLE_BATCH };
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

  /** One backfill.progress event per backfill that changed (settled, launched, finished), with its counts. */
  private async progress(ownerIds: string[]): Promise<void> {
    if (ownerIds.length === 0) return;
    await inTransaction(this.ledger.pool, async ({ client }) => {
      const { rows } = await client.query<{ id: string; tenant_id: string; job_type: string; state: string; windows: number; watermark: Date | null }>(
        'SELECT id, tenant_id, job_type, state, windows, watermark FROM orch.backfills WHERE id = ANY($1::uuid[])', [ownerIds]);
      const counts = await windowCounts(client, rows.map((r) => r.id));
      const at = new Date().toISOString();
      await appendEvents(client, rows.map((r) => ({
        tenantId: r.tenant_id, type: 'backfill.progress' as const, at, actor: 'system:backfill-runner', target: `backfill:${r.id}`,
        data: { backfillId: r.id, jobType: r.job_type, state: r.state, windows: r.windows, watermark: r.watermark?.toISOString() ?? null, ...counts.get(r.id) },
      })));
    });
  }
}
