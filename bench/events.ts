/**
 * Events: the in-process drain while `orch serve` runs beside it (its own
 * process, as in production) with its outbox relay publishing to NATS
 * JetStream and a JetStream consumer (bench/event-consumer.ts, its own
 * process) reading every event, against the same
 * drain beside a server without NATS (the outbox rows are written either
 * way: they are part of every transition). Needs NATS with JetStream
 * (BENCH_NATS_URL, default nats://127.0.0.1:4222).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { defaultConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { paced, percentile } from './anchors/util.ts';
import { DRAIN_WORKER, JOB_TYPE, drainWith, prepareDrain, reset, withOrchServer } from './ours.ts';

const CONSUMER = fileURLToPath(new URL('./event-consumer.ts', import.meta.url));

export interface EventsResult {
  withoutRelayJobsPerSec: number;
  withRelayJobsPerSec: number;
  ratio: number;
  eventsConsumed: number;
  /** Events read by the consumer per second, from the drain's start until the last one. */
  eventsPerSec: number;
  /** Commit (the event's occurredAt) to the consumer's receipt, for the events the drain made (leased, succeeded). */
  lagP50Ms: number;
  lagP99Ms: number;
}

interface Consumed {
  consumed: number;
  /** Commit-to-receipt lags, ms, sorted. */
  lags: number[];
  /** From the start of `work` until the consumer read the last event. */
  seconds: number;
}

/**
 * Runs `work` while `orch serve` (its own process) relays its outbox to a
 * JetStream stream of its own (the bench runs on a NATS that other
 * deployments and streams also use) and a consumer (its own process) reads
 * `expected` events from it; `enqueuedLag`: whether job.enqueued events count
 * in the lags (not when they were committed before the work began).
 */
async function withRelayAndConsumer<T>(connectionString: string, natsUrl: string, expected: number, enqueuedLag: boolean, work: () => Promise<T>): Promise<T & Consumed> {
  const stream = `BENCH_${randomBytes(4).toString('hex')}`;
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  try {
    return await withOrchServer({ ORCH_DATABASE_URL: connectionString, ORCH_NATS_URL: natsUrl, ORCH_EVENTS_STREAM: stream, ORCH_EVENTS_SUBJECT_PREFIX: `${stream}.orch.events`, ORCH_EVENTS_MAX_BYTES: String(4 * 1024 ** 3) }, async () => {
      for (let i = 0; ; i++) {
        try {
          await jsm.streams.info(stream);
          break;
        } catch {
          if (i > 100) throw new Error('the server did not create its stream');
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const consumer = spawn(process.execPath, ['--import', 'tsx', CONSUMER, natsUrl, stream, String(expected), enqueuedLag ? 'all' : 'live'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      consumer.stdout.on('data', (d) => (out += d));
      while (!out.includes('ready\n')) {
        if (consumer.exitCode !== null) throw new Error('the event consumer exited before it was ready');
        await new Promise((r) => setTimeout(r, 20));
      }
      const finished = new Promise<void>((resolve) => consumer.once('exit', () => resolve()));
      const start = performance.now();
      const result = await work();
      await finished;
      const seconds = (performance.now() - start) / 1000;
      const { consumed, lags } = JSON.parse(out.slice(out.indexOf('ready\n') + 6)) as { consumed: number; lags: number[] };
      lags.sort((a, b) => a - b);
      return { ...result, consumed, lags, seconds };
    });
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}

const round = (x: number) => Math.round(x * 100) / 100;

export async function drainWithEvents(connectionString: string, jobs: number, natsUrl: string): Promise<EventsResult> {
  await prepareDrain(connectionString, jobs);
  const without = await withOrchServer({ ORCH_DATABASE_URL: connectionString }, () => drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1));
  await prepareDrain(connectionString, jobs);
  // enqueued (already waiting in the outbox) + leased + succeeded, for every job
  const r = await withRelayAndConsumer(connectionString, natsUrl, jobs * 3, false, () => drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1));
  return {
    withoutRelayJobsPerSec: without.jobsPerSec, withRelayJobsPerSec: r.jobsPerSec,
    ratio: round(r.jobsPerSec / without.jobsPerSec), eventsConsumed: r.consumed,
    eventsPerSec: Math.round(r.consumed / r.seconds), lagP50Ms: round(percentile(r.lags, 50)), lagP99Ms: round(percentile(r.lags, 99)),
  };
}

export interface SustainedLagResult { ratePerSec: number; seconds: number; jobs: number; eventsConsumed: number; lagP50Ms: number; lagP99Ms: number; lagMaxMs: number }

/**
 * The event lag under a steady load rather than a drain: jobs enqueued at
 * `ratePerSec` (batches of 1/100 s) for `durationSec` while a worker runs
 * them, so each job's enqueued, leased and succeeded events are made live;
 * the lag of every one, commit to the consumer's receipt.
 */
export async function sustainedEventLag(connectionString: string, natsUrl: string, ratePerSec: number, durationSec: number): Promise<SustainedLagResult> {
  await reset(connectionString);
  const pool = createPool(connectionString, 6);
  const ledger = new Ledger(pool, defaultConfig);
  await ledger.jobTypes.ensure([JOB_TYPE]);
  const batch = Math.max(1, Math.round(ratePerSec / 100));
  const total = Math.round(ratePerSec * durationSec / batch) * batch;
  let done = 0;
  let allDone!: () => void;
  const drained = new Promise<void>((r) => (allDone = r));
  const worker = await createWorker({
    connectionString, jobTypes: [JOB_TYPE], concurrency: 50, handleSignals: false, waitMs: 30_000,
    handler: () => {
      if (++done === total) allDone();
    },
  });
  try {
    const r = await withRelayAndConsumer(connectionString, natsUrl, total * 3, true, async () => {
      await paced(ratePerSec / batch, durationSec, () => ledger.enqueue(Array.from({ length: batch }, () => ({ tenantId: 'bench', jobType: JOB_TYPE, payload: {} }))));
      await drained;
      return {};
    });
    return {
      ratePerSec, seconds: durationSec, jobs: total, eventsConsumed: r.consumed,
      lagP50Ms: round(percentile(r.lags, 50)), lagP99Ms: round(percentile(r.lags, 99)), lagMaxMs: round(r.lags.at(-1) ?? Number.NaN),
    };
  } finally {
    await worker.stop();
    await pool.end();
  }
}
