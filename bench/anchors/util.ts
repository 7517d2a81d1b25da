/** Small helpers shared by the anchors. Not part of the anchors' public API. */
import pg from 'pg';
import type { LatencyResult } from './types.ts';

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** Wall-clock milliseconds with sub-ms resolution; producer and handler share a process, so they agree. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs one-off admin SQL (schema resets) on a short-lived connection. */
export async function withClient<T>(connectionString: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Untimed step between pre-enqueue and measurement, so the timed window sees steady-state
 * conditions rather than setup artefacts:
 * - ANALYZE the anchor's tables: right after a bulk insert the planner still thinks they are empty
 *   and picks seq-scan + sort plans for the dequeue query (graphile-worker's get-jobs took ~100 ms
 *   instead of ~12 ms per 500-job fetch). Autovacuum's auto-analyze would normally fix that, but
 *   it is off on the bench server.
 * - CHECKPOINT, so a checkpoint triggered by the setup's WAL does not land in the timed window
 *   (best effort: needs superuser or pg_checkpoint).
 */
export async function settle(connectionString: string, schema: string): Promise<void> {
  await withClient(connectionString, async (client) => {
    const { rows } = await client.query<{ t: string }>(
      `SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname = $1`,
      [schema],
    );
    for (const { t } of rows) await client.query(`ANALYZE ${t}`);
    try {
      await client.query('CHECKPOINT');
    } catch {
      // Not permitted for this role: accept the extra noise rather than fail the bench.
    }
  });
}

/** Polls `done` until it returns true; rejects after `timeoutMs` with a message naming `what`. */
export async function waitUntil(
  done: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string | (() => string),
  intervalMs = 5,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await done())) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    }
    await sleep(intervalMs);
  }
}

/** Rejects if `promise` has not settled after `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Splits 0..total-1 into consecutive [start, end) ranges of at most `size`. */
export function* chunks(total: number, size: number): Generator<[number, number]> {
  for (let start = 0; start < total; start += size) yield [start, Math.min(total, start + size)];
}

/**
 * Open-loop pacing: call `send` `ratePerSec * durationSec` times at evenly spaced instants without
 * waiting for earlier sends, so a slow insert cannot lower the offered rate (it shows up as latency).
 * A late timer is caught up by sending the overdue jobs straight away.
 */
export async function paced(ratePerSec: number, durationSec: number, send: () => Promise<unknown>): Promise<number> {
  const total = Math.round(ratePerSec * durationSec);
  const intervalMs = 1000 / ratePerSec;
  const inFlight: Promise<unknown>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = start + i * intervalMs - performance.now();
    if (wait > 0) await sleep(wait);
    inFlight.push(send());
  }
  await Promise.all(inFlight);
  return total;
}

/**
 * The batch-enqueue measurement every engine shares: build all batches first,
 * settle the schema, then time `send` on each batch, one call at a time.
 */
export async function timeBatches<B>(
  jobs: number,
  batchSize: number,
  build: (start: number, end: number) => B,
  settleSchema: () => Promise<void>,
  send: (batch: B) => Promise<unknown>,
): Promise<{ jobs: number; seconds: number; jobsPerSec: number }> {
  const batches = [...chunks(jobs, batchSize)].map(([start, end]) => build(start, end));
  await settleSchema();
  const started = performance.now();
  for (const batch of batches) await send(batch);
  return throughput(jobs, (performance.now() - started) / 1000);
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? Number.NaN;
}

/**
 * Times `rounds` calls of `call` one after another, after `warmups` untimed
 * ones (they open connections and plan statements): p50, p99 and max in ms,
 * to a tenth.
 */
export async function timeCalls(rounds: number, call: () => Promise<void>, warmups = 3): Promise<{ p50Ms: number; p99Ms: number; maxMs: number }> {
  const samples: number[] = [];
  for (let i = 0; i < warmups + rounds; i++) {
    const t = nowMs();
    await call();
    if (i >= warmups) samples.push(nowMs() - t);
  }
  samples.sort((a, b) => a - b);
  const tenth = (x: number) => Math.round(x * 10) / 10;
  return { p50Ms: tenth(percentile(samples, 50)), p99Ms: tenth(percentile(samples, 99)), maxMs: tenth(samples.at(-1)!) };
}

export function summarizeLatency(ratePerSec: number, samplesMs: readonly number[]): LatencyResult {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return {
    ratePerSec,
    samples: sorted.length,
    p50Ms: round3(percentile(sorted, 50)),
    p99Ms: round3(percentile(sorted, 99)),
  };
}

export function throughput(jobs: number, seconds: number): { jobs: number; seconds: number; jobsPerSec: number } {
  return { jobs, seconds: round3(seconds), jobsPerSec: Math.round(jobs / seconds) };
}

/** Reads the enqueue timestamp the latency benchmarks put in each payload as `{ t }`. */
export function sentAt(payload: unknown): number | undefined {
  if (typeof payload !== 'object' || payload === null || !('t' in payload)) return undefined;
  const t = (payload as { t: unknown }).t;
  return typeof t === 'number' ? t : undefined;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
