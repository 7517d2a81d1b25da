import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { AuditedBy, OperatorAction } from '../audit/audit-log.ts';
import { runOperatorAction } from '../audit/operator-action.ts';
import { LedgerError } from '../ledger/errors.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { DeadLetters, DlqFilter } from './dead-letters.ts';

/**
 * Jobs rendered per query while writing a snapshot. Large, because each
 * history batch row (a claim or ack of thousands of jobs) is unnested once
 * per chunk.
 */
const RENDER_CHUNK = 10_000;
/** Jobs cleared per statement (each its own transaction: an interrupted clear is finished by running it again). */
const CLEAR_CHUNK = 10_000;

export interface SnapshotManifest {
  id: string;
  tenantId: string;
  filter: DlqFilter & { jobIds?: string[] };
  entries: number;
  bytes: number;
  /** sha256 (hex) of the NDJSON file. */
  sha256: string;
  actor: string;
  createdAt: string;
}

export interface ClearResult {
  snapshotId: string;
  /** Entries removed from the DLQ now. */
  cleared: number;
  /** Entries of the snapshot that were no longer in the DLQ (cleared before). */
  alreadyGone: number;
  /** Job ids asked for that the snapshot does not hold: left in the DLQ. */
  notInSnapshot: string[];
}

/**
 * DLQ snapshots: NDJSON of dead letters (job, payload, last error, history)
 * plus a manifest. A snapshot stores the ids it holds and the file's sha256;
 * the file is rendered again for every download, from fields that cannot
 * change once a job is dead-lettered (the clear transition is left out of the
 * history), so a download always matches the manifest. Clearing the DLQ
 * requires a snapshot holding the entries.
 */
export class Snapshots {
  constructor(private readonly pool: pg.Pool, private readonly ledger: Ledger, private readonly deadLetters: DeadLetters, private readonly maxEntries: number) {}

