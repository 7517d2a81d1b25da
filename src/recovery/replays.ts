import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { OperatorAction } from '../audit/audit-log.ts';
import { runOperatorAction } from '../audit/operator-action.ts';
import { LedgerError } from '../ledger/errors.ts';
import { inTransaction, type Ledger, type Tx } from '../ledger/ledger.ts';
import type { ReplayOutcome } from '../ledger/transitions/replay.ts';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';
import type { DeadLetters, DlqFilter } from './dead-letters.ts';
import type { Snapshots } from './snapshots.ts';

/** What to replay: given job ids (any replayable state), the DLQ entries matching a filter, or a snapshot's entries. */
export type ReplaySelection =
  | { jobIds: string[] }
  | { filter: DlqFilter }
  | { snapshotId: string };

export interface ReplayProgress {
  id: string;
  tenantId: string;
  selection: ReplaySelection;
  state: 'running' | 'done';
  total: number;
  /** Jobs worked through so far. */
  done: number;
  /** New jobs created. */
  created: number;
  /** Jobs worked through that made no new job (replayed before, not in a replayable state, or not found): done - created. */
  skipped: number;
  priority: number | null;
  actor: string;
  reason: string;
  createdAt: string;
  finishedAt: string | null;
}

/**
 * Replays of many jobs. A replay fixes its job ids when it is created, then
 * the replay runner works through them in batches; each batch creates its new
 * jobs and advances the replay's position in one transaction, so a replay cut
 * short by a crash resumes where it stopped, and the replay transition's
 * unique (tenant, replay_of) index makes each job's replay happen once.
 */
export class Replays {
  constructor(
    private readonly pool: pg.Pool,
    private readonly ledger: Ledger,
    private readonly deadLetters: DeadLetters,
    private readonly snapshots: Snapshots,
    private readonly config: { batchSize: number; maxJobs: number },
  ) {}

  /**
   * Starts a replay. One of at most `batchSize` jobs is worked in the same
   * transaction (so it is finished when this returns, and `outcomes` says
   * what happened to each job); larger ones are left to the replay runner.
   */
  async create(
    tenantId: string, selection: ReplaySelection, priority: number | null, op: OperatorAction,
  ): Promise<{ replay: ReplayProgress; outcomes: ReplayOutcome[] | null }> {
    const ids = await this.resolve(tenantId, selection);
    const id = randomUUID();
    return runOperatorAction<{ replay: ReplayProgress; outcomes: ReplayOutcome[] | null }>(this.pool, op, { action: 'dlq.replay', tenantId, target: `replay:${id}` }, async (tx) => {
      const { rows } = await tx.client.query<ReplayRow>(
        `INSERT INTO orch.dlq_replays (id, tenant_id, selection, job_ids, total, priority, actor, reason, state, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5 = 0 THEN 'done' ELSE 'running' END, CASE WHEN $5 = 0 THEN now() END)
         RETURNING ${REPLAY_COLUMNS}`,
        [id, tenantId, JSON.stringify(selection), ids, ids.length, priority, op.actor, op.reason]);
      const details = { selection, total: ids.length, priority };
      // A replay small enough is worked in this transaction: a runner can never take it from the request.
      if (ids.length === 0 || ids.length > this.config.batchSize) return { result: { replay: toProgress(rows[0]!), outcomes: null }, details };
      return { result: await this.work(tx, rows[0]!, ids), details };
    });
  }

