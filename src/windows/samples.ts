import type { Queryable } from '../ledger/db.ts';
import { listWatermarks, type Watermark } from './windows.ts';

/** What the schedule, watermark and backfill series of /metrics are made from. */
export interface WindowSamples {
  schedules: { tenantId: string; schedule: string; missedTicks: number }[];
  watermarks: Watermark[];
  backfills: { tenantId: string; backfillId: string; windows: Record<string, number> }[];
}

/**
 * Read before a scrape: the schedules and watermarks tables (one row per
 * schedule, per tenant and job type) and the windows of backfills that run,
 * wait, or ended within the hour; never the job table.
 */
export async function windowSamples(db: Queryable): Promise<WindowSamples> {
  const [schedules, watermarks, backfills] = await Promise.all([
    db.query<{ tenant_id: string; name: string; missed_ticks: string }>('SELECT tenant_id, name, missed_ticks FROM orch.schedules'),
    listWatermarks(db),
    db.query<{ tenant_id: string; id: string; windows: Record<string, number> }>(
      `SELECT b.tenant_id, b.id, (SELECT jsonb_object_agg(state, n) FROM (
         SELECT s.state, count(w.seq) AS n FROM unnest(ARRAY['pending', 'running', 'succeeded', 'failed', 'canceled', 'skipped', 'covered']) AS s(state)
         LEFT JOIN orch.windows w ON w.owner_id = b.id AND w.state = s.state GROUP BY s.state) c) AS windows
       FROM orch.backfills b WHERE b.state IN ('running', 'paused') OR b.finished_at > now() - interval '1 hour' OR b.updated_at > now() - interval '1 hour'`),
  ]);
  return {
    schedules: schedules.rows.map((r) => ({ tenantId: r.tenant_id, schedule: r.name, missedTicks: Number(r.missed_ticks) })),
    watermarks,
    backfills: backfills.rows.map((r) => ({ tenantId: r.tenant_id, backfillId: r.id, windows: r.windows })),
  };
}
