import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type pg from 'pg';
import { defaultConfig, loadConfig } from '../src/config/config.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import { createPool } from '../src/ledger/db.ts';
import { LedgerError } from '../src/ledger/errors.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { QueueCounts, type QueueCount } from '../src/ledger/queue-counts.ts';
import type { EnqueueInput, Lease, LeaseRef, TransitionRecord } from '../src/ledger/types.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, runCli, startTestServer } from './helpers/server.ts';
import { httpClient, type HttpResult } from './helpers/http.ts';

/**
 * Queue counts (orch.queue_counts + orch.queue_deltas, folded by rollups) must
 * always equal what counting the job table would give; enqueue backpressure
 * reads them to refuse producers whose tenant has too many jobs waiting.
 *
 * Two databases: the ledger tests drive transitions by hand and must not race
 * the control plane's lease reaper, which the backpressure tests run.
 */

const COUNTED = ['queued', 'failed', 'leased', 'dead_lettered'];

let db: TestDatabase;
let ledger: Ledger;
let apiDb: TestDatabase;
let plane: ControlPlane;

/** Every applied transition, as "from->to" plus the reason for lease ends that share a target state. */
const seen = new Map<string, number>();
const transitionKey = (r: TransitionRecord) =>
  `${r.from}->${r.to}${r.reason === 'lease_expired' || r.reason === 'released_by_worker' ? `:${r.reason}` : ''}`;

before(async () => {
  [db, apiDb] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  ledger = new Ledger(db.pool, defaultConfig);
  ledger.observe({ onTransitions: (records) => records.forEach((r) => seen.set(transitionKey(r), (seen.get(transitionKey(r)) ?? 0) + 1)) });
  plane = await startTestServer(apiDb.url, { maxQueuedPerTenant: 10 });
});

after(async () => {
  await plane?.stop();
  await db?.drop();
  await apiDb?.drop();
});

// ---------------------------------------------------------------------------------------------
// helpers

/** Deterministic PRNG (mulberry32): a failing run names its seed, and ORCH_TEST_SEED replays it. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const asMap = (rows: QueueCount[]) => Object.fromEntries(rows.map((r) => [`${r.tenantId}/${r.jobType}/${r.state}`, r.n]));

/** The truth: the job table counted, keyed like asMap. */
async function truth(q: pg.Pool | pg.PoolClient = db.pool): Promise<Record<string, number>> {
  const { rows } = await q.query<{ tenant_id: string; job_type: string; state: string; n: string }>(
    `SELECT tenant_id, job_type, state::text AS state, count(*) AS n FROM orch.jobs
     WHERE state IN ('queued', 'failed', 'leased', 'dead_lettered') GROUP BY 1, 2, 3`);
  return Object.fromEntries(rows.map((r) => [`${r.tenant_id}/${r.job_type}/${r.state}`, Number(r.n)]));
}

/** orch.queue_counts alone (no pending deltas), zero rows left out. */
async function rolledUpOnly(): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ tenant_id: string; job_type: string; state: string; n: string }>(
    'SELECT tenant_id, job_type, state::text AS state, n FROM orch.queue_counts WHERE n <> 0');
  return Object.fromEntries(rows.map((r) => [`${r.tenant_id}/${r.job_type}/${r.state}`, Number(r.n)]));
}

async function pendingDeltas(): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM orch.queue_deltas');
  return Number(rows[0]!.n);
}

async function assertCountsMatch(what: string): Promise<void> {
  const counts = await ledger.counts.all();
  for (const c of counts) {
    assert.ok(COUNTED.includes(c.state), `${what}: only live states are counted, got ${c.state}`);
    assert.notEqual(c.n, 0, `${what}: zero rows are omitted`);
  }
  assert.deepEqual(asMap(counts), await truth(), `${what}: counts.all() must equal the job table`);
}

/** After a final rollup: no deltas left, and orch.queue_counts alone is the truth. */
async function assertRolledUp(what: string): Promise<void> {
  await ledger.counts.rollup();
  assert.equal(await pendingDeltas(), 0, `${what}: a rollup leaves no deltas`);
  const expected = await truth();
  assert.deepEqual(await rolledUpOnly(), expected, `${what}: orch.queue_counts alone equals the job table`);
  assert.deepEqual(asMap(await ledger.counts.all()), expected, `${what}: counts.all() after the rollup`);
}