  /** Takes a snapshot, with its audit entry (a snapshot is what allows a clear; it needs no reason). */
  async create(tenantId: string, filter: DlqFilter & { jobIds?: string[] }, by: AuditedBy): Promise<SnapshotManifest> {
    const ids = await this.deadLetters.selectIds(tenantId, filter, this.maxEntries);
    if (ids.length > this.maxEntries) {
      throw new LedgerError('invalid', 'filter', `the filter selects more than ${this.maxEntries} entries (ORCH_DLQ_MAX_SELECTION); narrow it`);
    }
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of this.render(tenantId, ids)) {
      hash.update(chunk);
      bytes += Buffer.byteLength(chunk);
    }
    const id = randomUUID();
    const sha256 = hash.digest('hex');
    return runOperatorAction(this.pool, by, { action: 'dlq.snapshot', tenantId, target: `snapshot:${id}` }, async (tx) => {
      const { rows } = await tx.client.query<SnapshotRow>(
        `INSERT INTO orch.dlq_snapshots (id, tenant_id, filter, job_ids, entries, bytes, sha256, actor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${SNAPSHOT_COLUMNS}`,
        [id, tenantId, JSON.stringify(filter), ids, ids.length, bytes, sha256, by.actor]);
      return { result: toManifest(rows[0]!), details: { entries: ids.length, sha256 } };
    });
  }

  async get(tenantId: string, id: string): Promise<SnapshotManifest> {
    const { rows } = await this.pool.query<SnapshotRow>(`SELECT ${SNAPSHOT_COLUMNS} FROM orch.dlq_snapshots WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    if (!rows[0]) throw new LedgerError('not_found', 'snapshotId', `snapshot ${id} not found`);
    return toManifest(rows[0]);
  }

  async list(tenantId: string, limit: number): Promise<SnapshotManifest[]> {
    const { rows } = await this.pool.query<SnapshotRow>(
      `SELECT ${SNAPSHOT_COLUMNS} FROM orch.dlq_snapshots WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2`, [tenantId, limit]);
    return rows.map(toManifest);
  }

  /** The job ids a snapshot holds, ascending. */
  async jobIds(tenantId: string, id: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ job_ids: string[] }>('SELECT job_ids FROM orch.dlq_snapshots WHERE id = $1 AND tenant_id = $2', [id, tenantId]);
    if (!rows[0]) throw new LedgerError('not_found', 'snapshotId', `snapshot ${id} not found`);
    return rows[0].job_ids;
  }

  /** The snapshot's NDJSON file, in chunks. */
  async *download(tenantId: string, id: string): AsyncGenerator<string> {
    yield* this.render(tenantId, await this.jobIds(tenantId, id));
  }

  /**
   * Removes from the DLQ the entries the snapshot holds (all of them, or
   * those of `jobIds` it holds); everything else stays. Recorded in the
   * audit log and, per job, in its history.
   */
  async clear(tenantId: string, snapshotId: string, jobIds: string[] | undefined, op: OperatorAction): Promise<ClearResult> {
    const held = await this.jobIds(tenantId, snapshotId);
    let ids = held;
    let notInSnapshot: string[] = [];
    if (jobIds !== undefined) {
      const inSnapshot = new Set(held);
      ids = [...new Set(jobIds)].filter((j) => inSnapshot.has(j));
      notInSnapshot = jobIds.filter((j) => !inSnapshot.has(j));
    }
    return runOperatorAction(this.pool, op, { action: 'dlq.clear', tenantId, target: `snapshot:${snapshotId}` }, async (tx) => {
      let cleared = 0;
      for (let i = 0; i < ids.length; i += CLEAR_CHUNK) {
        cleared += await this.ledger.clear(tenantId, ids.slice(i, i + CLEAR_CHUNK), op.actor, op.reason, tx);
      }
      const result = { snapshotId, cleared, alreadyGone: ids.length - cleared, notInSnapshot };
      return { result, details: { cleared, alreadyGone: result.alreadyGone, notInSnapshot: notInSnapshot.length } };
    });
  }

  /** The NDJSON of `ids`, a chunk at a time; the next chunk is read while the current one is rendered and sent. */
  private async *render(tenantId: string, ids: string[]): AsyncGenerator<string> {
    let next = ids.length > 0 ? this.readChunk(tenantId, ids.slice(0, RENDER_CHUNK)) : null;
    for (let i = 0; next; i += RENDER_CHUNK) {
      const { jobs, history } = await next;
      next = i + RENDER_CHUNK < ids.length ? this.readChunk(tenantId, ids.slice(i + RENDER_CHUNK, i + 2 * RENDER_CHUNK)) : null;
      const byJob = new Map<string, HistoryRenderRow[]>();
      for (const h of history) {
        let list = byJob.get(h.job_id);
        if (!list) byJob.set(h.job_id, (list = []));
        list.push(h);
      }
      let out = '';
      for (const j of jobs) out += renderEntry(j, (byJob.get(j.id) ?? []).sort((a, b) => a.n - b.n)) + '\n';
      yield out;
    }
  }

  /** Timestamps come as epoch milliseconds and JSON as its text: parsing them only to print them again would cost most of the time. */
  private async readChunk(tenantId: string, chunk: string[]): Promise<{ jobs: RenderRow[]; history: HistoryRenderRow[] }> {
    const [jobs, history] = await Promise.all([
      this.pool.query<RenderRow>(
        `SELECT id, job_type, priority, attempt, max_attempts, payload::text AS payload, idempotency_key, correlation_id, replay_of,
           ${epochMs('created_at')} AS created_at, ${epochMs('finished_at')} AS finished_at, last_error::text AS last_error
         FROM orch.jobs WHERE tenant_id = $1 AND id = ANY($2::bigint[]) ORDER BY id`, [tenantId, chunk]),
      // Each history batch is unnested once for the whole chunk (claims and acks batch many jobs into one row).
      this.pool.query<HistoryRenderRow>(
        `WITH js AS (SELECT id, history FROM orch.jobs WHERE tenant_id = $1 AND id = ANY($2::bigint[])),
         batches AS (SELECT DISTINCT unnest(history) AS batch_id FROM js)
         SELECT e.job_id, ${epochMs('t.at')} AS at, e.from_state, e.to_state, e.attempt, e.lease_id, t.actor, t.cause, t.reason,
           e.error::text AS error, array_position(js.history, t.batch_id) AS n
         FROM batches b JOIN orch.job_transitions t ON t.batch_id = b.batch_id AND t.tenant_id = $1
         CROSS JOIN LATERAL unnest(t.job_ids, t.from_states, t.to_states, t.attempts, t.lease_ids, t.errors)
           AS e(job_id, from_state, to_state, attempt, lease_id, error)
         JOIN js ON js.id = e.job_id
         WHERE e.from_state IS DISTINCT FROM 'dead_lettered'`, [tenantId, chunk]),
    ]);
    return { jobs: jobs.rows, history: history.rows };
  }
}

interface RenderRow {
  id: string; job_type: string; priority: number; attempt: number; max_attempts: number; payload: string;
  idempotency_key: string | null; correlation_id: string | null; replay_of: string | null; created_at: number; finished_at: number | null;
  last_error: string | null;
}
interface HistoryRenderRow {
  job_id: string; at: number; from_state: string | null; to_state: string; attempt: number; lease_id: string | null;
  actor: string; cause: string; reason: string | null; error: string | null; n: number;
}

const epochMs = (col: string) => `(extract(epoch FROM ${col}) * 1000)::float8`;
const iso = (ms: number | null) => (ms === null ? 'null' : `"${new Date(ms).toISOString()}"`);
const str = (s: string | null) => (s === null ? 'null' : JSON.stringify(s));

/**
 * One NDJSON line, written out by hand: keys in a fixed order, JSON values as
 * PostgreSQL prints them (jsonb prints canonically), and only fields that
 * never change once a job is dead-lettered (the clear entry is left out of
 * the history), so the same entries always give the same bytes.
 */
function renderEntry(j: RenderRow, history: HistoryRenderRow[]): string {
  let h = '';
  for (const e of history) {
    h += `${h ? ',' : ''}{"at":${iso(e.at)},"from":${str(e.from_state)},"to":"${e.to_state}","attempt":${e.attempt},"leaseId":${str(e.lease_id)},`
      + `"actor":${str(e.actor)},"cause":${str(e.cause)},"reason":${str(e.reason)},"error":${e.error ?? 'null'}}`;
  }
  return `{"id":"${j.id}","jobType":"${j.job_type}","priority":${j.priority},"attempt":${j.attempt},"maxAttempts":${j.max_attempts},`
    + `"idempotencyKey":${str(j.idempotency_key)},"correlationId":${str(j.correlation_id)},"replayOf":${str(j.replay_of)},`
    + `"createdAt":${iso(j.created_at)},"deadLetteredAt":${iso(j.finished_at)},"lastError":${j.last_error ?? 'null'},"payload":${j.payload},`
    + `"history":[${h}]}`;
}

const SNAPSHOT_COLUMNS = 'id, tenant_id, filter, entries, bytes, sha256, actor, created_at';
interface SnapshotRow {
  id: string; tenant_id: string; filter: SnapshotManifest['filter']; entries: number; bytes: string; sha256: string; actor: string; created_at: Date;
}
const toManifest = (r: SnapshotRow): SnapshotManifest => ({
  id: r.id, tenantId: r.tenant_id, filter: r.filter, entries: r.entries, bytes: Number(r.bytes), sha256: r.sha256, actor: r.actor,
  createdAt: r.created_at.toISOString(),
});
