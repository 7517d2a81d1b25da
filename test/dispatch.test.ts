import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { defaultConfig } from '../src/config/config.ts';
import { Dispatcher } from '../src/dispatch/dispatcher.ts';
import { JobNotifier } from '../src/dispatch/notifier.ts';
import { Pauses } from '../src/flow/pauses.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import type { ClaimRequest } from '../src/ledger/types.ts';
import { createLogger } from '../src/logging.ts';
import { InProcessTransport } from '../src/sdk/in-process.ts';
import { HttpTransport, type ClaimParams, type WorkerTransport } from '../src/sdk/transport.ts';
import { createWorker, type Worker } from '../src/sdk/worker.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, startTestServer } from './helpers/server.ts';

/**
 * Claims that come back empty-handed cost as much as the useful ones: a
 * claim says whether it left runnable work behind (drained), and the
 * dispatcher does not ask again at once after one that did not, until a
 * notification or the poll tick says there may be news.
 */

let db: TestDatabase;
let ledger: Ledger;
let notifier: JobNotifier;

before(async () => {
  db = await createTestDatabase();
  ledger = new Ledger(db.pool, defaultConfig);
  notifier = new JobNotifier(db.url, createLogger('silent'));
  await notifier.start();
});

after(async () => {
  await notifier?.stop();
  await db?.drop();
});

const enqueue = (jobType: string, tenantId: string, n: number, runAfter?: Date) =>
  ledger.enqueue(Array.from({ length: n }, (_, i) => ({ tenantId, jobType, payload: { i }, ...(runAfter ? { runAfter } : {}) })));

describe('a claim says whether it drained its queues', () => {
  test('a claim that fills its limit leaves work behind; the one that takes the rest, and an empty one, drain', async () => {
    await enqueue('dr_one', 'dr-a', 3);
    const req = { workerId: 'w', jobTypes: ['dr_one'], tenantIds: ['dr-a'] };
    const full = await ledger.claimRound({ ...req, limit: 2 });
    assert.deepEqual([full.leases.length, full.drained], [2, false]);
    const rest = await ledger.claimRound({ ...req, limit: 5 });
    assert.deepEqual([rest.leases.length, rest.drained], [1, true]);
    const empty = await ledger.claimRound({ ...req, limit: 5 });
    assert.deepEqual([empty.leases.length, empty.drained], [0, true]);
  });

  test('a claim short of its limit because each tenant got only its share has not drained', async () => {
    await enqueue('dr_fair', 'dr-big', 10);
    await enqueue('dr_fair', 'dr-small', 1);
    // two tenants share a limit of 4: two each; the small one has one, so 3 leases and 8 jobs left
    const round = await ledger.claimRound({ workerId: 'w', jobTypes: ['dr_fair'], limit: 4 });
    assert.equal(round.leases.length, 3);
    assert.equal(round.drained, false, 'dr-big still had runnable jobs past its share');
  });

  test('a paused queue with runnable work is held back, not drained', async () => {
    await enqueue('dr_paused', 'dr-p', 2);
    await new Pauses(db.pool).pause('dr-p', 'dr_paused', { actor: 'operator:test', reason: 'dispatch test', ticket: 'OPS-1' });
    const round = await ledger.claimRound({ workerId: 'w', jobTypes: ['dr_paused'], tenantIds: ['dr-p'], limit: 5 });
    assert.equal(round.leases.length, 0);
    assert.equal(round.throttled[0]?.reason, 'paused');
    assert.equal(round.drained, false);
  });
});

