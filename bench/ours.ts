/**
 * Our side of the benchmark: the same four measurements the anchors make,
 * on the same PostgreSQL, through the public entry points (Ledger.enqueue,
 * createWorker in-process, createWorker over the HTTP bridge).
 */
import { fileURLToPath } from 'node:url';
import { defaultConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { QuotaKeeper } from '../src/flow/quota-keeper.ts';
import { Quotas } from '../src/flow/quotas.ts';
import { spawnOrchServer } from '../src/synthetic/server-process.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { DeltaRollup } from '../src/maintenance/delta-rollup.ts';
import { createLogger } from '../src/logging.ts';
import { migrate } from '../src/ledger/migrate.ts';
import { createWorker, type WorkerOptions } from '../src/sdk/worker.ts';
import type { DrainResult, EnqueueResult, LatencyResult } from './anchors/types.ts';
import { chunks, nowMs, paced, sentAt, settle, sleep, summarizeLatency, throughput, timeBatches, withClient } from './anchors/util.ts';

export const JOB_TYPE = 'bench_noop';
const CLI = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

/** Fresh ledger tables before each measurement, so dead tuples from one run don't slow the next. */
export async function reset(connectionString: string): Promise<void> {
  await withClient(connectionString, (c) => c.query('DROP SCHEMA IF EXISTS orch CASCADE'));
  const pool = createPool(connectionString, 2);
  await migrate(pool);
  await pool.end();
}

/** `jobs` no-op jobs spread evenly over `tenants` (tenant ids bench, or t0..t9), interleaved by tenant. */
async function preEnqueue(ledger: Ledger, jobs: number, tenants: string[] = ['bench']): Promise<void> {
  for (const [start, end] of chunks(jobs, 10_000)) {
    await ledger.enqueue(Array.from({ length: end - start }, (_, i) => ({
      tenantId: tenants[(start + i) % tenants.length]!, jobType: JOB_TYPE, payload: { i: start + i },
    })));
  }
}

/** Fresh ledger holding `jobs` queued no-op jobs; not timed. */
export async function prepareDrain(connectionString: string, jobs: number, tenants?: string[]): Promise<void> {
  await reset(connectionString);
  const pool = createPool(connectionString, 4);
  await preEnqueue(new Ledger(pool, defaultConfig), jobs, tenants);
  await pool.end();
  await settle(connectionString, 'orch');
}

/** Runs workers until `jobs` handlers have run and every ack is flushed (stop() flushes). */
export async function drainWith(jobs: number, opts: Omit<WorkerOptions, 'jobTypes' | 'handler'>, workers: number): Promise<DrainResult> {
  let done = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const start = performance.now();
  const started = await Promise.all(Array.from({ length: workers }, () => createWorker({
    ...opts, jobTypes: [JOB_TYPE], handleSignals: false,
    handler: () => {
      if (++done === jobs) finish();
    },
  })));
  await finished;
  await Promise.all(started.map((w) => w.stop()));
  return throughput(jobs, (performance.now() - start) / 1000);
}

export const DRAIN_WORKER = { concurrency: 50, prefetch: 1000, batchSize: 500, claimers: 2, ackers: 2, waitMs: 1000 };

/** The in-process drain; `peakRssMb` is this process's resident memory at its highest during it (worker and its pools). */
export async function drainInProcess(connectionString: string, jobs: number): Promise<DrainResult & { peakRssMb: number }> {
  await prepareDrain(connectionString, jobs);
  return withPeakRss(() => drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1));
}

async function withPeakRss<T extends object>(fn: () => Promise<T>): Promise<T & { peakRssMb: number }> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 100);
  try {
    const r = await fn();
    return { ...r, peakRssMb: Math.round(Math.max(peak, process.memoryUsage.rss()) / 1e6) };
  } finally {
    clearInterval(timer);
  }
}

/**
 * The in-process drain of `jobs` with `finished` succeeded jobs already in
 * the ledger (written by one INSERT, as months of work would have left them,
 * older than the queued ones), against the same drain on an empty ledger.
 */