const refs = (leases: Lease[]): LeaseRef[] => leases.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId }));
const boom = (retryable = true) => ({ class: 'Boom', message: 'test failure', retryable });

// ---------------------------------------------------------------------------------------------
// Feature 1: queue counts

describe('queue counts', () => {
  const TENANTS = ['qc_t1', 'qc_t2', 'qc_t3'];
  const TYPES = ['qc_a', 'qc_b'];

  before(async () => {
    // backoff 0: a failed job is claimable again at once; qc_b has a 1 s run-time limit for timeouts
    await ledger.jobTypes.define('qc_a', { maxAttempts: 3, backoffBaseMs: 0, backoffMaxMs: 0, backoffJitter: 0, leaseMs: 30_000, timeoutMs: null });
    await ledger.jobTypes.define('qc_b', { maxAttempts: 2, backoffBaseMs: 0, backoffMaxMs: 0, backoffJitter: 0, leaseMs: 30_000, timeoutMs: 1000 });
  });

  test('a randomized mix of every transition, with rollups interleaved, keeps counts equal to the job table', async () => {
    const seed = Number(process.env.ORCH_TEST_SEED ?? Date.now() % 2 ** 31);
    const rng = prng(seed);
    const int = (n: number) => Math.floor(rng() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const held = new Map<string, Lease>();
    const takeHeld = (): Lease[] => {
      const all = [...held.values()];
      const chosen = all.filter(() => rng() < 0.5).slice(0, 6);
      chosen.forEach((l) => held.delete(l.jobId));
      return chosen;
    };
    let rollups = 0;
    const maybeRollup = async () => {
      if (rng() < 0.3) {
        await ledger.counts.rollup();
        rollups++;
      }
    };

    const ops: [number, () => Promise<void>][] = [
      [3, async () => { // enqueue a batch across tenants and types, some idempotent repeats (no new job, no count change)
        const inputs: EnqueueInput[] = Array.from({ length: 1 + int(6) }, () => ({
          tenantId: pick(TENANTS), jobType: pick(TYPES), payload: { r: int(1000) }, priority: int(10),
          ...(rng() < 0.2 ? { idempotencyKey: `k${int(5)}` } : {}),
        }));
        await ledger.enqueue(inputs);
      }],
      [3, async () => { // claim, sometimes with a lease short enough to lapse
        const short = rng() < 0.25;
        const leases = await ledger.claim({
          workerId: 'w-rand', jobTypes: rng() < 0.5 ? TYPES : [pick(TYPES)], limit: 1 + int(8),
          ...(rng() < 0.3 ? { tenantIds: [pick(TENANTS)] } : {}), ...(short ? { leaseMs: 50 } : {}),
        });
        leases.forEach((l) => held.set(l.jobId, l));
      }],
      [2, async () => { await ledger.complete(refs(takeHeld()), 'worker:w-rand'); }],
      [2, async () => { await ledger.fail(refs(takeHeld()).map((r) => ({ ...r, error: boom() })), 'worker:w-rand'); }],
      [0.5, async () => { await ledger.fail(refs(takeHeld()).map((r) => ({ ...r, error: boom(false) })), 'worker:w-rand'); }],
      [1, async () => { await ledger.release(refs(takeHeld()), 'worker:w-rand'); }],
      [1.5, async () => { // cancel a job that is queued, failed or leased
        const state = pick(['queued', 'failed', 'leased']);
        const { rows } = await db.pool.query<{ tenant_id: string; id: string }>(
          'SELECT tenant_id, id::text AS id FROM orch.jobs WHERE state = $1 ORDER BY id', [state]);
        if (rows.length === 0) return;
        const job = pick(rows);
        await ledger.cancel(job.tenant_id, job.id, 'operator:test', 'randomized');
        held.delete(job.id);
      }],
      [1, async () => { await ledger.expireLeases(20, 'system:test'); }],
      [0.5, async () => { await ledger.timeoutJobs(20, 'system:test'); }],
      [1.5, async () => { await ledger.counts.rollup(); rollups++; }],
      [0.5, async () => { await assertCountsMatch(`seed ${seed}, mid-mix`); }],
    ];
    const total = ops.reduce((s, [w]) => s + w, 0);
    for (let step = 0; step < 300; step++) {
      let x = rng() * total;
      const op = ops.find(([w]) => (x -= w) < 0)?.[1] ?? ops[0]![1];
      await op();
    }
    await assertCountsMatch(`seed ${seed}, after the random phase`);

    // Then every kind of transition on purpose (priority 1000 puts these jobs at the head of their queues).
    const one = async (tenantId: string, jobType: string, extra: Partial<EnqueueInput> = {}) =>
      (await ledger.enqueue([{ tenantId, jobType, payload: null, priority: 1000, ...extra }]))[0]!.id;
    const claimOne = async (tenantId: string, jobType: string, jobId: string, leaseMs?: number) => {
      const [lease] = await ledger.claim({ workerId: 'w-det', jobTypes: [jobType], limit: 1, tenantIds: [tenantId], ...(leaseMs ? { leaseMs } : {}) });
      assert.equal(lease?.jobId, jobId, `seed ${seed}: claimed the job at the head of the queue`);
      return lease!;
    };

    // failed -> leased again (backoff 0), until attempts are spent: leased -> dead_lettered by fail
    const retried = await one('qc_t3', 'qc_a');
    for (let attempt = 1; attempt <= 3; attempt++) {
      const lease = await claimOne('qc_t3', 'qc_a', retried);
      assert.equal(lease.attempt, attempt);
      const [o] = await ledger.fail([{ ...refs([lease])[0]!, error: boom() }], 'worker:w-det');
      assert.deepEqual(o, { jobId: retried, status: 'ok', state: attempt < 3 ? 'failed' : 'dead_lettered' });
      await maybeRollup();
    }
    // complete, release, cancel from queued, failed and leased
    const done = await one('qc_t1', 'qc_b');
    assert.equal((await ledger.complete(refs([await claimOne('qc_t1', 'qc_b', done)]), 'worker:w-det'))[0]!.status, 'ok');
    await maybeRollup();
    const handedBack = await one('qc_t2', 'qc_a');
    assert.equal((await ledger.release(refs([await claimOne('qc_t2', 'qc_a', handedBack)]), 'worker:w-det'))[0]!.status, 'ok');
    await ledger.cancel('qc_t2', handedBack, 'operator:test');
    await maybeRollup();
    const running = await one('qc_t1', 'qc_a');
    await claimOne('qc_t1', 'qc_a', running);
    await ledger.cancel('qc_t1', running, 'operator:test');
    const waitingRetry = await one('qc_t1', 'qc_a');
    await ledger.fail([{ ...refs([await claimOne('qc_t1', 'qc_a', waitingRetry)])[0]!, error: boom() }], 'worker:w-det');
    await ledger.cancel('qc_t1', waitingRetry, 'operator:test');
    await maybeRollup();
    // lease expiry: back to the queue with attempts left, dead-lettered without
    const lapsesToQueue = await one('qc_t2', 'qc_b', { maxAttempts: 2 });
    const lapsesToDead = await one('qc_t3', 'qc_b', { maxAttempts: 1 });
    await claimOne('qc_t2', 'qc_b', lapsesToQueue, 50);
    await claimOne('qc_t3', 'qc_b', lapsesToDead, 50);
    const expired = new Map<string, string>();
    await eventually(async () => {
      for (const r of await ledger.expireLeases(100, 'system:test')) expired.set(r.jobId, r.to);
      return expired.has(lapsesToQueue) && expired.has(lapsesToDead);
    }, 20_000, 'the short leases to lapse');
    assert.equal(expired.get(lapsesToQueue), 'queued');
    assert.equal(expired.get(lapsesToDead), 'dead_lettered');
    await maybeRollup();
    // run-time limit (qc_b: 1 s)
    const overdue = await one('qc_t1', 'qc_b');
    await claimOne('qc_t1', 'qc_b', overdue);
    const timedOut = new Set<string>();
    await eventually(async () => {
      for (const r of await ledger.timeoutJobs(100, 'system:test')) timedOut.add(r.jobId);
      return timedOut.has(overdue);
    }, 20_000, 'the run-time limit to pass');
    assert.equal((await ledger.getJob('qc_t1', overdue))?.state, 'timed_out');
    // leave one job waiting to retry and one running, so every counted state is present at the end
    const parkedFailed = await one('qc_t3', 'qc_a');
    await ledger.fail([{ ...refs([await claimOne('qc_t3', 'qc_a', parkedFailed)])[0]!, error: boom() }], 'worker:w-det');
    const parkedLeased = await one('qc_t2', 'qc_a');
    await claimOne('qc_t2', 'qc_a', parkedLeased);

    for (const t of [
      'null->queued', 'queued->leased', 'failed->leased', 'leased->succeeded', 'leased->failed', 'leased->dead_lettered',
      'leased->queued:released_by_worker', 'leased->queued:lease_expired', 'leased->dead_lettered:lease_expired',
      'queued->canceled', 'failed->canceled', 'leased->canceled', 'leased->timed_out',
    ]) assert.ok((seen.get(t) ?? 0) > 0, `seed ${seed}: the mix exercised ${t} (seen: ${JSON.stringify([...seen])})`);
    assert.ok(rollups > 0, 'rollups were interleaved');

    await assertCountsMatch(`seed ${seed}, end`);
    const states = new Set((await ledger.counts.all()).map((c) => c.state));
    assert.deepEqual([...states].sort(), [...COUNTED].sort(), `seed ${seed}: every counted state occurs, so the comparison covers them all`);
    await assertRolledUp(`seed ${seed}`);
  });

  test('concurrent rollups on separate pools, while transitions run, never count a delta twice', async () => {
    await assertRolledUp('before');
    const seenBefore = new Map(seen);
    const grew = (prefix: string) => [...seen].some(([k, n]) => k.includes(prefix) && n > (seenBefore.get(k) ?? 0));
    const pools = Array.from({ length: 5 }, () => createPool(db.url, 2));
    let running = true;
    let taken = 0;
    let rounds = 0;
    let snapshotChecks = 0;
    try {
      const rollers = pools.map(async (pool) => {
        const counts = new QueueCounts(pool);
        while (running) {
          taken += await counts.rollup();
          rounds++;
        }
      });
      // At any one snapshot, counts + deltas equal the job table, even mid-traffic and mid-rollup.
      const checker = (async () => {
        while (running) {
          const client = await db.pool.connect();
          try {
            await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
            const counts = asMap(await ledger.counts.all(client));
            const expected = await truth(client);
            await client.query('COMMIT');
            assert.deepEqual(counts, expected, 'counts at one snapshot');
            snapshotChecks++;
          } finally {
            client.release();
          }
        }
      })();
      const workers = [1, 2, 3].map(async (w) => {
        const rng = prng(w * 7919);
        for (let i = 0; i < 40; i++) {
          await ledger.enqueue(Array.from({ length: 1 + Math.floor(rng() * 15) }, (_, k) => ({
            tenantId: TENANTS[(w + k) % 3]!, jobType: TYPES[k % 2]!, payload: k,
          })));
          // some leases short enough to lapse while the reaper below runs, so acks and expiry race
          const leases = await ledger.claim({ workerId: `w-conc-${w}`, jobTypes: TYPES, limit: 1 + Math.floor(rng() * 10), ...(rng() < 0.3 ? { leaseMs: 20 } : {}) });
          const third = Math.ceil(leases.length / 3);
          await ledger.complete(refs(leases.slice(0, third)), `worker:w-conc-${w}`);
          await ledger.fail(refs(leases.slice(third, 2 * third)).map((r) => ({ ...r, error: boom(rng() < 0.8) })), `worker:w-conc-${w}`);
          await ledger.release(refs(leases.slice(2 * third)), `worker:w-conc-${w}`);
        }
      });
      // cancels and lease expiry racing the workers' claims and acks
      const reaper = (async () => {
        while (running) await ledger.expireLeases(50, 'system:test');
      })();
      const canceler = (async () => {
        let i = 0;
        while (running) {
          const { rows } = await db.pool.query<{ tenant_id: string; id: string }>(
            `SELECT tenant_id, id::text AS id FROM orch.jobs WHERE state IN ('queued', 'failed', 'leased') ORDER BY id DESC OFFSET $1 LIMIT 1`, [i++ % 7]);
          if (!rows[0]) continue;
          await ledger.cancel(rows[0].tenant_id, rows[0].id, 'operator:test').catch((e: unknown) => {
            if (!(e instanceof LedgerError && e.code === 'conflict')) throw e; // it moved on meanwhile
          });
        }
      })();
      try {
        await Promise.all(workers);
      } finally {
        running = false;
        await Promise.all([...rollers, checker, reaper, canceler]);
      }
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
    assert.ok(taken > 0, 'the concurrent rollups folded deltas');
    assert.ok(rounds > 5, 'the rollups ran many times');
    assert.ok(snapshotChecks > 0, 'counts were checked mid-traffic');
    for (const t of ['->canceled', ':lease_expired', ':released_by_worker', '->succeeded', '->failed', 'failed->leased']) {
      assert.ok(grew(t), `the concurrent traffic included ${t}`);
    }
    await assertCountsMatch('after concurrent rollups');
    await assertRolledUp('after concurrent rollups');
  });

  test('a transactional enqueue that rolls back leaves the counts unchanged', async () => {
    await ledger.counts.rollup();
    const before = asMap(await ledger.counts.all());
    const jobs = Array.from({ length: 7 }, (_, i) => ({ tenantId: TENANTS[i % 3]!, jobType: 'qc_a', payload: i }));
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const results = await ledger.enqueue(jobs, { client });
      assert.equal(results.length, 7);
      // inside the transaction the counts include the jobs ...
      const inside = asMap(await ledger.counts.all(client));
      assert.equal((inside['qc_t1/qc_a/queued'] ?? 0) - (before['qc_t1/qc_a/queued'] ?? 0), 3);
      // ... a rollup elsewhere meanwhile neither sees nor folds them ...
      await ledger.counts.rollup();
      assert.deepEqual(asMap(await ledger.counts.all()), before, 'uncommitted deltas are invisible outside');
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    // ... and once rolled back they are gone.
    assert.deepEqual(asMap(await ledger.counts.all()), before, 'counts unchanged by the rolled-back enqueue');
    await assertCountsMatch('after the rollback');
    await assertRolledUp('after the rollback');

    // The same transaction committed does count (so the comparison above was not vacuous).
    const c2 = await db.pool.connect();
    try {
      await c2.query('BEGIN');
      await ledger.enqueue(jobs, { client: c2 });
      await c2.query('COMMIT');
    } finally {
      c2.release();
    }
    const afterCommit = asMap(await ledger.counts.all());
    assert.equal((afterCommit['qc_t2/qc_a/queued'] ?? 0) - (before['qc_t2/qc_a/queued'] ?? 0), 2);
    await assertCountsMatch('after the commit');
  });

  test('backlog(tenantIds) is queued + failed per tenant', async () => {
    const backlog = await ledger.counts.backlog([...TENANTS, 'qc_nobody']);
    const t = await truth();
    for (const tenant of TENANTS) {
      const waiting = TYPES.reduce((s, type) => s + (t[`${tenant}/${type}/queued`] ?? 0) + (t[`${tenant}/${type}/failed`] ?? 0), 0);
      assert.equal(backlog.get(tenant) ?? 0, waiting, tenant);
    }
    assert.equal(backlog.get('qc_nobody') ?? 0, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Feature 2: enqueue backpressure (the control plane runs with maxQueuedPerTenant = 10)

const BASE = '/api/v1/orchestrator';
const JOB_TYPE = 'bp_work';

type Res<T> = HttpResult<T>;
interface ErrorBody { error: { code: string; message: string; field: string | null } }

const http = httpClient(() => plane.url, '', { reason: 'backpressure test' });
const call = <T>(method: string, path: string, tenant: string, body?: unknown) => http<T>(method, path, { tenant, body });

const enqueueOne = (tenant: string) => call<ErrorBody & { id: string }>('POST', `${BASE}/jobs`, tenant, { jobType: JOB_TYPE, payload: {} });
const enqueueBatch = (tenant: string, n: number) =>
  call<ErrorBody & { jobs: { id: string }[] }>('POST', `${BASE}/jobs/batch`, tenant, { jobs: Array.from({ length: n }, (_, i) => ({ jobType: JOB_TYPE, payload: { i } })) });

async function jobCount(tenant: string): Promise<number> {
  const { rows } = await apiDb.pool.query<{ n: string }>('SELECT count(*) AS n FROM orch.jobs WHERE tenant_id = $1', [tenant]);
  return Number(rows[0]!.n);
}

async function refusedMetric(tenant: string): Promise<number> {
  const res = await fetch(`${plane.url}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  const m = text.match(new RegExp(`^orchestrator_enqueue_refused_total\\{tenant="${tenant}"\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

async function fill(tenant: string, n: number): Promise<void> {
  const r = await enqueueBatch(tenant, n);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await jobCount(tenant), n);
}

function assertBackpressure(r: Res<ErrorBody>, tenant: string): void {
  assert.equal(r.status, 429, JSON.stringify(r.body));
  assert.equal(r.headers.get('retry-after'), '5');
  assert.deepEqual(Object.keys(r.body).sort(), ['error']);
  assert.equal(r.body.error.code, 'backpressure');
  assert.equal(r.body.error.field, 'tenantId');
  assert.match(r.body.error.message, /limit is 10/);
  assert.match(r.body.error.message, new RegExp(tenant));
}

describe('enqueue backpressure', () => {
  test('an enqueue that would pass the limit is refused with 429, Retry-After and nothing written; up to the limit is accepted', async () => {
    const tenant = 'bp_single';
    for (let i = 0; i < 10; i++) assert.equal((await enqueueOne(tenant)).status, 201, `job ${i + 1} of 10 is within the limit`);
    const refusedBefore = await refusedMetric(tenant);
    const r = await enqueueOne(tenant);
    assertBackpressure(r, tenant);
    assert.equal(await jobCount(tenant), 10, 'nothing written');
    assert.equal(await refusedMetric(tenant), refusedBefore + 1, 'the metric counts the refused job');
  });

  test('a batch that would pass the limit is refused entirely; the other tenant is unaffected; claiming makes room', async () => {
    const tenant = 'bp_batch';
    const other = 'bp_other';
    await fill(tenant, 8);
    const refusedBefore = await refusedMetric(tenant);
    const otherRefusedBefore = await refusedMetric(other);

    assertBackpressure(await enqueueBatch(tenant, 5), tenant);
    assert.equal(await jobCount(tenant), 8, 'no partial batch');
    assert.equal(await refusedMetric(tenant), refusedBefore + 5, 'the metric counts every refused job of the batch');

    // the other tenant has its own allowance
    const o = await enqueueBatch(other, 10);
    assert.equal(o.status, 200, JSON.stringify(o.body));
    assert.equal(await jobCount(other), 10);
    assert.equal(await refusedMetric(other), otherRefusedBefore);

    // workers take 5 of the tenant's jobs (leased jobs are not waiting): 3 wait, so a batch of 6 fits
    const leases: Lease[] = [];
    await eventually(async () => {
      const r = await call<{ leases: Lease[] }>('POST', `${BASE}/claim`, tenant, { workerId: 'bp-worker', jobTypes: [JOB_TYPE], limit: 5 - leases.length });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      leases.push(...r.body.leases);
      return leases.length >= 5;
    }, 10_000, 'five claims');
    assert.equal(leases.length, 5);
    assert.ok(leases.every((l) => l.tenantId === tenant));
    const accepted = await enqueueBatch(tenant, 6);
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    assert.equal(accepted.body.jobs.length, 6);
    assert.equal(await jobCount(tenant), 14);

    // 9 queued: a job that failed and waits to retry is waiting too, so now there is no room
    const failed = await call('POST', `${BASE}/jobs/${leases[0]!.jobId}/fail`, tenant, { leaseId: leases[0]!.leaseId, error: { class: 'Boom', message: 'retry' } });
    assert.equal(failed.status, 200, JSON.stringify(failed.body));
    assertBackpressure(await enqueueOne(tenant), tenant);
    // succeeded and dead-lettered jobs are not waiting, but they free nothing that was counted
    const ok = await call('POST', `${BASE}/jobs/${leases[1]!.jobId}/complete`, tenant, { leaseId: leases[1]!.leaseId });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const dead = await call('POST', `${BASE}/jobs/${leases[2]!.jobId}/fail`, tenant, { leaseId: leases[2]!.leaseId, error: { class: 'Fatal', message: 'no', retryable: false } });
    assert.equal(dead.status, 200, JSON.stringify(dead.body));
    assertBackpressure(await enqueueOne(tenant), tenant);
    // canceling the failed job makes room for exactly one (dead-lettered, succeeded and leased jobs do not count)
    const cancel = await call('POST', `${BASE}/jobs/${leases[0]!.jobId}/cancel`, tenant);
    assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
    const last = await enqueueOne(tenant);
    assert.equal(last.status, 201, `room after the failed job was canceled: ${JSON.stringify(last.body)}`);
    assertBackpressure(await enqueueOne(tenant), tenant);
    assert.equal(await jobCount(tenant), 15);
  });

  test('the ledger refuses a mixed-tenant batch whole with LedgerError backpressure on tenantId', async () => {
    await fill('bp_full', 10);
    const jobsBefore = await jobCount('bp_fresh');
    await assert.rejects(
      plane.ledger.enqueue([
        { tenantId: 'bp_fresh', jobType: JOB_TYPE, payload: 1 },
        { tenantId: 'bp_full', jobType: JOB_TYPE, payload: 2 },
      ]),
      (e: unknown) => e instanceof LedgerError && e.code === 'backpressure' && e.field === 'tenantId',
    );
    assert.equal(await jobCount('bp_fresh'), jobsBefore, 'the tenant under its limit got nothing either');
    assert.equal(await jobCount('bp_full'), 10);
  });

  test('at the limit, resubmitting an accepted job (same idempotency key) returns it; a new job is still refused, and every refused job is counted', async () => {
    const tenant = 'bp_idem';
    await plane.ledger.enqueue([{ tenantId: tenant, jobType: JOB_TYPE, payload: 0, idempotencyKey: 'k1' }]);
    assert.equal((await enqueueBatch(tenant, 9)).status, 200);
    const [again] = await plane.ledger.enqueue([{ tenantId: tenant, jobType: JOB_TYPE, payload: 0, idempotencyKey: 'k1' }]);
    assert.equal(again!.created, false, 'the existing job comes back');
    await assert.rejects(plane.ledger.enqueue([{ tenantId: tenant, jobType: JOB_TYPE, payload: 1, idempotencyKey: 'k2' }]),
      (e: unknown) => e instanceof LedgerError && e.code === 'backpressure');
    assert.equal(await jobCount(tenant), 10);
    const before = await refusedMetric('bp_idem_b');
    await assert.rejects(plane.ledger.enqueue([
      { tenantId: 'bp_idem_b', jobType: JOB_TYPE, payload: 1 }, { tenantId: tenant, jobType: JOB_TYPE, payload: 2 },
    ]));
    assert.equal(await refusedMetric('bp_idem_b'), before + 1, 'the refused job of the tenant under its limit is counted too');
  });

  test('orch enqueue over the limit exits 1 with one stderr line naming the limit', async () => {
    const tenant = 'bp_cli';
    await fill(tenant, 10);
    const r = await runCli(['enqueue', JOB_TYPE, '--payload', '{}', '--api-url', plane.url, '--tenant', tenant]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `exactly one line on stderr, got: ${JSON.stringify(r.stderr)}`);
    assert.match(lines[0]!, /limit is 10/);
    assert.match(lines[0]!, /429/);
    assert.equal(await jobCount(tenant), 10);
    // and under the limit the same command succeeds
    const ok = await runCli(['enqueue', JOB_TYPE, '--payload', '{}', '--api-url', plane.url, '--tenant', 'bp_cli_ok']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(await jobCount('bp_cli_ok'), 1);
  });

  test('the limit comes from ORCH_MAX_QUEUED_PER_TENANT, and 0 turns backpressure off', async () => {
    assert.equal(loadConfig({ ORCH_MAX_QUEUED_PER_TENANT: '3' }).maxQueuedPerTenant, 3);
    assert.equal(loadConfig({ ORCH_MAX_QUEUED_PER_TENANT: '0' }).maxQueuedPerTenant, 0);
    const limited = new Ledger(apiDb.pool, { ...defaultConfig, maxQueuedPerTenant: 3 });
    await limited.enqueue(Array.from({ length: 3 }, (_, i) => ({ tenantId: 'bp_env', jobType: JOB_TYPE, payload: i })));
    await assert.rejects(limited.enqueue([{ tenantId: 'bp_env', jobType: JOB_TYPE, payload: 3 }]), (e: unknown) => e instanceof LedgerError && e.code === 'backpressure');
    const off = new Ledger(apiDb.pool, { ...defaultConfig, maxQueuedPerTenant: 0 });
    await off.enqueue(Array.from({ length: 20 }, (_, i) => ({ tenantId: 'bp_env', jobType: JOB_TYPE, payload: i })));
    assert.equal(await jobCount('bp_env'), 23);
  });
});