  async get(tenantId: string, id: string): Promise<ReplayProgress> {
    const { rows } = await this.pool.query<ReplayRow>(`SELECT ${REPLAY_COLUMNS} FROM orch.dlq_replays WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    if (!rows[0]) throw new LedgerError('not_found', 'replayId', `replay ${id} not found`);
    return toProgress(rows[0]);
  }

  async list(tenantId: string, limit: number): Promise<ReplayProgress[]> {
    const { rows } = await this.pool.query<ReplayRow>(
      `SELECT ${REPLAY_COLUMNS} FROM orch.dlq_replays WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2`, [tenantId, limit]);
    return rows.map(toProgress);
  }

  /**
   * Works one batch of a running replay (`id`, or the oldest one no other
   * runner holds). Returns the batch's outcomes, or null when there was none.
   */
  async step(id?: string): Promise<{ replay: ReplayProgress; outcomes: ReplayOutcome[] } | null> {
    return inTransaction(this.pool, async (tx) => {
      const { rows } = await tx.client.query<ReplayRow & { batch: string[] }>(
        `SELECT ${REPLAY_COLUMNS}, job_ids[done + 1 : done + $2] AS batch FROM orch.dlq_replays
         WHERE state = 'running' AND ($1::uuid IS NULL OR id = $1) ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
        [id ?? null, this.config.batchSize]);
      if (!rows[0]) return null;
      return this.work(tx, rows[0], rows[0].batch);
    });
  }

  /** Replays `batch` (the next ids of replay `r`) and advances r's position, in the caller's transaction. */
  private async work(tx: Tx, r: ReplayRow, batch: string[]): Promise<{ replay: ReplayProgress; outcomes: ReplayOutcome[] }> {
    const outcomes = await this.ledger.replay(r.tenant_id, batch, { priority: r.priority, actor: r.actor, reason: r.reason, tx });
    const created = outcomes.filter((o) => o.status === 'replayed').length;
    const upd = await tx.client.query<ReplayRow>(
      `UPDATE orch.dlq_replays SET done = done + $2, created = created + $3, updated_at = now(),
         state = CASE WHEN done + $2 >= total THEN 'done' ELSE 'running' END,
         finished_at = CASE WHEN done + $2 >= total THEN now() END
       WHERE id = $1 RETURNING ${REPLAY_COLUMNS}`, [r.id, batch.length, created]);
    return { replay: toProgress(upd.rows[0]!), outcomes };
  }

  private async resolve(tenantId: string, selection: ReplaySelection): Promise<string[]> {
    let ids: string[];
    if ('jobIds' in selection) ids = [...new Set(selection.jobIds)].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
    else if ('snapshotId' in selection) ids = await this.snapshots.jobIds(tenantId, selection.snapshotId);
    else ids = await this.deadLetters.selectIds(tenantId, selection.filter, this.config.maxJobs);
    if (ids.length > this.config.maxJobs) {
      throw new LedgerError('invalid', 'filter', `the replay selects more than ${this.config.maxJobs} jobs (ORCH_DLQ_MAX_SELECTION); narrow it`);
    }
    return ids;
  }
}

/** Works through running replays, one batch per run, at once while any is left. Safe on every replica (rows are locked per batch). */
export class ReplayRunner extends PeriodicService {
  readonly name = 'replay-runner';

  constructor(private readonly replays: Replays, intervalMs: number, log: Logger) {
    super(intervalMs, log);
  }

  protected async runOnce(): Promise<RunResult> {
    const step = await this.replays.step();
    if (step?.replay.state === 'done') this.log.info({ replay: step.replay.id, created: step.replay.created, skipped: step.replay.skipped }, 'replay finished');
    return { count: step ? step.outcomes.length : 0, more: step !== null };
  }
}

const REPLAY_COLUMNS = 'id, tenant_id, selection, state, total, done, created, priority, actor, reason, created_at, finished_at';
interface ReplayRow {
  id: string; tenant_id: string; selection: ReplaySelection; state: 'running' | 'done'; total: number; done: number; created: number;
  priority: number | null; actor: string; reason: string; created_at: Date; finished_at: Date | null;
}
const toProgress = (r: ReplayRow): ReplayProgress => ({
  id: r.id, tenantId: r.tenant_id, selection: r.selection, state: r.state, total: r.total, done: r.done, created: r.created,
  skipped: r.done - r.created, priority: r.priority, actor: r.actor, reason: r.reason, createdAt: r.created_at.toISOString(),
  finishedAt: r.finished_at?.toISOString() ?? null,
});
