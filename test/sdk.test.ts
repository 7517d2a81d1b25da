import { defaultConfig } from '../src/config/config.ts';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import {
  createWorker, HttpTransport, NonRetryableError,
  type ControlPlane, type HistoryEntry, type Job, type JobContext, type Lease, type Worker, type WorkerOptions,
} from '../src/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, startTestServer } from './helpers/server.ts';

/**
 * The worker SDK, run through the same scenarios in both modes: remote (HTTP
 * bridge of an in-process control plane) and in-process (connectionString).
 * The control plane's lease reaper runs every 100 ms in both cases.
 */

const TENANT = 'default';
let db: TestDatabase;
let plane: ControlPlane;
const workers: Worker<unknown>[] = [];

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url, { maintenance: { ...defaultConfig.maintenance, leaseReaperIntervalMs: 100 } });
});

after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await plane?.stop();
  await db?.drop();
});

interface Deferred<T> { promise: Promise<T>; resolve: (v: T) => void }
function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

async function job(id: string): Promise<Job> {
  const j = await plane.ledger.getJob(TENANT, id);
  assert.ok(j, `job ${id} exists`);
  return j;
}

function history(id: string): Promise<HistoryEntry[]> {
  return plane.ledger.getHistory(TENANT, id);
}

async function enqueue(jobType: string, payloads: unknown[]): Promise<string[]> {
  const results = await plane.ledger.enqueue(payloads.map((payload) => ({ tenantId: TENANT, jobType, payload })));
  return results.map((r) => r.id);
}

async function waitForState(id: string, state: Job['state'], timeoutMs = 15_000): Promise<Job> {
  return eventually(async () => {
    const j = await job(id);
    return j.state === state ? j : null;
  }, timeoutMs, `job ${id} to be ${state}`);
}

type Mode = 'remote' | 'in-process';