describe('the dispatcher after a drained claim', () => {
  /** A real dispatcher over the real ledger, counting the claims it makes. */
  function counting(pollIntervalMs: number): { dispatcher: Dispatcher; claims: () => number } {
    let claims = 0;
    const counted = Object.create(ledger) as Ledger;
    counted.claimRound = (req: ClaimRequest) => {
      claims++;
      return ledger.claimRound(req);
    };
    return { dispatcher: new Dispatcher(counted, notifier, pollIntervalMs), claims: () => claims };
  }

  test('a worker taking jobs one at a time claims once per job, not once more for nothing', async () => {
    const { dispatcher, claims } = counting(60_000);
    const req = { workerId: 'w-one', jobTypes: ['dr_trickle'], tenantIds: ['dr-t'], limit: 5 };
    // as a woken worker does: the job's notification is heard, then the claim starts
    const heard = notifier.register(req.jobTypes);
    const [first] = await enqueue('dr_trickle', 'dr-t', 1);
    await heard.promise;
    const got1 = await dispatcher.claim(req, 10_000);
    assert.deepEqual(got1.map((l) => l.jobId), [first!.id]);
    assert.equal(claims(), 1);
    // the next long-poll waits for news instead of claiming at once (that claim would find nothing)
    const next = dispatcher.claim(req, 10_000);
    const [second] = await enqueue('dr_trickle', 'dr-t', 1);
    const got2 = await next;
    assert.deepEqual(got2.map((l) => l.jobId), [second!.id]);
    assert.equal(claims(), 2, 'one claim per job: the empty claim in between was not made');
  });

  test('after a claim that left work behind, the next one claims at once', async () => {
    const { dispatcher, claims } = counting(60_000);
    const req = { workerId: 'w-more', jobTypes: ['dr_more'], tenantIds: ['dr-m'], limit: 2 };
    await enqueue('dr_more', 'dr-m', 3);
    assert.equal((await dispatcher.claim(req, 10_000)).length, 2);
    // no notification arrives in between: only an immediate claim finds the third job
    assert.equal((await dispatcher.claim(req, 10_000)).length, 1);
    assert.equal(claims(), 2);
  });

  test('work that becomes runnable without a notification (a delayed job) is found by the poll tick', async () => {
    const { dispatcher } = counting(100);
    const req = { workerId: 'w-late', jobTypes: ['dr_late'], tenantIds: ['dr-l'], limit: 5 };
    assert.equal((await dispatcher.claim(req, 0)).length, 0, 'drained: nothing there');
    const [late] = await enqueue('dr_late', 'dr-l', 1, new Date(Date.now() + 300));
    const started = Date.now();
    const got = await dispatcher.claim(req, 10_000);
    assert.deepEqual(got.map((l) => l.jobId), [late!.id]);
    assert.ok(Date.now() - started < 5_000, 'found by the poll tick, not the end of the long-poll');
  });
});