export async function drainAged(connectionString: string, jobs: number, finished: number): Promise<{ empty: DrainResult; aged: DrainResult; ratio: number }> {
  // both drains the same way (drainInProcess would add its memory sampling to one of them)
  await prepareDrain(connectionString, jobs);
  const empty = await drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1);
  await reset(connectionString);
  const pool = createPool(connectionString, 4);
  const ledger = new Ledger(pool, defaultConfig);
  await ledger.jobTypes.ensure([JOB_TYPE]);
  await ledger.tenants.ensure(['bench']);
  for (const [start, end] of chunks(finished, 250_000)) {
    await pool.query(
      `INSERT INTO orch.jobs (tenant_id, job_type, payload, state, attempt, max_attempts, acked, result, started_at, finished_at, created_at, updated_at)
       SELECT 'bench', $1, jsonb_build_object('i', g), 'succeeded', 1, 3, 'succeeded', 'null', now() - interval '1 day', now() - interval '1 day',
              now() - interval '1 day', now() - interval '1 day'
       FROM generate_series($2::bigint, $3::bigint - 1) g`, [JOB_TYPE, start, end]);
  }
  await pool.query('VACUUM ANALYZE orch.jobs');
  await preEnqueue(ledger, jobs);
  await pool.end();
  await settle(connectionString, 'orch');
  const aged = await drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1);
  return { empty, aged, ratio: Math.round((aged.jobsPerSec / empty.jobsPerSec) * 100) / 100 };
}

/** Runs `fn` while `orch serve` runs as its own process (as in production) with `env`, ready to serve. */
export async function withOrchServer<T>(env: Record<string, string>, fn: (apiUrl: string) => Promise<T>): Promise<T> {
  const server = await spawnOrchServer(['--import', 'tsx', CLI], { ...process.env, ...env, ORCH_LOG_LEVEL: 'warn' }, 60_000);
  try {
    return await fn(server.url);
  } finally {
    await server.stop();
  }
}

/** The server runs as its own process (as it would in production), the worker in this one. */
export async function drainRemote(connectionString: string, jobs: number): Promise<DrainResult> {
  await prepareDrain(connectionString, jobs);
  return withOrchServer({ ORCH_DATABASE_URL: connectionString }, (apiUrl) => drainWith(jobs, { ...DRAIN_WORKER, apiUrl, tenant: 'bench' }, 1));
}

/**
 * Remote workers through `replicas` servers (each its own process, one
 * worker each): what more replicas buy when the database is the limit.
 */
