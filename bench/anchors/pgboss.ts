/**
 * pg-boss 12 anchor, in its fastest configuration: batch fetch and batch ack through work() with a
 * batchSize (one fetch statement claims the batch, one complete statement acks it), continuous
 * re-fetching while batches come back full, LISTEN/NOTIFY wake-ups for idle workers, insert(array)
 * for bulk enqueue, and every background timer it lets us turn off turned off.
 */
import { PgBoss } from 'pg-boss';
import type { ConstructorOptions, WorkOptions } from 'pg-boss';
import type { DrainResult, EnqueueResult, LatencyResult } from './types.ts';
import { chunks, nowMs, paced, sentAt, settle, summarizeLatency, throughput, timeBatches, waitUntil, withClient } from './util.ts';

export type { DrainResult, EnqueueResult, LatencyResult } from './types.ts';

const SCHEMA = 'pgboss_bench';
const QUEUE = 'bench_noop';

// Tuned on the 2-core bench box: 4 concurrent fetch/ack loops of 500 keep both cores busy.
// Batches of 250 or 2 loops were slower; 1000 per batch or a partitioned queue were within noise.
const BATCH_SIZE = 500;
const LOCAL_CONCURRENCY = 4;
const POOL_MAX = 10;
const PRE_ENQUEUE_BATCH = 10_000;

const WORK_OPTIONS: WorkOptions = {
  batchSize: BATCH_SIZE,
  localConcurrency: LOCAL_CONCURRENCY,
  // Keep fetching with no delay while each fetch returns a full batch (the drain case).
  burstWhenBatchFull: true,
  // 0.5 s is the minimum pg-boss accepts; with NOTIFY on it is only a backstop anyway.
  pollingIntervalSeconds: 0.5,
  notifyPollingIntervalSeconds: 0.5,
};

// One loop for the latency run: every NOTIFY wakes every loop, and at 500/s extra loops' empty
// fetches competed with the useful ones (measured p50 ~25 ms with 1 loop, 30 ms to seconds with 2-4).
const LATENCY_WORK_OPTIONS: WorkOptions = { ...WORK_OPTIONS, localConcurrency: 1 };

function options(connectionString: string): ConstructorOptions {
  return {
    connectionString,
    schema: SCHEMA,
    max: POOL_MAX,
    // Wait for a pooled connection as long as it takes (node-postgres' default, which graphile-worker
    // keeps): under overload the latency run should report the queueing, not die after pg-boss's 10 s.
    connectionTimeoutMillis: 0,
    application_name: 'bench-anchor-pgboss',
    // No maintenance, monitoring, cron, instance heartbeats or telemetry competing with the benchmark.
    supervise: false,
    schedule: false,
    registerInstance: false,
    persistWarnings: false,
    monitorVacuum: false,
    reindex: false,
    openTelemetry: { enabled: false },
    // Wakes idle workers on insert instead of waiting out the polling interval (latency benchmark).
    useListenNotify: true,
  };
}