for (const mode of ['remote', 'in-process'] as const satisfies readonly Mode[]) {
  describe(`worker SDK (${mode})`, () => {
    const prefix = mode === 'remote' ? 'r' : 'p';
    const t = (name: string) => `${prefix}_${name}`;

    async function startWorker<P>(opts: Omit<WorkerOptions<P>, 'apiUrl' | 'connectionString' | 'handleSignals'>): Promise<Worker<P>> {
      const w = await createWorker<P>({
        waitMs: 2000,
        shutdownTimeoutMs: 5000,
        ...opts,
        ...(mode === 'remote' ? { apiUrl: plane.url } : { connectionString: db.url }),
        handleSignals: false,
      });
      workers.push(w as Worker<unknown>);
      return w;
    }

    test('500 jobs each succeed exactly once with the handler result stored', async () => {
      const type = t('bulk');
      const n = 500;
      const ids = await enqueue(type, Array.from({ length: n }, (_, i) => ({ n: i })));
      const runs = new Map<string, number>();
      const w = await startWorker<{ n: number }>({
        jobTypes: [type], concurrency: 20,
        handler: async (j) => {
          runs.set(j.id, (runs.get(j.id) ?? 0) + 1);
          await delay(1);
          return { double: j.payload.n * 2, attempt: j.attempt };
        },
      });
      await eventually(async () => {
        const { rows } = await db.pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1 AND state = 'succeeded'`, [type]);
        return Number(rows[0]!.n) === n;
      }, 60_000, `${n} jobs succeeded`);
      await w.stop();

      const { rows } = await db.pool.query<{ id: string; payload: { n: number }; result: unknown; attempt: number; state: string }>(
        `SELECT id::text, payload, result, attempt, state FROM orch.jobs WHERE job_type = $1 ORDER BY id`, [type]);
      assert.equal(rows.length, n);
      for (const r of rows) {
        assert.equal(r.state, 'succeeded');
        assert.equal(r.attempt, 1, `job ${r.id} ran in one attempt`);
        assert.deepEqual(r.result, { double: r.payload.n * 2, attempt: 1 }, `job ${r.id} stores its handler's result`);
      }
      assert.equal(runs.size, n);
      for (const id of ids) assert.equal(runs.get(id), 1, `handler ran job ${id} exactly once`);
      const hist = await db.pool.query<{ job_id: string; succeeded: string; leased: string }>(
        `SELECT h.job_id::text, count(*) FILTER (WHERE to_state = 'succeeded') AS succeeded, count(*) FILTER (WHERE to_state = 'leased') AS leased
         FROM orch.job_history h JOIN orch.jobs j ON j.id = h.job_id WHERE j.job_type = $1 GROUP BY h.job_id`, [type]);
      assert.equal(hist.rows.length, n);
      for (const h of hist.rows) {
        assert.equal(Number(h.succeeded), 1, `job ${h.job_id}: one succeeded history row`);
        assert.equal(Number(h.leased), 1, `job ${h.job_id}: one lease`);
      }
    });

    test('a throwing handler is retried and succeeds on a later attempt', async () => {
      const type = t('flaky');
      await plane.ledger.jobTypes.define(type, { maxAttempts: 3, backoffBaseMs: 0, backoffMaxMs: 0 });
      class FlakyError extends Error {
        override name = 'FlakyError';
      }
      const [id] = await enqueue(type, [{ x: 1 }]);
      const attempts: number[] = [];
      await startWorker({
        jobTypes: [type], concurrency: 2,
        handler: (j) => {
          attempts.push(j.attempt);
          if (j.attempt < 2) throw new FlakyError(`transient on attempt ${j.attempt}`);
          return { okOn: j.attempt };
        },
      });
      const done = await waitForState(id!, 'succeeded');
      assert.equal(done.attempt, 2);
      assert.deepEqual(done.result, { okOn: 2 });
      assert.deepEqual(attempts, [1, 2]);
      const h = await history(id!);
      assert.deepEqual(h.map((e) => [e.from, e.to, e.attempt]), [
        [null, 'queued', 0], ['queued', 'leased', 1], ['leased', 'failed', 1], ['failed', 'leased', 2], ['leased', 'succeeded', 2],
      ]);
      const failed = h[2]!;
      assert.equal(failed.reason, 'worker_failed');
      assert.equal(failed.error?.class, 'FlakyError');
      assert.equal(failed.error?.message, 'transient on attempt 1');
    });

    test('NonRetryableError dead-letters after one attempt with lastError.class', async () => {
      const type = t('fatal');
      await plane.ledger.jobTypes.define(type, { maxAttempts: 5, backoffBaseMs: 0, backoffMaxMs: 0 });
      const [id] = await enqueue(type, [{ bad: true }]);
      let runs = 0;
      const w = await startWorker({
        jobTypes: [type],
        handler: () => {
          runs++;
          throw new NonRetryableError('payload is malformed');
        },
      });
      const failedEvent = once(w, 'failed');
      const dead = await waitForState(id!, 'dead_lettered');
      const [lease] = (await failedEvent) as [Lease, unknown];
      assert.equal(lease.jobId, id);
      assert.equal(dead.attempt, 1);
      assert.equal(dead.maxAttempts, 5);
      assert.equal(dead.lastError?.class, 'NonRetryableError');
      assert.equal(dead.lastError?.message, 'payload is malformed');
      assert.equal(dead.lastError?.retryable, false);
      assert.equal(runs, 1);
    });

    test('progress(0.5, "half") reaches the job row via a heartbeat while the handler runs', async () => {
      const type = t('progress');
      const [id] = await enqueue(type, [{}]);
      const gate = deferred();
      await startWorker({
        jobTypes: [type],
        handler: async (j) => {
          j.progress(0.5, 'half');
          await gate.promise;
          return 'done';
        },
      });
      const running = await eventually(async () => {
        const j = await job(id!);
        return j.state === 'leased' && j.progress === 0.5 ? j : null;
      }, 10_000, 'progress 0.5 in the job row');
      assert.equal(running.progressMessage, 'half');
      gate.resolve();
      const done = await waitForState(id!, 'succeeded');
      assert.equal(done.result, 'done');
      assert.equal(done.progress, 1);
    });

    test('canceling a running job aborts job.signal within a few heartbeats, and no ack is applied', async () => {
      const type = t('cancel');
      await plane.ledger.jobTypes.define(type, { leaseMs: 1000 });
      const [id] = await enqueue(type, [{}]);
      const started = deferred();
      const aborted = deferred<{ at: number; reason: unknown }>();
      let completedEvents = 0;
      const w = await startWorker({
        jobTypes: [type],
        handler: async (j: JobContext) => {
          started.resolve();
          const reason = await new Promise<unknown>((resolve) => {
            const fallback = setTimeout(() => resolve('never aborted'), 10_000);
            j.signal.addEventListener('abort', () => {
              clearTimeout(fallback);
              resolve(j.signal.reason);
            }, { once: true });
          });
          aborted.resolve({ at: Date.now(), reason });
          return { finishedAfterCancel: true }; // a late success that must not be recorded
        },
      });
      w.on('completed', () => completedEvents++);
      const lost = once(w, 'lost');
      await started.promise;
      const t0 = Date.now();
      await plane.ledger.cancel(TENANT, id!, 'operator:test', 'test cancel');
      const { at, reason } = await aborted.promise;
      assert.ok(reason instanceof Error && /canceled/.test(reason.message), `abort reason names the cancel: ${String(reason)}`);
      // leaseMs 1000: heartbeats every ~333 ms on a 250 ms tick.
      assert.ok(at - t0 < 2000, `signal fired ${at - t0} ms after cancel`);
      const [, lostReason] = (await lost) as [Lease, string];
      assert.equal(lostReason, 'canceled');
      await eventually(async () => w.held === 0, 5000, 'worker to drop the canceled job');
      const j = await job(id!);
      assert.equal(j.state, 'canceled');
      assert.equal(j.result, null);
      const h = await history(id!);
      assert.equal(h.at(-1)?.to, 'canceled');
      assert.equal(h.filter((e) => e.to === 'succeeded').length, 0);
      assert.equal(completedEvents, 0);
    });

    test('force release, then the same worker claims the job again: the old run is aborted at once, its late end touches nothing, the new run succeeds', async () => {
      const type = t('frelease');
      await plane.ledger.jobTypes.define(type, { leaseMs: 3000, maxAttempts: 3 });
      const [id] = await enqueue(type, [{}]);
      const runs: { leaseId: string; abortedAt?: number }[] = [];
      const firstStarted = deferred();
      const secondStarted = deferred();
      const w = await startWorker({
        jobTypes: [type],
        handler: async (j: JobContext) => {
          const run: { leaseId: string; abortedAt?: number } = { leaseId: j.leaseId };
          runs.push(run);
          j.signal.addEventListener('abort', () => (run.abortedAt = Date.now()), { once: true });
          if (runs.length === 1) {
            firstStarted.resolve();
            // ignores its signal and ends while the second run is still going: its end must not disturb it
            await secondStarted.promise;
            await new Promise((r) => setTimeout(r, 200));
            return 'first, too late';
          }
          secondStarted.resolve();
          await new Promise((r) => setTimeout(r, 1500));
          return 'second';
        },
      });
      await firstStarted.promise;
      const t0 = Date.now();
      const released = await plane.ledger.forceRelease({ tenantId: TENANT, jobIds: [id!] }, 10, 'operator:test', 'INC-1 force release');
      assert.equal(released.length, 1);
      await secondStarted.promise;
      await eventually(async () => runs[0]!.abortedAt !== undefined, 2000, 'the first run to be aborted');
      assert.ok(runs[0]!.abortedAt! - t0 < 2000, `first run aborted ${runs[0]!.abortedAt! - t0} ms after the release`);
      const done = await waitForState(id!, 'succeeded');
      assert.equal(done.result, 'second');
      assert.equal(runs.length, 2, 'ran twice: once per lease, never a third time');
      assert.notEqual(runs[0]!.leaseId, runs[1]!.leaseId);
      assert.equal(runs[1]!.abortedAt, undefined, 'the successor run was never aborted');
      const h = await history(id!);
      assert.deepEqual(h.map((e) => e.to), ['queued', 'leased', 'queued', 'leased', 'succeeded']);
      await eventually(async () => w.held === 0, 5000, 'worker to hold nothing');
    });

    test('a handler running longer than leaseMs keeps its lease via heartbeats and is not re-run', async () => {
      const type = t('long');
      await plane.ledger.jobTypes.define(type, { leaseMs: 1000 });
      const [id] = await enqueue(type, [{}]);
      let runs = 0;
      const w = await startWorker({
        jobTypes: [type],
        handler: async () => {
          runs++;
          await delay(3000); // three lease lengths of work
          return 'long done';
        },
      });
      const completed = once(w, 'completed');
      await completed;
      const done = await waitForState(id!, 'succeeded');
      assert.equal(done.attempt, 1);
      assert.equal(done.result, 'long done');
      assert.equal(runs, 1);
      const h = await history(id!);
      assert.deepEqual(h.map((e) => e.to), ['queued', 'leased', 'succeeded']);
      assert.equal(h.some((e) => e.reason === 'lease_expired'), false);
    });

    test('graceful stop(): prefetched leases go back as queued with the attempt not counted; the running one finishes', async () => {
      const type = t('stop');
      await plane.ledger.jobTypes.define(type, { leaseMs: 10_000 });
      const ids = await enqueue(type, Array.from({ length: 6 }, (_, i) => ({ i })));
      const gate = deferred();
      const started = deferred<string>();
      const ran: string[] = [];
      const w = await startWorker({
        jobTypes: [type], concurrency: 1, prefetch: 10,
        handler: async (j) => {
          ran.push(j.id);
          started.resolve(j.id);
          await gate.promise;
          return 'finished during stop';
        },
      });
      const runningId = await started.promise;
      await eventually(async () => {
        const { rows } = await db.pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1 AND state = 'leased' AND worker_id = $2`, [type, w.id]);
        return Number(rows[0]!.n) === 6;
      }, 10_000, 'all 6 jobs leased to the worker');
      let stopped = false;
      const stopping = w.stop().then(() => (stopped = true));
      await delay(300);
      assert.equal(stopped, false, 'stop() waits for the running handler');
      gate.resolve();
      await stopping;

      assert.deepEqual(ran, [runningId], 'only one handler ran');
      const finished = await job(runningId);
      assert.equal(finished.state, 'succeeded');
      assert.equal(finished.attempt, 1);
      assert.equal(finished.result, 'finished during stop');
      for (const id of ids.filter((x) => x !== runningId)) {
        const j = await job(id);
        assert.equal(j.state, 'queued', `job ${id} handed back`);
        assert.equal(j.attempt, 0, `job ${id}: handed-back attempt not counted`);
        const last = (await history(id)).at(-1)!;
        assert.equal(last.reason, 'released_by_worker');
        // the worker that held the lease (over HTTP an open server has no token to name, so the lease's holder)
        assert.equal(last.actor, `worker:${w.id}`);
      }
    });

    test('graceful stop() hands prefetched leases back even when the running handler outlasts their lease', async () => {
      const type = t('stopslow');
      await plane.ledger.jobTypes.define(type, { leaseMs: 1000 });
      const ids = await enqueue(type, Array.from({ length: 4 }, (_, i) => ({ i })));
      const started = deferred<string>();
      const w = await startWorker({
        jobTypes: [type], concurrency: 1, prefetch: 10,
        handler: async (j) => {
          started.resolve(j.id);
          await delay(2500); // a slow handler: longer than the 1 s lease
          return 'slow';
        },
      });
      const runningId = await started.promise;
      await eventually(async () => {
        const { rows } = await db.pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1 AND state = 'leased' AND worker_id = $2`, [type, w.id]);
        return Number(rows[0]!.n) === 4;
      }, 10_000, 'all 4 jobs leased to the worker');
      await w.stop();
      assert.equal((await job(runningId)).state, 'succeeded');
      for (const id of ids.filter((x) => x !== runningId)) {
        const j = await job(id);
        const h = await history(id);
        assert.equal(h.some((e) => e.reason === 'lease_expired'), false,
          `job ${id}: prefetched lease must be handed back, not left to expire (history: ${h.map((e) => `${e.to}/${e.actor}/${e.reason ?? ''}`).join(', ')})`);
        assert.equal(j.attempt, 0, `job ${id}: handed-back attempt not counted`);
      }
    });

    test('a worker for type A never runs type B', async () => {
      const a = t('typeA');
      const b = t('typeB');
      const bIds = await enqueue(b, Array.from({ length: 20 }, () => ({})));
      const aIds = await enqueue(a, Array.from({ length: 20 }, () => ({})));
      const seen = new Set<string>();
      const w = await startWorker({
        jobTypes: [a], concurrency: 5,
        handler: (j) => {
          seen.add(j.jobType);
          return j.jobType;
        },
      });
      await eventually(async () => {
        const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1 AND state = 'succeeded'`, [a]);
        return Number(rows[0]!.n) === aIds.length;
      }, 15_000, 'all type A jobs succeeded');
      await w.stop();
      assert.deepEqual([...seen], [a]);
      for (const id of bIds) {
        const j = await job(id);
        assert.equal(j.state, 'queued');
        assert.equal(j.attempt, 0);
        assert.equal((await history(id)).some((e) => e.to === 'leased'), false, `type B job ${id} was never leased`);
      }
    });

    if (mode === 'remote') {
      test('an idle claim over HTTP long-polls for waitMs instead of returning at once', async () => {
        const transport = new HttpTransport({ apiUrl: plane.url });
        const t0 = Date.now();
        const leases = await transport.claim(
          { workerId: 'longpoll-probe', jobTypes: [t('idle')], limit: 5, waitMs: 1500 }, new AbortController().signal);
        const took = Date.now() - t0;
        assert.deepEqual(leases, []);
        // Returning at once makes every idle remote worker spin claim requests in a tight loop.
        assert.ok(took >= 1200, `empty claim with waitMs 1500 returned after ${took} ms`);
      });

      test('a long-poll claim abandoned by its client (a stopping worker) leases nothing afterwards', async () => {
        const type = t('ghost');
        await plane.ledger.jobTypes.define(type, { leaseMs: 1000 });
        const ac = new AbortController();
        const claim = new HttpTransport({ apiUrl: plane.url })
          .claim({ workerId: 'ghost-worker', jobTypes: [type], limit: 5, waitMs: 10_000 }, ac.signal)
          .then((leases) => leases.length, (err: Error) => err.name);
        // Runnable in 600 ms: a delayed job sends no wake-up, so the server's claim keeps
        // sleeping until its 1 s poll tick; the client goes away before the job is runnable
        // (so a claim that reached a loaded server late cannot find it) and before that tick.
        const [e] = await plane.ledger.enqueue([{ tenantId: TENANT, jobType: type, payload: {}, runAfter: new Date(Date.now() + 600) }]);
        await delay(450);
        ac.abort();
        assert.equal(await claim, 'AbortError');
        // Let the abandoned claim run past its poll tick before any other worker asks:
        // a server that keeps claiming for a departed client would lease the job by then.
        await delay(1500);
        await startWorker({ jobTypes: [type], handler: () => 'ran' });
        const done = await waitForState(e!.id, 'succeeded', 10_000);
        const h = await history(e!.id);
        assert.equal(h.some((x) => x.actor === 'worker:ghost-worker'), false,
          `job leased to the departed client: ${h.map((x) => `${x.to}/${x.actor}/${x.reason ?? ''}`).join(', ')}`);
        assert.equal(done.attempt, 1);
      });
    }
  });
}
