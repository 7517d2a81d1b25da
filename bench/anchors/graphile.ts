/**
 * graphile-worker 0.18 anchor, in its fastest documented configuration
 * (https://worker.graphile.org/docs/performance): a local queue that locks jobs in batches,
 * batched completion/failure, and addJobs for bulk enqueue.
 */
import { Logger, makeWorkerUtils, run, runMigrations } from 'graphile-worker';
import type { AddJobsJobSpec, Runner, RunnerOptions, Task, WorkerUtils } from 'graphile-worker';
import type { DrainResult, EnqueueResult, LatencyResult } from './types.ts';
import { chunks, nowMs, paced, sentAt, settle, summarizeLatency, throughput, timeBatches, waitUntil, withClient, withTimeout } from './util.ts';

export type { DrainResult, EnqueueResult, LatencyResult } from './types.ts';

/** graphile-worker's default schema; dropped and re-migrated before every measurement. */
const SCHEMA = 'graphile_worker';
const TASK = 'bench_noop';

// The performance page's own config (concurrentJobs 24, maxPoolSize 25, localQueue 500). On the
// 2-core box, concurrency 4..24 and localQueue 500..5000 measured within noise of it once the
// tables are ANALYZEd (see settle()); concurrency 48 or localQueue 200 were slower.
const CONCURRENT_JOBS = 24;
const MAX_POOL_SIZE = 25;
const LOCAL_QUEUE_SIZE = 500;
const PRE_ENQUEUE_BATCH = 10_000;
const PRODUCER_POOL_SIZE = 10;

/** Only errors are printed: per-job INFO lines would dominate a no-op benchmark. */
const logger = new Logger(() => (level, message) => {
  if (level === 'error') console.error(`[graphile-worker] ${message}`);
});

/** Removes everything this anchor created, so other engines are measured on a clean database. */
async function dropSchema(connectionString: string): Promise<void> {
  await withClient(connectionString, (client) => client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`));
}

/** Fresh schema before each measurement, so no dead tuples, sequences or locks carry over. */
async function reset(connectionString: string): Promise<void> {
  await dropSchema(connectionString);
  await runMigrations({ connectionString, schema: SCHEMA, logger });
}

async function pendingJobs(utils: WorkerUtils): Promise<number> {
  return utils.withPgClient(async (client) => {
    const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${SCHEMA}._private_jobs`);
    return Number(rows[0]?.n ?? 0);
  });
}

/** Starts a worker pool with the fastest config; `handler` is the only task. */
async function startWorkers(connectionString: string, handler: Task): Promise<{ runner: Runner; listening: Promise<void> }> {
  const options: RunnerOptions = {
    connectionString,
    schema: SCHEMA,
    logger,
    noHandleSignals: true,
    taskList: { [TASK]: handler },
    parsedCronItems: [],
    preset: {
      worker: {
        concurrentJobs: CONCURRENT_JOBS,
        maxPoolSize: MAX_POOL_SIZE,
        localQueue: { size: LOCAL_QUEUE_SIZE },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      },
    },
  };
  const runner = await run(options);
  // LISTEN is set up asynchronously after run() resolves; latency runs must wait for it.
  const listening = new Promise<void>((resolve) => runner.events.once('pool:listen:success', () => resolve()));
  return { runner, listening };
}

async function withUtils<T>(connectionString: string, fn: (utils: WorkerUtils) => Promise<T>): Promise<T> {
  const utils = await makeWorkerUtils({ connectionString, schema: SCHEMA, logger, maxPoolSize: PRODUCER_POOL_SIZE });
  try {
    return await fn(utils);
  } finally {
    await utils.release();
  }
}

function specs(start: number, end: number): AddJobsJobSpec[] {
  const out: AddJobsJobSpec[] = [];
  for (let i = start; i < end; i++) out.push({ identifier: TASK, payload: { i } });
  return out;
}

/**
 * Pre-enqueues `jobs` no-op jobs (untimed), then times from starting the worker pool until every
 * job row is gone (graphile deletes a job on completion, so an empty table means all completed).
 */
export async function drain(connectionString: string, jobs: number): Promise<DrainResult> {
  await reset(connectionString);
  return withUtils(connectionString, async (utils) => {
    for (const [start, end] of chunks(jobs, PRE_ENQUEUE_BATCH)) await utils.addJobs(specs(start, end));
    await settle(connectionString, SCHEMA);

    let handled = 0;
    const started = performance.now();
    const { runner } = await startWorkers(connectionString, () => {
      handled++;
    });
    try {
      const timeoutMs = 60_000 + jobs; // generous: ~1 ms per job on top of a minute
      await waitUntil(() => handled >= jobs, timeoutMs, () => `graphile drain handlers (${handled}/${jobs})`);
      // Completions are batched; the last batch is committed only a moment after its handlers ran.
      await waitUntil(async () => (await pendingJobs(utils)) === 0, 30_000, 'graphile drain completions');
      const seconds = (performance.now() - started) / 1000;
      return throughput(jobs, seconds);
    } finally {
      await runner.stop();
      await dropSchema(connectionString);
    }
  });
}

/** Inserts `jobs` jobs with WorkerUtils.addJobs, `batchSize` per call, one call at a time. */
export async function batchEnqueue(connectionString: string, jobs: number, batchSize: number): Promise<EnqueueResult> {
  await reset(connectionString);
  try {
    return await withUtils(connectionString, (utils) =>
      timeBatches(jobs, batchSize, specs, () => settle(connectionString, SCHEMA), (batch) => utils.addJobs(batch)));
  } finally {
    await dropSchema(connectionString);
  }
}

/**
 * With an idle, already-listening worker pool, adds one job at a time (WorkerUtils.addJob, its own
 * pool, like a separate producer) at `ratePerSec` for `durationSec`, and records the time from just
 * before the add call to the start of the handler.
 */
export async function dispatchLatency(
  connectionString: string,
  ratePerSec: number,
  durationSec: number,
): Promise<LatencyResult> {
  await reset(connectionString);
  const samples: number[] = [];
  let warmups = 0;
  const { runner, listening } = await startWorkers(connectionString, (payload) => {
    const t = sentAt(payload);
    if (t === undefined) warmups++;
    else samples.push(nowMs() - t);
  });
  try {
    await withTimeout(listening, 10_000, 'graphile LISTEN');
    return await withUtils(connectionString, async (utils) => {
      // Untimed warm-up: open every producer connection (and prepare its statements) up front;
      // otherwise the first second at 500/s pays for connection setup and builds a backlog.
      await Promise.all(Array.from({ length: PRODUCER_POOL_SIZE }, () => utils.addJob(TASK, { warmup: true })));
      await waitUntil(() => warmups >= PRODUCER_POOL_SIZE, 10_000, 'graphile latency warm-up');

      const total = await paced(ratePerSec, durationSec, () => utils.addJob(TASK, { t: nowMs() }));
      await waitUntil(() => samples.length >= total, 30_000, () => `graphile latency jobs (${samples.length}/${total})`);
      return summarizeLatency(ratePerSec, samples);
    });
  } finally {
    await runner.stop();
    await dropSchema(connectionString);
  }
}
