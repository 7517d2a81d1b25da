/**
 * Events: the in-process drain with the outbox relay publishing to NATS
 * JetStream and a JetStream consumer reading every event, against the same
 * drain with no relay (the outbox rows are written either way: they are part
 * of every transition). Needs NATS with JetStream (BENCH_NATS_URL, default
 * nats://127.0.0.1:4222).
 */
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { defaultConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { EventBus } from '../src/events/bus.ts';
import { OutboxRelay } from '../src/events/relay.ts';
import { createLogger } from '../src/logging.ts';
import { percentile } from './anchors/util.ts';
import { DRAIN_WORKER, drainWith, prepareDrain } from './ours.ts';

export interface EventsResult {
  withoutRelayJobsPerSec: number;
  withRelayJobsPerSec: number;
  ratio: number;
  eventsPublished: number;
  eventsConsumed: number;
  /** Events published per second, from the drain's start until the consumer had read the last one. */
  eventsPerSec: number;
  lagP50Ms: number;
  lagP99Ms: number;
}

export async function drainWithEvents(connectionString: string, jobs: number, natsUrl: string): Promise<EventsResult> {
  await prepareDrain(connectionString, jobs);
  const without = await drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1);

  await prepareDrain(connectionString, jobs);
  const stream = `BENCH_${randomBytes(4).toString('hex')}`;
  const log = createLogger('silent');
  const bus = new EventBus(natsUrl, { ...defaultConfig.events, name: stream, maxBytes: 4 * 1024 ** 3 }, log);
  bus.start();
  while (!bus.connected) await new Promise((r) => setTimeout(r, 50));
  const pool = createPool(connectionString, 4);
  let published = 0;
  const lags: number[] = [];
  const relay = new OutboxRelay(pool, bus, defaultConfig.events.relayBatchRows, defaultConfig.maintenance.outboxRelayIntervalMs, log, {
    onPublished: (events, lagsMs) => {
      published += events.length;
      lags.push(...lagsMs);
    },
    onPending: () => undefined,
  });
  const nc = await connect({ servers: natsUrl });
  const consumer = await jetstream(nc).consumers.get(stream);
  // enqueue (already in the outbox from prepareDrain) + leased + succeeded for every job
  const expected = jobs * 3;
  let consumed = 0;
  const messages = await consumer.consume({ max_messages: 10_000 });
  const allRead = (async () => {
    for await (const _ of messages) if (++consumed === expected) break;
  })();
  const start = performance.now();
  relay.start();
  try {
    const withRelay = await drainWith(jobs, { ...DRAIN_WORKER, connectionString }, 1);
    await allRead;
    const seconds = (performance.now() - start) / 1000;
    lags.sort((a, b) => a - b);
    const round = (x: number) => Math.round(x * 100) / 100;
    return {
      withoutRelayJobsPerSec: without.jobsPerSec, withRelayJobsPerSec: withRelay.jobsPerSec,
      ratio: round(withRelay.jobsPerSec / without.jobsPerSec), eventsPublished: published, eventsConsumed: consumed,
      eventsPerSec: Math.round(consumed / seconds), lagP50Ms: round(percentile(lags, 0.5)), lagP99Ms: round(percentile(lags, 0.99)),
    };
  } finally {
    await relay.stop();
    await messages.close();
    await (await jetstreamManager(nc)).streams.delete(stream);
    await nc.close();
    await bus.close();
    await pool.end();
  }
}