describe("express claims: a newly busy tenant does not wait behind a worker's bulk claims", () => {
  const stateOf = async (tenantId: string, id: string) =>
    (await db.pool.query<{ state: string }>('SELECT state FROM orch.jobs WHERE tenant_id = $1 AND id = $2', [tenantId, id])).rows[0]?.state;

  /** A worker over `inner` whose claims are recorded (the express ones carry `express`). */
  async function recordingWorker(inner: WorkerTransport, jobTypes: string[], handler: (tenantId: string) => Promise<void> | void, opts: { concurrency: number; prefetch: number; batchSize: number }) {
    const claims: ClaimParams[] = [];
    const transport = Object.create(inner) as WorkerTransport;
    transport.claim = (p, signal) => {
      claims.push(p);
      return inner.claim(p, signal);
    };
    const worker: Worker = await createWorker({ transport, jobTypes, handleSignals: false, waitMs: 1000, ...opts, handler: (job) => handler(job.tenantId) });
    return { worker, express: () => claims.filter((c) => c.express) };
  }

  const inProcess = (name: string) => InProcessTransport.open({ connectionString: db.url, workerId: `w-${name}`, log: createLogger('silent'), poolSize: 4 });

  /**
   * A worker whose one full claim fills it (1 running, held, and 11 prefetched) and makes A a tenant with a
   * backlog (at least 10 jobs in one claim): only an express claim can lease B's job.
   */
  async function fullWorkerTakesNewTenant(inner: WorkerTransport, jobType: string): Promise<void> {
    await enqueue(jobType, 'ex-a', 30);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const started: string[] = [];
    const { worker, express } = await recordingWorker(inner, [jobType], async (tenantId) => {
      started.push(tenantId);
      if (tenantId === 'ex-a') await gate;
    }, { concurrency: 1, prefetch: 11, batchSize: 12 });
    try {
      await eventually(async () => worker.held === 12, 10_000, 'the first claim');
      // behind: an express claim is open, leaving out the tenant with a backlog
      await eventually(async () => express().some((c) => c.express!.exceptTenants.includes('ex-a')), 10_000, 'an express claim');
      // Over HTTP the server subscribes when the request arrives, a moment after the client sent it: a job
      // notified before that waits for the bulk claims (here, for ever). B enqueues until one is taken.
      let sentB = 0;
      for (let leased = false; !leased; ) {
        assert.ok(sentB < 20, "tenant B's jobs were never leased while the worker had no room");
        const [b] = await enqueue(jobType, 'ex-b', 1);
        sentB++;
        leased = await eventually(async () => (await stateOf('ex-b', b!.id)) === 'leased', 1000, "tenant B's job to be leased").catch(() => false);
      }
      open();
      await eventually(async () => started.length === 30 + sentB, 10_000, 'every job to run');
      // the fair buffer hands it out before the rest of A's prefetched jobs
      assert.ok(started.indexOf('ex-b') <= 2, `B ran at position ${started.indexOf('ex-b')}`);
    } finally {
      open();
      await worker.stop();
    }
  }

  test('an in-process worker whose claims run full takes a new tenant\'s job at once, even with no room left', async () => {
    await fullWorkerTakesNewTenant(await inProcess('full'), 'ex_busy');
  });

  test('so does a remote worker, through the server\'s express claim', async (t) => {
    const plane = await startTestServer(db.url);
    t.after(() => plane.stop());
    await fullWorkerTakesNewTenant(new HttpTransport({ apiUrl: plane.url }), 'ex_remote');
  });

  test('express claims take at most 10 jobs past the prefetch limit in all, however much arrives', async () => {
    await enqueue('ex_flood', 'ex-f', 30);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const { worker, express } = await recordingWorker(await inProcess('flood'), ['ex_flood'], () => gate, { concurrency: 1, prefetch: 11, batchSize: 12 });
    try {
      await eventually(async () => worker.held === 12 && express().length > 0, 10_000, 'a full worker with an express claim open');
      // ex-g's jobs arrive in five enqueues, each notified: each can wake an express claim
      for (let i = 0; i < 5; i++) {
        const sent = express().length;
        await enqueue('ex_flood', 'ex-g', 5);
        // the express claim that took them returns and the next is sent; once the worker has no room, none is
        await eventually(async () => express().length > sent, 1000, 'the next express claim').catch(() => undefined);
      }
      assert.equal(worker.held, 22);
      const leased = await db.pool.query("SELECT count(*)::int AS n FROM orch.jobs WHERE tenant_id = 'ex-g' AND state = 'leased'");
      assert.equal(leased.rows[0].n, 10);
    } finally {
      open();
      await worker.stop();
    }
  });

  test('a worker that keeps up makes no express claims: its own long-poll is woken', async () => {
    const done: string[] = [];
    const { worker, express } = await recordingWorker(await inProcess('idle'), ['ex_idle'], (tenantId) => void done.push(tenantId), { concurrency: 5, prefetch: 5, batchSize: 10 });
    try {
      for (const tenant of ['ex-c', 'ex-d', 'ex-e']) {
        await enqueue('ex_idle', tenant, 1);
        await eventually(async () => done.includes(tenant), 10_000, `${tenant}'s job`);
      }
      assert.deepEqual(express(), []);
    } finally {
      await worker.stop();
    }
  });

  test('an express claim waits for jobs of a tenant outside exceptTenants and inside its own tenants, and claims only those', async () => {
    const dispatcher = new Dispatcher(ledger, notifier);
    const waiting = dispatcher.claim({ workerId: 'w-exp', jobTypes: ['ex_wait'], tenantIds: ['ex-p', 'ex-q'], limit: 10 }, 10_000, undefined, { exceptTenants: ['ex-p'] });
    await enqueue('ex_wait', 'ex-p', 2); // served by the bulk claims
    await enqueue('ex_wait', 'ex-out', 2); // not a tenant this claimer claims for
    await enqueue('ex_wait', 'ex-q', 1);
    assert.deepEqual((await waiting).map((l) => l.tenantId), ['ex-q']);
  });

  test('onlyTenants narrows a claim, and never past the claimer\'s own tenants', async () => {
    await enqueue('ex_scope', 'ex-x', 2);
    await enqueue('ex_scope', 'ex-y', 2);
    const base = { workerId: 'w-scope', jobTypes: ['ex_scope'], limit: 10 };
    const outside = await ledger.claimRound({ ...base, tenantIds: ['ex-x'], onlyTenants: ['ex-y'] });
    assert.deepEqual(outside.leases, [], 'ex-y is outside the claimer\'s tenants');
    const within = await ledger.claimRound({ ...base, tenantIds: ['ex-x'], onlyTenants: ['ex-x', 'ex-y'] });
    assert.deepEqual(within.leases.map((l) => l.tenantId), ['ex-x', 'ex-x']);
    const all = await ledger.claimRound({ ...base, onlyTenants: ['ex-y'] });
    assert.deepEqual(all.leases.map((l) => l.tenantId), ['ex-y', 'ex-y']);
  });
});

test('a notifier stopped while it connects keeps no connection (it would hold a stopping process open)', async () => {
  const listeners = async () => Number((await db.pool.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'orch-notifier'")).rows[0]!.n);
  const before = await listeners();
  const stopped = new JobNotifier(db.url, createLogger('silent'));
  const starting = stopped.start();
  await stopped.stop();
  await starting;
  await eventually(async () => (await listeners()) === before, 5000, 'the connection made after stop() to close');
});