export async function drainReplicas(connectionString: string, jobs: number, replicas: number): Promise<DrainResult> {
  await prepareDrain(connectionString, jobs);
  const servers = await Promise.all(Array.from({ length: replicas }, () =>
    spawnOrchServer(['--import', 'tsx', CLI], { ...process.env, ORCH_DATABASE_URL: connectionString, ORCH_LOG_LEVEL: 'warn' }, 60_000)));
  try {
    let done = 0;
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const start = performance.now();
    const workers = await Promise.all(servers.map((s) => createWorker({
      ...DRAIN_WORKER, apiUrl: s.url, tenant: 'bench', jobTypes: [JOB_TYPE], handleSignals: false,
      handler: () => {
        if (++done === jobs) finish();
      },
    })));
    await finished;
    await Promise.all(workers.map((w) => w.stop()));
    return throughput(jobs, (performance.now() - start) / 1000);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

const TENANTS = Array.from({ length: 10 }, (_, i) => `t${i}`);

/**
 * Ten tenants compete for one job type; with `controls`, every tenant has a
 * concurrency cap and a token bucket and the type has a shared cap, all
 * generous enough not to bind, so the figure is the cost of enforcing them
 * (quota rows locked, spent and written back in every claim, slots given
 * back in every ack) on top of the fair round-robin claim.
 */
export async function drainTenants(connectionString: string, jobs: number, controls: boolean): Promise<DrainResult> {
  await prepareDrain(connectionString, jobs, TENANTS);
  if (controls) {
    const pool = createPool(connectionString, 2);
    const quotas = new Quotas(pool, new Ledger(pool, defaultConfig).tenants);
    const op = { actor: 'bench', reason: 'bench', ticket: 'BENCH' };
    for (const t of TENANTS) await quotas.set(t, JOB_TYPE, { maxActive: 2_000, ratePerSecond: 1_000_000, burst: 1_000_000 }, op);
    await quotas.set('*', JOB_TYPE, { maxActive: 20_000 }, op);
    await pool.end();
  }
  return withServerLoops(connectionString, () => drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1));
}

/** Runs `fn` with the background loops `orch serve` runs beside workers (queue-count rollup, quota keeper). */
async function withServerLoops<T>(connectionString: string, fn: () => Promise<T>): Promise<T> {
  const pool = createPool(connectionString, 2);
  const ledger = new Ledger(pool, defaultConfig);
  const log = createLogger('silent');
  const loops = [
    new DeltaRollup([ledger.counts], defaultConfig.maintenance.queueCountRollupIntervalMs, log),
    new QuotaKeeper(new Quotas(pool, ledger.tenants), defaultConfig.maintenance.quotaKeeperIntervalMs, log),
  ];
  loops.forEach((l) => l.start());
  try {
    return await fn();
  } finally {
    await Promise.all(loops.map((l) => l.stop()));
    await pool.end();
  }
}

/**
 * Fairness: tenant A has `jobs` queued and workers drain them at full speed
 * while tenant B submits one job every 100 ms; B's enqueue-to-start latency.
 */
export async function fairness(connectionString: string, jobs: number): Promise<LatencyResult & { drainJobsPerSec: number }> {
  await prepareDrain(connectionString, jobs, ['tenant-a']);
  return withServerLoops(connectionString, async () => {
    const pool = createPool(connectionString, 4);
    const ledger = new Ledger(pool, defaultConfig);
    // The producer's first enqueue for a new tenant registers it and prepares statements: not part of the figure.
    await ledger.enqueue([{ tenantId: 'tenant-b', jobType: JOB_TYPE, payload: { warmup: true } }]);
    const samples: number[] = [];
    let drained = 0;
    let drainSeconds = 0;
    const start = performance.now();
    const worker = await createWorker({
      ...DRAIN_WORKER, connectionString, jobTypes: [JOB_TYPE], handleSignals: false,
      handler: (job) => {
        const t = sentAt(job.payload);
        if (t !== undefined) samples.push(nowMs() - t);
        else if (job.tenantId === 'tenant-a' && ++drained === jobs) drainSeconds = (performance.now() - start) / 1000;
      },
    });
    // Tenant B starts once A's drain is at full speed (connections open, statements prepared, code warm).
    while (drained < jobs / 20) await sleep(5);
    let sent = 0;
    while (drained < jobs) {
      await sleep(100);
      await ledger.enqueue([{ tenantId: 'tenant-b', jobType: JOB_TYPE, payload: { t: nowMs() } }]);
      sent++;
    }
    while (samples.length < sent) await sleep(5);
    await worker.stop();
    await pool.end();
    return { ...summarizeLatency(10, samples), drainJobsPerSec: Math.round(jobs / drainSeconds) };
  });
}

export async function batchEnqueue(connectionString: string, jobs: number, batchSize: number): Promise<EnqueueResult> {
  await reset(connectionString);
  const pool = createPool(connectionString, 4);
  const ledger = new Ledger(pool, defaultConfig);
  await ledger.jobTypes.ensure([JOB_TYPE]);
  const result = await timeBatches(
    jobs, batchSize,
    (s, e) => Array.from({ length: e - s }, (_, i) => ({ tenantId: 'bench', jobType: JOB_TYPE, payload: { i: s + i } })),
    () => settle(connectionString, 'orch'),
    (batch) => ledger.enqueue(batch),
  );
  await pool.end();
  return result;
}

/** Idle in-process workers; jobs enqueued one at a time at a fixed rate; enqueue-to-handler-start latency. */
export async function dispatchLatency(connectionString: string, ratePerSec: number, durationSec: number): Promise<LatencyResult> {
  await reset(connectionString);
  const pool = createPool(connectionString, 10);
  const ledger = new Ledger(pool, defaultConfig);
  await ledger.jobTypes.ensure([JOB_TYPE]);
  const samples: number[] = [];
  const worker = await createWorker({
    connectionString, jobTypes: [JOB_TYPE], concurrency: 20, handleSignals: false, waitMs: 30_000,
    handler: (job) => {
      const t = sentAt(job.payload);
      if (t !== undefined) samples.push(nowMs() - t);
    },
  });
  // Untimed warm-up, as the anchors do: connections opened, statements prepared, code JIT-compiled.
  await paced(ratePerSec, 0.5, () => ledger.enqueue([{ tenantId: 'bench', jobType: JOB_TYPE, payload: {} }]));
  await new Promise((r) => setTimeout(r, 300));
  const total = await paced(ratePerSec, durationSec, () => ledger.enqueue([{ tenantId: 'bench', jobType: JOB_TYPE, payload: { t: nowMs() } }]));
  while (samples.length < total) await new Promise((r) => setTimeout(r, 10));
  await worker.stop();
  await pool.end();
  return summarizeLatency(ratePerSec, samples);
}
