import { defaultConfig } from '../src/config/config.ts';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { createWorker, OrchClient, type ControlPlane, type Worker } from '../src/index.ts';
import { createLogger } from '../src/logging.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { kill, spawnCrashWorker } from './helpers/processes.ts';
import { eventually, spawnServer, startTestServer } from './helpers/server.ts';

/** "Nothing lost": real processes, real SIGKILLs, and the ledger as the witness. */

const TENANT = 'default';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

/** A crash worker whose process is killed when the file's tests end. */
async function spawnWorker(args: string[]): Promise<ChildProcess> {
  const child = await spawnCrashWorker(args);
  cleanups.push(() => kill(child, 'SIGKILL'));
  return child;
}

async function stateCounts(db: TestDatabase, jobType: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ state: string; n: string }>(
    'SELECT state::text, count(*) AS n FROM orch.jobs WHERE job_type = $1 GROUP BY state', [jobType]);
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
}

describe('a worker process dies', () => {
  let db: TestDatabase;
  let plane: ControlPlane;
  before(async () => {
    db = await createTestDatabase();
    cleanups.push(() => db.drop());
    plane = await startTestServer(db.url, { maintenance: { ...defaultConfig.maintenance, leaseReaperIntervalMs: 100, leaseGraceMs: 0 } });
    cleanups.push(() => plane.stop());
  });

  test('SIGKILL mid-job: its leases expire, a healthy worker finishes every job exactly once', async () => {
    const type = 'crash_hang';
    await plane.ledger.jobTypes.define(type, { leaseMs: 1000, maxAttempts: 3 });
    const ids = (await plane.ledger.enqueue(Array.from({ length: 30 }, (_, n) => ({ tenantId: TENANT, jobType: type, payload: { n } })))).map((r) => r.id);

    const doomedId = `doomed-${process.pid}`;
    const child = await spawnWorker([db.url, type, doomedId, 'hang']);
    // concurrency 10 + prefetch 10: twenty leases held by the doomed worker, its handlers hanging
    await eventually(async () => {
      const { rows } = await db.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1 AND state = 'leased' AND worker_id = $2`, [type, doomedId]);
      return Number(rows[0]!.n) === 20;
    }, 15_000, 'twenty jobs leased to the doomed worker');
    const { rows: held } = await db.pool.query<{ id: string }>(
      `SELECT id::text FROM orch.jobs WHERE job_type = $1 AND worker_id = $2`, [type, doomedId]);
    const doomed = new Set(held.map((r) => r.id));
    await kill(child, 'SIGKILL');

    const runs = new Map<string, number>();
    const healthy = await createWorker<{ n: number }>({
      connectionString: db.url, jobTypes: [type], concurrency: 10, waitMs: 1000, handleSignals: false,
      handler: (j) => {
        runs.set(j.id, (runs.get(j.id) ?? 0) + 1);
        return { n: j.payload.n, attempt: j.attempt };
      },
    });
    cleanups.push(() => healthy.stop());
    await eventually(async () => (await stateCounts(db, type)).succeeded === ids.length, 30_000, 'all jobs succeeded');
    await healthy.stop();

    assert.deepEqual(await stateCounts(db, type), { succeeded: ids.length });
    for (const id of ids) {
      const h = await plane.ledger.getHistory(TENANT, id);
      assert.equal(h.filter((e) => e.to === 'succeeded').length, 1, `job ${id}: exactly one succeeded row`);
      assert.equal(runs.get(id), 1, `job ${id} ran once on the healthy worker`);
      const j = (await plane.ledger.getJob(TENANT, id))!;
      if (doomed.has(id)) {
        assert.deepEqual(h.map((e) => `${e.to}#${e.attempt}${e.reason ? `/${e.reason}` : ''}`), [
          'queued#0', 'leased#1', 'queued#1/lease_expired', 'leased#2', 'succeeded#2',
        ], `job ${id} history`);
        assert.equal(h[1]!.actor, `worker:${doomedId}`);
        assert.equal(h[2]!.actor, 'system:lease-reaper');
        assert.equal(j.attempt, 2);
      } else {
        assert.deepEqual(h.map((e) => e.to), ['queued', 'leased', 'succeeded']);
        assert.equal(j.attempt, 1);
      }
      assert.deepEqual(j.result, { n: (j.payload as { n: number }).n, attempt: j.attempt });
    }
  });

  test('SIGTERM: the SDK stops gracefully (running job finishes, prefetched leases handed back)', async () => {
    const type = 'crash_term';
    await plane.ledger.jobTypes.define(type, { leaseMs: 10_000 });
    const ids = (await plane.ledger.enqueue(Array.from({ length: 6 }, (_, n) => ({ tenantId: TENANT, jobType: type, payload: { n } })))).map((r) => r.id);
    const workerId = `graceful-${process.pid}`;
    const child = await spawnWorker([db.url, type, workerId, 'graceful']);
    await eventually(async () => {
      const { rows } = await db.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1 AND state = 'leased' AND worker_id = $2`, [type, workerId]);
      return Number(rows[0]!.n) === 6;
    }, 15_000, 'six jobs leased to the worker');
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await Promise.race([exited, delay(15_000).then(() => assert.fail('worker did not exit within 15 s of SIGTERM'))]);

    // concurrency 1: one job was running and must have finished; the other five go back unrun.
    const counts = await stateCounts(db, type);
    assert.deepEqual(counts, { succeeded: 1, queued: 5 }, `states after SIGTERM: ${JSON.stringify(counts)}`);
    for (const id of ids) {
      const j = (await plane.ledger.getJob(TENANT, id))!;
      if (j.state === 'queued') {
        assert.equal(j.attempt, 0, `job ${id}: handed back without counting the attempt`);
        assert.equal((await plane.ledger.getHistory(TENANT, id)).at(-1)?.reason, 'released_by_worker');
      }
    }
    // and it said so: the registry shows it stopped, holding nothing, so the reaper never marks it lost
    const records = (await plane.ledger.workers.list(db.pool, undefined)).filter((w) => w.workerId === workerId);
    assert.deepEqual(records.map((w) => [w.status, w.inFlight]), [['stopped', 0]]);
  });
});

describe('the server dies under load', () => {
  test('SIGKILL the server mid-load, restart it on the same port: all 2,000 jobs succeed exactly once', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const port = String(await freePort());
    const env = { ORCH_DATABASE_URL: db.url, ORCH_HTTP_PORT: port, ORCH_LEASE_REAPER_INTERVAL_MS: '100' };
    const first = await spawnServer(env);
    cleanups.push(() => kill(first.child, 'SIGKILL'));
    const url = first.url;
    assert.equal(url, `http://127.0.0.1:${port}`);

    const type = 'crash_load';
    const total = 2000;
    const client = new OrchClient({ apiUrl: url, tenant: TENANT });
    await client.defineJobType(type, { leaseMs: 3000 }, { reason: 'test setup' });
    const enqueued = await client.enqueueBatch(Array.from({ length: total }, (_, n) => ({ jobType: type, payload: { n } })));
    assert.equal(enqueued.length, total);

    const completed = new Map<string, number>();
    let transportErrors = 0;
    const worker: Worker<{ n: number }> = await createWorker<{ n: number }>({
      apiUrl: url, tenant: TENANT, jobTypes: [type], concurrency: 20, waitMs: 1000, handleSignals: false, log: createLogger('silent'),
      handler: async (j) => {
        await delay(2);
        return { n: j.payload.n };
      },
    });
    cleanups.push(() => worker.stop());
    worker.on('completed', (lease: { jobId: string }) => completed.set(lease.jobId, (completed.get(lease.jobId) ?? 0) + 1));
    worker.on('transportError', () => transportErrors++);

    await eventually(async () => completed.size >= 300, 30_000, 'jobs flowing');
    await kill(first.child, 'SIGKILL');
    const doneAtKill = completed.size;
    assert.ok(doneAtKill < total, 'the server died while jobs were still flowing');

    const second = await spawnServer(env);
    cleanups.push(() => kill(second.child, 'SIGKILL'));
    assert.equal(second.url, url);

    await eventually(async () => (await stateCounts(db, type)).succeeded === total, 90_000, `all ${total} jobs succeeded`);
    await worker.stop();

    assert.ok(transportErrors > 0, 'the worker saw the outage');
    assert.deepEqual(await stateCounts(db, type), { succeeded: total }, 'nothing left queued, leased or failed');
    const { rows: dupes } = await db.pool.query<{ job_id: string; n: string }>(
      `SELECT h.job_id::text, count(*) AS n FROM orch.job_history h JOIN orch.jobs j ON j.id = h.job_id
       WHERE j.job_type = $1 AND h.to_state = 'succeeded' GROUP BY h.job_id HAVING count(*) > 1`, [type]);
    assert.deepEqual(dupes, [], 'no job has more than one succeeded row');
    const { rows: succeededRows } = await db.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM orch.job_history h JOIN orch.jobs j ON j.id = h.job_id WHERE j.job_type = $1 AND h.to_state = 'succeeded'`, [type]);
    assert.equal(Number(succeededRows[0]!.n), total);
    for (const e of enqueued) assert.ok(completed.has(e.id), `job ${e.id} was completed by the worker`);
    const { rows: results } = await db.pool.query<{ ok: boolean }>(
      `SELECT bool_and(result = jsonb_build_object('n', payload->'n')) AS ok FROM orch.jobs WHERE job_type = $1`, [type]);
    assert.equal(results[0]!.ok, true, 'every job stores its own result');
  });
});
