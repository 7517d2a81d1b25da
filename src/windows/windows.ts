import type { Queryable } from '../ledger/db.ts';
import { appendEvents } from '../events/envelope.ts';

/**
 * The windows of schedules and backfills (orch.windows): each is a span of
 * time one job covers. A window is `running` from the moment its job is
 * enqueued (in the same transaction) until the job ends; the settler then
 * records how it ended and moves watermarks. A backfill's window that ran
 * before starts `skipped` (it succeeded), `failed` (it failed; retry runs
 * it), `running` on the other window's job (it is running there), or
 * `covered` (another backfill has it pending and will run it). A watermark
 * is the end of the longest run of windows from the first that all
 * completed (succeeded, or skipped); it only moves forward.
 */
export const WINDOW_STATES = ['pending', 'running', 'succeeded', 'failed', 'canceled', 'skipped', 'covered'] as const;
export type WindowState = (typeof WINDOW_STATES)[number];

export type WindowCounts = Record<WindowState, number>;
export const emptyCounts = (): WindowCounts => Object.fromEntries(WINDOW_STATES.map((s) => [s, 0])) as WindowCounts;

/** Windows by state, per owner (a backfill's progress, its metric series). */
export async function windowCounts(db: Queryable, ownerIds: string[]): Promise<Map<string, WindowCounts>> {
  const out = new Map<string, WindowCounts>();
  if (ownerIds.length === 0) return out;
  const { rows } = await db.query<{ owner_id: string; state: WindowState; n: number }>(
    'SELECT owner_id, state, count(*)::int AS n FROM orch.windows WHERE owner_id = ANY($1::uuid[]) GROUP BY 1, 2', [ownerIds]);
  for (const r of rows) {
    let c = out.get(r.owner_id);
    if (!c) out.set(r.owner_id, (c = emptyCounts()));
    c[r.state] = r.n;
  }
  return out;
}

/** Job states a window's job does not leave: the window settles from them. */
const ENDED = `('succeeded', 'dead_lettered', 'canceled', 'timed_out', 'cleared')`;
/** Window states that count as done for a watermark. */
const COMPLETE = `('succeeded', 'skipped')`;

export interface SettledOwner { ownerId: string; settled: number }
export interface WatermarkMove { tenantId: string; jobType: string; watermark: string }

/** Records how windows whose job ended came out; returns the owners touched. */
export async function settleWindows(db: Queryable, limit: number): Promise<SettledOwner[]> {
  const { rows } = await db.query<{ owner_id: string; n: string }>(
    `WITH ended AS (
       SELECT w.owner_id, w.seq, j.state AS job_state
       FROM orch.windows w JOIN orch.jobs j ON j.tenant_id = w.tenant_id AND j.id = w.job_id
       WHERE w.state = 'running' AND j.state IN ${ENDED}
       ORDER BY w.owner_id, w.seq LIMIT $1
     ), settled AS (
       UPDATE orch.windows w SET settled_at = now(),
         state = CASE e.job_state WHEN 'succeeded' THEN 'succeeded' WHEN 'canceled' THEN 'canceled' ELSE 'failed' END
       FROM ended e WHERE w.owner_id = e.owner_id AND w.seq = e.seq
       RETURNING w.owner_id
     )
     SELECT owner_id, count(*) AS n FROM settled GROUP BY owner_id`, [limit]);
  return rows.map((r) => ({ ownerId: r.owner_id, settled: Number(r.n) }));
}

/**
 * Moves the watermarks of these owners (schedules and backfills) to the end
 * of their contiguous completed windows, then the watermark of each tenant
 * and job type to the furthest of its owners'; never backwards. Each move
 * of a tenant and job type's watermark is a `watermark.advanced` event.
 */
export async function advanceWatermarks(db: Queryable, ownerIds: string[]): Promise<WatermarkMove[]> {
  if (ownerIds.length === 0) return [];
  const { rows } = await db.query<{ tenant_id: string; job_type: string; watermark: Date; previous: Date | null }>(
    `WITH marks AS (
       SELECT o.owner_id, (
         SELECT max(w.ends_at) FROM orch.windows w
         WHERE w.owner_id = o.owner_id AND w.state IN ${COMPLETE}
           AND w.seq < coalesce((SELECT min(g.seq) FROM orch.windows g WHERE g.owner_id = o.owner_id AND g.state NOT IN ${COMPLETE}), 2147483647)
       ) AS mark
       FROM unnest($1::uuid[]) AS o(owner_id)
     ), b AS (
       UPDATE orch.backfills x SET watermark = m.mark, updated_at = now() FROM marks m
       WHERE x.id = m.owner_id AND m.mark > coalesce(x.watermark, '-infinity') RETURNING x.tenant_id, x.job_type, x.watermark
     ), s AS (
       UPDATE orch.schedules x SET watermark = m.mark FROM marks m
       WHERE x.id = m.owner_id AND m.mark > coalesce(x.watermark, '-infinity') RETURNING x.tenant_id, x.job_type, x.watermark
     ), moved AS (
       SELECT tenant_id, job_type, max(watermark) AS watermark FROM (SELECT * FROM b UNION ALL SELECT * FROM s) x GROUP BY 1, 2
     ), before AS (
       SELECT w.tenant_id, w.job_type, w.watermark FROM orch.watermarks w JOIN moved USING (tenant_id, job_type)
     ), up AS (
       INSERT INTO orch.watermarks AS w (tenant_id, job_type, watermark) SELECT tenant_id, job_type, watermark FROM moved
       ON CONFLICT (tenant_id, job_type) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = now()
       WHERE w.watermark < EXCLUDED.watermark
       RETURNING w.tenant_id, w.job_type, w.watermark
     )
     SELECT up.*, before.watermark AS previous FROM up LEFT JOIN before USING (tenant_id, job_type)`, [ownerIds]);
  const moves = rows.map((r) => ({ tenantId: r.tenant_id, jobType: r.job_type, watermark: r.watermark.toISOString(), previous: r.previous?.toISOString() ?? null }));
  await appendEvents(db, moves.map((m) => ({
    tenantId: m.tenantId, type: 'watermark.advanced' as const, at: new Date().toISOString(), actor: 'system:windows', target: `watermark:${m.jobType}`,
    data: { jobType: m.jobType, watermark: m.watermark, previous: m.previous },
  })));
  return moves;
}

/** The watermark of a tenant and job type, as an ISO time, or null when nothing has completed yet. */
export async function watermarkOf(db: Queryable, tenantId: string, jobType: string): Promise<string | null> {
  const { rows } = await db.query<{ watermark: Date }>('SELECT watermark FROM orch.watermarks WHERE tenant_id = $1 AND job_type = $2', [tenantId, jobType]);
  return rows[0]?.watermark.toISOString() ?? null;
}

export interface Watermark { tenantId: string; jobType: string; watermark: string; updatedAt: string }

/** Every watermark the reader may see (db is a tenant reader's connection, or the service's for metrics). */
export async function listWatermarks(db: Queryable, filter: { tenantId?: string; jobType?: string } = {}): Promise<Watermark[]> {
  const { rows } = await db.query<{ tenant_id: string; job_type: string; watermark: Date; updated_at: Date }>(
    `SELECT * FROM orch.watermarks WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR job_type = $2) ORDER BY tenant_id, job_type`,
    [filter.tenantId ?? null, filter.jobType ?? null]);
  return rows.map((r) => ({ tenantId: r.tenant_id, jobType: r.job_type, watermark: r.watermark.toISOString(), updatedAt: r.updated_at.toISOString() }));
}
