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
import { percentile } from './anchors/util.ts';
import { DRAIN_WORKER, drainWith, prepareDrain, withOrchServer } from './ours.ts';

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

export async function drainWithEvents(connectionString: string, jobs: number, natsUrl: string): Promise<EventsResult> {
  await prepareDrain(connectionString, jobs);
  const without = await withOrchServer({ ORCH_DATABASE_URL: connectionString }, () => drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1));

  await prepareDrain(connectionString, jobs);
  // a stream and subject prefix of its own: the bench runs on a NATS that other deployments and streams also use
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
      // enqueued (already waiting in the outbox) + leased + succeeded, for every job
      const expected = jobs * 3;
      const consumer = spawn(process.execPath, ['--import', 'tsx', CONSUMER, natsUrl, stream, String(expected)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      consumer.stdout.on('data', (d) => (out += d));
      while (!out.includes('ready\n')) {
        if (consumer.exitCode !== null) throw new Error('the event consumer exited before it was ready');
        await new Promise((r) => setTimeout(r, 20));
      }
      const finished = new Promise<void>((resolve) => consumer.once('exit', () => resolve()));
      const start = performance.now();
      const withRelay = await drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1);
      await finished;
      const seconds = (performance.now() - start) / 1000;
      const { consumed, lags } = JSON.parse(out.slice(out.indexOf('ready\n') + 6)) as { consumed: number; lags: number[] };
      lags.sort((a, b) => a - b);
      const round = (x: number) => Math.round(x * 100) / 100;
      return {
        withoutRelayJobsPerSec: without.jobsPerSec, withRelayJobsPerSec: withRelay.jobsPerSec,
        ratio: round(withRelay.jobsPerSec / without.jobsPerSec), eventsConsumed: consumed,
        eventsPerSec: Math.round(consumed / seconds), lagP50Ms: round(percentile(lags, 50)), lagP99Ms: round(percentile(lags, 99)),
      };
    });
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}