/** Removes everything this anchor created, so other engines are measured on a clean database. */
async function dropSchema(connectionString: string): Promise<void> {
  await withClient(connectionString, (client) => client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`));
}

/** Fresh schema and queue before each measurement; returns a started instance. */
async function freshBoss(connectionString: string): Promise<PgBoss> {
  await dropSchema(connectionString);
  const boss = new PgBoss(options(connectionString));
  // pg-boss emits 'error' for background failures; an unhandled 'error' event would crash the process.
  boss.on('error', (err) => console.error('[pg-boss]', err));
  await boss.start();
  await boss.createQueue(QUEUE, { notify: true });
  return boss;
}

async function unfinishedJobs(boss: PgBoss): Promise<number> {
  const { rows } = await boss
    .getDb()
    .executeSql(`SELECT count(*)::int AS n FROM ${SCHEMA}.job WHERE name = $1 AND state < 'completed'`, [QUEUE]);
  const first: unknown = rows[0];
  return typeof first === 'object' && first !== null && 'n' in first ? Number(first.n) : Number.NaN;
}

function inserts(start: number, end: number): { data: { i: number } }[] {
  const out: { data: { i: number } }[] = [];
  for (let i = start; i < end; i++) out.push({ data: { i } });
  return out;
}

/**
 * Pre-enqueues `jobs` no-op jobs (untimed), then times from registering the workers until every
 * job is in state `completed` (the batch ack commits after the handler returns, so handler counts
 * alone would stop the clock early).
 */
export async function drain(connectionString: string, jobs: number): Promise<DrainResult> {
  const boss = await freshBoss(connectionString);
  try {
    for (const [start, end] of chunks(jobs, PRE_ENQUEUE_BATCH)) await boss.insert(QUEUE, inserts(start, end));
    await settle(connectionString, SCHEMA);

    let handled = 0;
    const started = performance.now();
    await boss.work(QUEUE, WORK_OPTIONS, async (batch) => {
      handled += batch.length;
    });
    const timeoutMs = 60_000 + jobs; // generous: ~1 ms per job on top of a minute
    await waitUntil(() => handled >= jobs, timeoutMs, () => `pg-boss drain handlers (${handled}/${jobs})`);
    await waitUntil(async () => (await unfinishedJobs(boss)) === 0, 30_000, 'pg-boss drain completions');
    return throughput(jobs, (performance.now() - started) / 1000);
  } finally {
    await boss.stop({ graceful: true });
    await dropSchema(connectionString);
  }
}

/** Inserts `jobs` jobs with insert(array), `batchSize` per call, one call at a time. */
export async function batchEnqueue(connectionString: string, jobs: number, batchSize: number): Promise<EnqueueResult> {
  const boss = await freshBoss(connectionString);
  try {
    return await timeBatches(jobs, batchSize, inserts, () => settle(connectionString, SCHEMA), (batch) => boss.insert(QUEUE, batch));
  } finally {
    await boss.stop({ graceful: true });
    await dropSchema(connectionString);
  }
}

/**
 * With idle workers already registered and LISTENing, sends one job at a time (send(), from a
 * second pg-boss instance with its own pool, like a separate producer) at `ratePerSec` for
 * `durationSec`, and records the time from just before the send call to the start of the handler.
 */
export async function dispatchLatency(
  connectionString: string,
  ratePerSec: number,
  durationSec: number,
): Promise<LatencyResult> {
  const boss = await freshBoss(connectionString);
  // Separate pool for the producer: sharing one made fetches and acks queue behind a send backlog.
  const producer = new PgBoss({ ...options(connectionString), useListenNotify: false, migrate: false });
  producer.on('error', (err) => console.error('[pg-boss producer]', err));
  try {
    await producer.start();
    const samples: number[] = [];
    let warmups = 0;
    await boss.work(QUEUE, LATENCY_WORK_OPTIONS, async (batch) => {
      const startedAt = nowMs();
      for (const job of batch) {
        const t = sentAt(job.data);
        if (t === undefined) warmups++;
        else samples.push(startedAt - t);
      }
    });
    // Untimed warm-up: open every producer connection up front; otherwise the first second at
    // 500/s pays for connection setup and builds a backlog.
    await Promise.all(Array.from({ length: POOL_MAX }, () => producer.send(QUEUE, { warmup: true })));
    await waitUntil(() => warmups >= POOL_MAX, 10_000, 'pg-boss latency warm-up');

    const total = await paced(ratePerSec, durationSec, () => producer.send(QUEUE, { t: nowMs() }));
    await waitUntil(() => samples.length >= total, 30_000, () => `pg-boss latency jobs (${samples.length}/${total})`);
    return summarizeLatency(ratePerSec, samples);
  } finally {
    await producer.stop({ graceful: true });
    await boss.stop({ graceful: true });
    await dropSchema(connectionString);
  }
}
