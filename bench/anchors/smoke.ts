/**
 * Runs every anchor function once and prints the results.
 *
 *   node --import tsx bench/anchors/smoke.ts          # small sizes (seconds)
 *   node --import tsx bench/anchors/smoke.ts --full   # the real bench sizes (a few minutes)
 *   ... smoke.ts --only=graphile|pgboss               # one anchor
 *
 * Database: ORCH_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test.
 */
import * as graphile from './graphile.ts';
import * as pgboss from './pgboss.ts';
import type { Anchor } from './types.ts';
import { DEFAULT_DATABASE_URL } from './util.ts';

const full = process.argv.includes('--full');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const url = process.env.ORCH_BENCH_DATABASE_URL ?? DEFAULT_DATABASE_URL;

const sizes = full
  ? { drain: 100_000, enqueue: 100_000, batch: 1_000, rates: [100, 500], seconds: 10 }
  : { drain: 2_000, enqueue: 2_000, batch: 1_000, rates: [50], seconds: 2 };

const anchors: Record<string, Anchor> = { graphile, pgboss };

for (const [name, anchor] of Object.entries(anchors)) {
  if (only !== undefined && only !== name) continue;
  console.log(`${name} drain`, await anchor.drain(url, sizes.drain));
  console.log(`${name} batchEnqueue`, await anchor.batchEnqueue(url, sizes.enqueue, sizes.batch));
  for (const rate of sizes.rates) {
    console.log(`${name} dispatchLatency`, await anchor.dispatchLatency(url, rate, sizes.seconds));
  }
}
