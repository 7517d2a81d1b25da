import type { Queryable } from '../ledger/db.ts';
import { emptyCounts, listWatermarks, windowCounts, type Watermark } from './windows.ts';

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
    db.query<{ tenant_id: string; id: string }>(
      `SELECT tenant_id, id FROM orch.backfills WHERE state IN ('running', 'paused') OR updated_at > now() - interval '1 hour'`),
  ]);
  const counts = await windowCounts(db, backfills.rows.map((r) => r.id));
  return {
    schedules: schedules.rows.map((r) => ({ tenantId: r.tenant_id, schedule: r.name, missedTicks: Number(r.missed_ticks) })),
    watermarks,
    backfills: backfills.rows.map((r) => ({ tenantId: r.tenant_id, backfillId: r.id, windows: counts.get(r.id) ?? emptyCounts() })),
  };
}
