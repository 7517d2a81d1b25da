/**
 * A JetStream consumer in its own process, as consumers run in production
 * (bench/events.ts): reads `expected` events from `stream`, then prints one
 * JSON line with the count and the commit-to-receipt lags of the events the
 * work made. argv: natsUrl stream expected all|live (live: job.enqueued events,
 * committed before the work began, are left out of the lags)
 */
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';

const [natsUrl, stream, expectedArg, which] = process.argv.slice(2);
const expected = Number(expectedArg);
const nc = await connect({ servers: natsUrl! });
const messages = await (await jetstream(nc).consumers.get(stream!)).consume({ max_messages: 10_000 });
process.stdout.write('ready\n');
const lags: number[] = [];
let consumed = 0;
for await (const m of messages) {
  const e = m.json<{ occurredAt: string; eventType: string }>();
  if (which === 'all' || e.eventType !== 'job.enqueued') lags.push(Date.now() - Date.parse(e.occurredAt));
  if (++consumed === expected) break;
}
await messages.close();
await nc.close();
process.stdout.write(JSON.stringify({ consumed, lags }) + '\n');
