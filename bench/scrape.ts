/**
 * A Prometheus scrape of /metrics with a large ledger: the ledger gauges
 * (queue depth by state, DLQ depth, oldest waiting age, leases, workers,
 * boosts) must come from the queue counts and index probes, never from
 * counting the job table, so the scrape stays fast at any size. The anchors
 * expose no metrics endpoint to compare with; the target is < 100 ms at
 * 1,000,000 jobs.
 */
import { defaultConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { chunks, nowMs, settle, timeCalls } from './anchors/util.ts';
import { reset } from './ours.ts';

export const TENANTS = ['acme', 'globex', 'initech'];
const TYPES = ['mail', 'pdf', 'sync', 'billing'];

export interface ScrapeResult { jobs: number; bytes: number; p50Ms: number; p99Ms: number; maxMs: number; scrapes: number }

/**
 * `n` jobs over three tenants, four types and three priority levels, through
 * the real transitions: a tenth run to success, a twentieth dead-letter, a
 * few hundred stay leased, the rest wait. Returns the seconds it took.
 */
export async function seedAtScale(connectionString: string, n: number): Promise<number> {
  await reset(connectionString);
  const pool = createPool(connectionString, 8);
  const ledger = new Ledger(pool, { ...defaultConfig, maxQueuedPerTenant: 0 });
  const t0 = nowMs();
  try {
    for (const [start, end] of chunks(n, 10_000)) {
      const jobs = Array.from({ length: end - start }, (_, i) => {
        const k = start + i;
        return { tenantId: TENANTS[k % TENANTS.length]!, jobType: TYPES[(k >> 2) % TYPES.length]!, payload: { k }, priority: (k % 3) * 10, maxAttempts: 1 };
      });
      await ledger.enqueue(jobs);
    }
    // claims take the highest priority first: complete a tenth, fail a twentieth, keep some leases
    const toFinish = Math.floor(n / 10);
    const toFail = Math.floor(n / 20);
    for (let done = 0; done < toFinish + toFail;) {
      const leases = await ledger.claim({ workerId: 'bench-scrape', jobTypes: TYPES, limit: Math.min(5000, toFinish + toFail - done) });
      if (leases.length === 0) break;
      const succeed = leases.filter((_, i) => done + i < toFinish);
      const fail = leases.filter((_, i) => done + i >= toFinish);
      await ledger.complete(succeed.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId })), 'worker:bench-scrape');
      await ledger.fail(fail.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId, error: { class: 'Timeout', message: 'bench', retryable: false } })), 'worker:bench-scrape');
      done += leases.length;
    }
    await ledger.claim({ workerId: 'bench-scrape-holder', jobTypes: TYPES, limit: 300 });
    await ledger.counts.rollup();
  } finally {
    await pool.end();
  }
  const seedSeconds = Math.round((nowMs() - t0) / 1000);
  await settle(connectionString, 'orch');
  return seedSeconds;
}

/** `scrapes` GETs of /metrics on a server over a ledger seeded by seedAtScale. */
export async function scrapeAtScale(apiUrl: string, n: number, scrapes = 50): Promise<ScrapeResult> {
  let bytes = 0;
  const t = await timeCalls(scrapes, async () => {
    const res = await fetch(`${apiUrl}/metrics`);
    const text = await res.text();
    if (!res.ok || !text.includes('orchestrator_queue_oldest_age_seconds{')) throw new Error(`scrape ${res.status} without the ledger gauges`);
    bytes = text.length;
  });
  return { jobs: n, bytes, ...t, scrapes };
}
