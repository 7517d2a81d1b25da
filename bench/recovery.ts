/**
 * Recovery figures (the anchors have no DLQ tooling to compare with, so these
 * are checked against the targets of the recovery issue): snapshot and replay
 * of a large DLQ, and `dlq stats` at a million entries. Dead letters are made
 * through the real transitions (enqueue, claim, fail), not written by hand.
 */
import { createHash } from 'node:crypto';
import { defaultConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { DeadLetters } from '../src/recovery/dead-letters.ts';
import { Replays } from '../src/recovery/replays.ts';
import { Snapshots } from '../src/recovery/snapshots.ts';
import type { OperatorAction } from '../src/audit/audit-log.ts';
import { chunks, nowMs, percentile, settle } from './anchors/util.ts';
import { reset } from './ours.ts';

const TENANT = 'bench';
const TYPES = ['mail', 'pdf', 'sync', 'billing'];
const CLASSES = ['Timeout', 'NotFound', 'Upstream503', 'ValidationError'];
const op: OperatorAction = { actor: 'operator:bench', reason: 'bench', ticket: null, requestId: null };

interface Recovery { ledger: Ledger; deadLetters: DeadLetters; snapshots: Snapshots; replays: Replays; close(): Promise<void> }

function open(connectionString: string): Recovery {
  const pool = createPool(connectionString, 8);
  const ledger = new Ledger(pool, { ...defaultConfig, maxQueuedPerTenant: 0 });
  const deadLetters = new DeadLetters(pool);
  const snapshots = new Snapshots(pool, ledger, deadLetters, 10_000_000);
  const replays = new Replays(pool, ledger, deadLetters, snapshots, { batchSize: defaultConfig.replayBatchSize, maxJobs: 10_000_000 });
  return { ledger, deadLetters, snapshots, replays, close: () => pool.end() };
}

/** `n` dead letters over four types and four error classes, messages carrying ids (so clustering has work to do). */
async function seedDeadLetters(r: Recovery, n: number): Promise<void> {
  for (const [start, end] of chunks(n, 10_000)) {
    await r.ledger.enqueue(Array.from({ length: end - start }, (_, i) => ({
      tenantId: TENANT, jobType: TYPES[(start + i) % TYPES.length]!, payload: { order: start + i, note: 'x'.repeat(64) }, maxAttempts: 1,
    })));
    for (;;) {
      const leases = await r.ledger.claim({ workerId: 'bench-seeder', jobTypes: TYPES, limit: 5000 });
      if (leases.length === 0) break;
      await r.ledger.fail(leases.map((l) => ({
        tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId,
        error: { class: CLASSES[Number(l.jobId) % CLASSES.length]!, message: `order ${l.jobId} failed at 0x${Number(l.jobId).toString(16)}ab12`, retryable: false },
      })), 'worker:bench-seeder');
    }
  }
  await r.ledger.counts.rollup();
  await r.deadLetters.clusterFold.rollup();
}

export interface SnapshotReplayResult { entries: number; snapshotSeconds: number; downloadSeconds: number; bytes: number; replaySeconds: number; replayed: number }

/** Snapshot (manifest + sha256) and download of `n` dead letters, then a replay of all of them by snapshot id. */
export async function snapshotAndReplay(connectionString: string, n: number): Promise<SnapshotReplayResult> {
  await reset(connectionString);
  const r = open(connectionString);
  try {
    await seedDeadLetters(r, n);
    await settle(connectionString, 'orch');
    let t = nowMs();
    const manifest = await r.snapshots.create(TENANT, {}, op);
    const snapshotSeconds = (nowMs() - t) / 1000;
    t = nowMs();
    const hash = createHash('sha256');
    for await (const chunk of r.snapshots.download(TENANT, manifest.id)) hash.update(chunk);
    const downloadSeconds = (nowMs() - t) / 1000;
    if (hash.digest('hex') !== manifest.sha256) throw new Error('snapshot download does not match its manifest');
    t = nowMs();
    const { replay } = await r.replays.create(TENANT, { snapshotId: manifest.id }, null, op);
    let last = replay;
    for (let step = await r.replays.step(replay.id); step; step = await r.replays.step(replay.id)) last = step.replay;
    const replaySeconds = (nowMs() - t) / 1000;
    if (last.created !== n) throw new Error(`replay created ${last.created} jobs, expected ${n}`);
    const round = (x: number) => Math.round(x * 100) / 100;
    return { entries: manifest.entries, snapshotSeconds: round(snapshotSeconds), downloadSeconds: round(downloadSeconds), bytes: manifest.bytes, replaySeconds: round(replaySeconds), replayed: last.created };
  } finally {
    await r.close();
  }
}

export interface StatsResult { entries: number; seedSeconds: number; p50Ms: number; p99Ms: number; maxMs: number; calls: number }

/** `dlq stats` latency with `n` dead letters in the ledger (after the clusters were folded, as the rollup service keeps them). */
export async function dlqStats(connectionString: string, n: number, calls = 50): Promise<StatsResult> {
  await reset(connectionString);
  const r = open(connectionString);
  try {
    let t = nowMs();
    await seedDeadLetters(r, n);
    const seedSeconds = Math.round((nowMs() - t) / 1000);
    await settle(connectionString, 'orch');
    const stats = await r.deadLetters.stats(TENANT);
    if (stats.depth !== n) throw new Error(`stats saw ${stats.depth} dead letters, expected ${n}`);
    const samples: number[] = [];
    for (let i = 0; i < calls; i++) {
      t = nowMs();
      await r.deadLetters.stats(TENANT);
      samples.push(nowMs() - t);
    }
    samples.sort((a, b) => a - b);
    const round = (x: number) => Math.round(x * 10) / 10;
    return { entries: n, seedSeconds, p50Ms: round(percentile(samples, 50)), p99Ms: round(percentile(samples, 99)), maxMs: round(samples.at(-1)!), calls };
  } finally {
    await r.close();
  }
}
