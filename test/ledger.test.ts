import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { LedgerError } from '../src/ledger/errors.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import type { EnqueueInput, Job, Lease } from '../src/ledger/types.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually } from './helpers/server.ts';

let db: TestDatabase;
let ledger: Ledger;

before(async () => {
  db = await createTestDatabase();
  ledger = new Ledger(db.pool, loadConfig({}));
});

after(async () => {
  await db.drop();
});

const T = 'acme';

async function countRows(jobType: string): Promise<{ jobs: number; history: number }> {
  const { rows } = await db.pool.query<{ jobs: string; history: string }>(
    `SELECT (SELECT count(*) FROM orch.jobs WHERE job_type = $1) AS jobs,
            (SELECT count(*) FROM orch.job_history h JOIN orch.jobs j ON j.id = h.job_id WHERE j.job_type = $1) AS history`,
    [jobType],
  );
  return { jobs: Number(rows[0]!.jobs), history: Number(rows[0]!.history) };
}

async function job(id: string, tenantId = T): Promise<Job> {
  const j = await ledger.getJob(tenantId, id);
  assert.ok(j, `job ${id} exists`);
  return j;
}

async function enqueueOne(jobType: string, extra: Partial<EnqueueInput> = {}): Promise<string> {
  const [r] = await ledger.enqueue([{ tenantId: T, jobType, payload: { n: 1 }, ...extra }]);
  assert.ok(r);
  return r.id;
}

async function claimOne(jobType: string, workerId = 'w1', leaseMs?: number): Promise<Lease> {
  const leases = await ledger.claim({ workerId, jobTypes: [jobType], limit: 1, leaseMs });
  assert.equal(leases.length, 1, `one ${jobType} job claimable`);
  return leases[0]!;
}

/** Waits (polling the database clock) until the job's lease has run out. */
async function leaseLapsed(jobId: string): Promise<void> {
  await eventually(async () => {
    const { rows } = await db.pool.query<{ lapsed: boolean }>('SELECT lease_until < now() AS lapsed FROM orch.jobs WHERE id = $1', [jobId]);
    return rows[0]?.lapsed === true;
  }, 10_000, `lease of ${jobId} to lapse`);
}

function isLedgerError(code: LedgerError['code'], field?: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof LedgerError, `expected LedgerError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (field !== undefined) assert.equal(e.field, field);
    return true;
  };
}

describe('enqueue', () => {
  test('single job: created queued with defaults and a first history row', async () => {
    const [r] = await ledger.enqueue([{ tenantId: T, jobType: 'single', payload: { hello: 'world' }, priority: 7, correlationId: 'c-1' }]);
    assert.ok(r);
    assert.equal(r.created, true);
    assert.equal(r.state, 'queued');
    assert.equal(r.tenantId, T);
    assert.equal(r.jobType, 'single');
    assert.match(r.id, /^[1-9][0-9]*$/);
    const j = await job(r.id);
    assert.deepEqual(j.payload, { hello: 'world' });
    assert.equal(j.priority, 7);
    assert.equal(j.attempt, 0);
    assert.equal(j.maxAttempts, 5, 'server default maxAttempts');
    assert.equal(j.correlationId, 'c-1');
    assert.equal(j.leaseId, null);
    const h = await ledger.getHistory(T, r.id);
    assert.equal(h.length, 1);
    assert.deepEqual({ from: h[0]!.from, to: h[0]!.to, attempt: h[0]!.attempt, actor: h[0]!.actor }, { from: null, to: 'queued', attempt: 0, actor: 'api' });
  });

  test('a batch of 5,000 jobs is inserted in one transaction, results in input order', async () => {
    const inputs: EnqueueInput[] = Array.from({ length: 5000 }, (_, i) => ({ tenantId: T, jobType: 'bulk', payload: { i } }));
    const results = await ledger.enqueue(inputs);
    assert.equal(results.length, 5000);
    assert.ok(results.every((r) => r.created && r.state === 'queued'));
    assert.equal(new Set(results.map((r) => r.id)).size, 5000);
    // results[i] is the job made from inputs[i]
    const { rows } = await db.pool.query<{ id: string; i: number }>(`SELECT id::text, (payload->>'i')::int AS i FROM orch.jobs WHERE job_type = 'bulk'`);
    const byId = new Map(rows.map((r) => [r.id, r.i]));
    results.forEach((r, i) => assert.equal(byId.get(r.id), i));
    assert.deepEqual(await countRows('bulk'), { jobs: 5000, history: 5000 });
    // one transaction: every row carries the same creating transaction id
    const tx = await db.pool.query<{ n: string }>(`SELECT count(DISTINCT xmin::text) AS n FROM orch.jobs WHERE job_type = 'bulk'`);
    assert.equal(Number(tx.rows[0]!.n), 1);
  });

  test('a batch with one invalid item is refused with LedgerError and inserts nothing', async () => {
    const inputs: EnqueueInput[] = Array.from({ length: 200 }, (_, i) => ({ tenantId: T, jobType: 'atomic', payload: { i } }));
    inputs[137] = { ...inputs[137]!, priority: -1 };
    await assert.rejects(ledger.enqueue(inputs), isLedgerError('invalid', 'jobs[137].priority'));
    inputs[137] = { ...inputs[137]!, priority: 1, payload: 'x'.repeat(1024 * 1024 + 1) };
    await assert.rejects(ledger.enqueue(inputs), isLedgerError('invalid', 'jobs[137].payload'));
    inputs[137] = { ...inputs[137]!, payload: null, jobType: 'bad type' };
    await assert.rejects(ledger.enqueue(inputs), isLedgerError('invalid', 'jobs[137].jobType'));
    assert.deepEqual(await countRows('atomic'), { jobs: 0, history: 0 });
  });

  test('a batch the database rejects part-way inserts nothing', async () => {
    const inputs: EnqueueInput[] = Array.from({ length: 200 }, (_, i) => ({ tenantId: T, jobType: 'atomic_db', payload: { i } }));
    // passes validation, but PostgreSQL's jsonb refuses an unpaired surrogate: the statement fails as a whole
    inputs[150] = { ...inputs[150]!, payload: 'a\ud800b' };
    await assert.rejects(ledger.enqueue(inputs));
    assert.deepEqual(await countRows('atomic_db'), { jobs: 0, history: 0 });
  });

  test('payload text that merely looks like an escape (a backslash then "u0000") is stored as given', async () => {
    const payload = { regex: '\\u0000', code: 'printf("\\u0000")', path: 'C:\\u0000dir' };
    assert.equal(payload.regex.length, 6, 'six characters, no NUL');
    const [r] = await ledger.enqueue([{ tenantId: T, jobType: 'backslash', payload }]);
    assert.ok(r?.created);
    assert.deepEqual((await job(r.id)).payload, payload);
  });

  test('a payload with a real NUL is refused naming the payload', async () => {
    await assert.rejects(ledger.enqueue([{ tenantId: T, jobType: 'nul', payload: { s: 'a\u0000b' } }]), isLedgerError('invalid', 'payload'));
    assert.deepEqual(await countRows('nul'), { jobs: 0, history: 0 });
  });

  test('idempotency key: same tenant+type+key returns the existing job, also within one batch', async () => {
    const [a] = await ledger.enqueue([{ tenantId: T, jobType: 'idem', payload: { v: 1 }, idempotencyKey: 'k1' }]);
    const [b] = await ledger.enqueue([{ tenantId: T, jobType: 'idem', payload: { v: 2 }, idempotencyKey: 'k1' }]);
    assert.ok(a && b);
    assert.equal(a.created, true);
    assert.equal(b.created, false);
    assert.equal(b.id, a.id);
    assert.deepEqual((await job(a.id)).payload, { v: 1 }, 'the resubmission does not overwrite');

    const batch = await ledger.enqueue([
      { tenantId: T, jobType: 'idem', payload: 1, idempotencyKey: 'k2' },
      { tenantId: T, jobType: 'idem', payload: 2 },
      { tenantId: T, jobType: 'idem', payload: 3, idempotencyKey: 'k2' },
      { tenantId: T, jobType: 'idem', payload: 4, idempotencyKey: 'k1' },
      { tenantId: T, jobType: 'idem', payload: 5, idempotencyKey: 'k3' },
    ]);
    assert.deepEqual(batch.map((r) => r.created), [true, true, false, false, true]);
    assert.equal(batch[2]!.id, batch[0]!.id);
    assert.equal(batch[3]!.id, a.id);
    assert.equal(new Set([batch[0]!.id, batch[1]!.id, batch[4]!.id, a.id]).size, 4);
    assert.deepEqual((await job(batch[4]!.id)).payload, 5);
    assert.deepEqual(await countRows('idem'), { jobs: 4, history: 4 });

    const [other] = await ledger.enqueue([{ tenantId: 'globex', jobType: 'idem', payload: 1, idempotencyKey: 'k1' }]);
    assert.ok(other);
    assert.equal(other.created, true);
    assert.notEqual(other.id, a.id, 'another tenant with the same key gets its own job');
    assert.equal(await ledger.getJob(T, other.id), null);
    const [otherType] = await ledger.enqueue([{ tenantId: T, jobType: 'idem2', payload: 1, idempotencyKey: 'k1' }]);
    assert.ok(otherType);
    assert.equal(otherType.created, true);
    assert.notEqual(otherType.id, a.id);
  });
});

describe('transactional enqueue', () => {
  test('invisible before COMMIT, gone after ROLLBACK', async () => {
    await ledger.jobTypes.define('txn_rb', {});
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const [r] = await ledger.enqueue([{ tenantId: T, jobType: 'txn_rb', payload: 1 }], { client });
      assert.ok(r?.created);
      assert.equal(await ledger.getJob(T, r.id), null, 'not visible outside the transaction');
      assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['txn_rb'], limit: 10 }), []);
      await client.query('ROLLBACK');
      assert.equal(await ledger.getJob(T, r.id), null);
      assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['txn_rb'], limit: 10 }), []);
      assert.deepEqual(await countRows('txn_rb'), { jobs: 0, history: 0 });
    } finally {
      client.release();
    }
  });

  test('claimable after COMMIT', async () => {
    await ledger.jobTypes.define('txn_ok', {});
    const client = await db.pool.connect();
    let id: string;
    try {
      await client.query('BEGIN');
      const [r] = await ledger.enqueue([{ tenantId: T, jobType: 'txn_ok', payload: 'x' }], { client });
      assert.ok(r);
      id = r.id;
      assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['txn_ok'], limit: 10 }), []);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const leases = await ledger.claim({ workerId: 'w', jobTypes: ['txn_ok'], limit: 10 });
    assert.deepEqual(leases.map((l) => l.jobId), [id]);
  });
});

describe('claim', () => {
  test('higher priority first, then older runAfter; delayed jobs wait; limit respected', async () => {
    const now = Date.now();
    const at = (ms: number) => new Date(now + ms);
    const ids = await ledger.enqueue([
      { tenantId: T, jobType: 'order', payload: 'A', priority: 0, runAfter: at(-30_000) },
      { tenantId: T, jobType: 'order', payload: 'B', priority: 5, runAfter: at(-10_000) },
      { tenantId: T, jobType: 'order', payload: 'C', priority: 5, runAfter: at(-20_000) },
      { tenantId: T, jobType: 'order', payload: 'D', priority: 10, runAfter: at(-1_000) },
      { tenantId: T, jobType: 'order', payload: 'E', priority: 1000, runAfter: at(60_000) },
    ]);
    const first = await ledger.claim({ workerId: 'w', jobTypes: ['order'], limit: 2 });
    assert.deepEqual(first.map((l) => l.payload), ['D', 'C']);
    const rest = await ledger.claim({ workerId: 'w', jobTypes: ['order'], limit: 10 });
    assert.deepEqual(rest.map((l) => l.payload), ['B', 'A'], 'the delayed job E is not claimable');
    assert.equal((await job(ids[4]!.id)).state, 'queued');
    for (const l of [...first, ...rest]) {
      assert.equal(l.attempt, 1);
      assert.equal(l.tenantId, T);
      assert.match(l.leaseId, /^[0-9a-f-]{36}$/);
      assert.equal(l.idempotencyKey, `orch-job-${l.jobId}`);
      assert.ok(Date.parse(l.leaseUntil) > Date.now());
      const j = await job(l.jobId);
      assert.equal(j.state, 'leased');
      assert.equal(j.leaseId, l.leaseId);
      assert.equal(j.workerId, 'w');
    }
  });

  test('one claim across several job types takes the best of all of them, within the limit', async () => {
    await ledger.enqueue([
      { tenantId: T, jobType: 'mx_a', payload: 'a1', priority: 1 },
      { tenantId: T, jobType: 'mx_b', payload: 'b3', priority: 3 },
      { tenantId: T, jobType: 'mx_a', payload: 'a2', priority: 2 },
      { tenantId: T, jobType: 'mx_c', payload: 'c9', priority: 9 },
    ]);
    const two = await ledger.claim({ workerId: 'w', jobTypes: ['mx_a', 'mx_b'], limit: 2 });
    // the best of each type; which type comes first turns from claim to claim (fair round robin)
    assert.deepEqual(two.map((l) => l.payload).sort(), ['a2', 'b3']);
    const rest = await ledger.claim({ workerId: 'w', jobTypes: ['mx_a', 'mx_b'], limit: 10 });
    assert.deepEqual(rest.map((l) => l.payload), ['a1']);
    assert.deepEqual(rest.map((l) => l.jobType), ['mx_a']);
  });

  test('tenant filter: a claim restricted to tenants only sees theirs', async () => {
    await ledger.enqueue([
      { tenantId: 'ta', jobType: 'tf', payload: 'ta' },
      { tenantId: 'tb', jobType: 'tf', payload: 'tb' },
    ]);
    const leases = await ledger.claim({ workerId: 'w', jobTypes: ['tf'], limit: 10, tenantIds: ['tb'] });
    assert.deepEqual(leases.map((l) => l.payload), ['tb']);
  });

  test('no double claim: 2,000 jobs, 24 concurrent claimers on separate connections', async () => {
    const N = 2000;
    const enq = await ledger.enqueue(Array.from({ length: N }, (_, i) => ({ tenantId: T, jobType: 'race', payload: i })));
    const pool = createPool(db.url, 24);
    const racing = new Ledger(pool, loadConfig({}));
    try {
      const claimer = async (w: number): Promise<Lease[]> => {
        const got: Lease[] = [];
        for (;;) {
          const leases = await racing.claim({ workerId: `w${w}`, jobTypes: ['race'], limit: 1 + (w % 7) });
          if (leases.length === 0) return got;
          got.push(...leases);
        }
      };
      const all = (await Promise.all(Array.from({ length: 24 }, (_, w) => claimer(w)))).flat();
      assert.equal(all.length, N, 'every job leased once in total');
      assert.deepEqual(new Set(all.map((l) => l.jobId)), new Set(enq.map((r) => r.id)));
      const { rows } = await db.pool.query<{ leased: string; workers: string; claims: string; max_attempt: number }>(
        `SELECT count(*) FILTER (WHERE state = 'leased') AS leased, count(DISTINCT worker_id) AS workers, max(attempt) AS max_attempt,
                (SELECT count(*) FROM orch.job_history h JOIN orch.jobs j2 ON j2.id = h.job_id WHERE j2.job_type = 'race' AND h.to_state = 'leased') AS claims
         FROM orch.jobs WHERE job_type = 'race'`,
      );
      assert.equal(Number(rows[0]!.leased), N);
      assert.equal(Number(rows[0]!.claims), N, 'one leased history row per job');
      assert.equal(rows[0]!.max_attempt, 1);
      assert.ok(Number(rows[0]!.workers) > 1, 'claimers really ran concurrently');
      // each lease the claimers were handed is the one the ledger recorded
      const leaseIds = await db.pool.query<{ id: string; lease_id: string }>(`SELECT id::text, lease_id::text FROM orch.jobs WHERE job_type = 'race'`);
      const recorded = new Map(leaseIds.rows.map((r) => [r.id, r.lease_id]));
      for (const l of all) assert.equal(recorded.get(l.jobId), l.leaseId);
    } finally {
      await pool.end();
    }
  });
});

describe('leases and acks', () => {
  test('heartbeat extends the lease by the claim\'s length and stores progress; the job outlives the type\'s lease', async () => {
    await ledger.jobTypes.define('hb', { leaseMs: 1000 });
    const id = await enqueueOne('hb');
    const lease = await claimOne('hb', 'w1', 5000);
    assert.equal(lease.leaseMs, 5000);
    const [o] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: lease.leaseId, progress: 0.5, message: 'half way' }]);
    assert.ok(o && o.status === 'ok');
    assert.ok(Date.parse(o.leaseUntil) - Date.now() >= 3500, 'renewed by the claim\'s lease length (5 s), not the type\'s (1 s)');
    const j = await job(id);
    assert.equal(j.progress, 0.5);
    assert.equal(j.progressMessage, 'half way');
    assert.equal(j.leaseUntil, o.leaseUntil);
    // past the type's 1 s lease the reaper must leave it alone
    await new Promise((r) => setTimeout(r, 1200));
    const reaped = await ledger.expireLeases(1000, 'system:test');
    assert.ok(!reaped.some((r) => r.jobId === id));
    assert.equal((await job(id)).state, 'leased');
    const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: lease.leaseId }], 'worker:w1');
    assert.equal(c?.status, 'ok');
  });

  test('complete stores result and artifacts; a repeat is a duplicate; fail after complete is refused', async () => {
    const id = await enqueueOne('done');
    const lease = await claimOne('done');
    const artifacts = [{ name: 'report.pdf', uri: 's3://bucket/report.pdf', sha256: 'a'.repeat(64) }];
    const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: lease.leaseId, result: { rows: 42 }, artifacts }], 'worker:w1');
    assert.deepEqual(c, { jobId: id, status: 'ok', state: 'succeeded' });
    let j = await job(id);
    assert.equal(j.state, 'succeeded');
    assert.deepEqual(j.result, { rows: 42 });
    assert.deepEqual(j.artifacts, artifacts);
    assert.equal(j.progress, 1);
    assert.equal(j.leaseUntil, null);
    assert.ok(j.finishedAt);

    const [dup] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: lease.leaseId, result: { rows: 0 } }], 'worker:w1');
    assert.deepEqual(dup, { jobId: id, status: 'duplicate', state: 'succeeded' });
    const [f] = await ledger.fail([{ tenantId: T, jobId: id, leaseId: lease.leaseId, error: { class: 'E', message: 'late' } }], 'worker:w1');
    assert.deepEqual(f, { jobId: id, status: 'refused', reason: 'already_acked', state: 'succeeded' });
    const [hb] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: lease.leaseId }]);
    assert.equal(hb?.status, 'refused');
    j = await job(id);
    assert.deepEqual(j.result, { rows: 42 }, 'the duplicate did not overwrite the result');
    assert.equal(j.lastError, null);
    const h = await ledger.getHistory(T, id);
    assert.equal(h.filter((e) => e.to === 'succeeded').length, 1);
  });

  test('a wrong lease id or an unknown job is refused and changes nothing', async () => {
    const id = await enqueueOne('wrong');
    const lease = await claimOne('wrong');
    const before = await job(id);
    const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: randomUUID() }], 'worker:x');
    assert.deepEqual(c, { jobId: id, status: 'refused', reason: 'lease_lost', state: 'leased' });
    const [f] = await ledger.fail([{ tenantId: T, jobId: id, leaseId: randomUUID(), error: { class: 'E', message: 'm' } }], 'worker:x');
    assert.equal(f?.status === 'refused' && f.reason, 'lease_lost');
    const [hb] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: randomUUID(), progress: 0.9 }]);
    assert.equal(hb?.status === 'refused' && hb.reason, 'lease_lost');
    const [missing] = await ledger.complete([{ tenantId: T, jobId: '999999999', leaseId: lease.leaseId }], 'worker:x');
    assert.deepEqual(missing, { jobId: '999999999', status: 'refused', reason: 'not_found', state: null });
    assert.deepEqual(await job(id), before);
  });

  test('a lapsed lease nobody reaped is still the holder\'s: heartbeat renews it, the ack completes the job', async () => {
    await ledger.jobTypes.define('late', { leaseMs: 1000 });
    const id = await enqueueOne('late');
    const lease = await claimOne('late');
    await leaseLapsed(id);
    const [hb] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: lease.leaseId }]);
    assert.equal(hb?.status, 'ok', 'a worker cut off by an outage keeps its job');
    const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: lease.leaseId, result: 'late but mine' }], 'worker:w1');
    assert.equal(c?.status, 'ok');
    assert.equal((await job(id)).state, 'succeeded');
  });

  test('a lapsed lease that the reaper re-queued is refused (lease_expired) and the job is unchanged', async () => {
    await ledger.jobTypes.define('late2', { leaseMs: 1000, maxAttempts: 3 });
    const id = await enqueueOne('late2');
    const lease = await claimOne('late2');
    await leaseLapsed(id);
    await ledger.expireLeases(1000, 'system:test');
    const before = await job(id);
    assert.equal(before.state, 'queued');
    const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: lease.leaseId, result: 'too late' }], 'worker:w1');
    assert.equal(c?.status === 'refused' && c.reason, 'lease_expired');
    const [hb] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: lease.leaseId }]);
    assert.equal(hb?.status === 'refused' && hb.reason, 'lease_expired');
    assert.deepEqual(await job(id), before);
  });

  test('a heartbeat renews by the lease length the claim was granted, not the job type\'s', async () => {
    await ledger.jobTypes.define('long', { leaseMs: 30_000 });
    const id = await enqueueOne('long');
    const lease = await claimOne('long', 'w1', 600_000);
    const [hb] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: lease.leaseId }]);
    assert.ok(hb?.status === 'ok');
    const left = new Date(hb.leaseUntil).getTime() - Date.now();
    assert.ok(left > 500_000, `renewed by 600 s, not 30 s (${left} ms left)`);
  });
});

describe('fail and retry', () => {
  test('retryable failure: failed with exponential backoff, then claimable again after runAfter', async () => {
    await ledger.jobTypes.define('bo', { backoffBaseMs: 300, backoffMaxMs: 3_600_000, backoffJitter: 0, maxAttempts: 4 });
    const id = await enqueueOne('bo');
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      const lease = await eventually(async () => (await ledger.claim({ workerId: 'w', jobTypes: ['bo'], limit: 1 }))[0], 10_000, 'retry to be claimable');
      assert.equal(lease.jobId, id);
      assert.equal(lease.attempt, attempt);
      const [o] = await ledger.fail([{ tenantId: T, jobId: id, leaseId: lease.leaseId, error: { class: 'Flaky', message: `try ${attempt}`, details: { attempt } } }], 'worker:w');
      assert.deepEqual(o, { jobId: id, status: 'ok', state: 'failed' });
      const { rows } = await db.pool.query<{ delay: number }>(
        'SELECT extract(epoch FROM run_after - updated_at) * 1000 AS delay FROM orch.jobs WHERE id = $1', [id]);
      delays.push(Number(rows[0]!.delay));
      const j = await job(id);
      assert.equal(j.state, 'failed');
      assert.deepEqual(j.lastError, { class: 'Flaky', message: `try ${attempt}`, retryable: true, details: { attempt } });
      assert.ok(Date.parse(j.runAfter) > Date.now() - 50, 'runAfter moved into the future');
      assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['bo'], limit: 1 }), [], 'not claimable during backoff');
    }
    // base * 2^(attempt-1) with no jitter
    delays.forEach((d, i) => assert.ok(Math.abs(d - 300 * 2 ** i) < 5, `delay ${i + 1} was ${d} ms`));
  });

  test('backoff is capped by backoffMaxMs', async () => {
    await ledger.jobTypes.define('bo_cap', { backoffBaseMs: 400, backoffMaxMs: 500, backoffJitter: 0, maxAttempts: 3 });
    const id = await enqueueOne('bo_cap');
    const l1 = await claimOne('bo_cap');
    await ledger.fail([{ tenantId: T, jobId: id, leaseId: l1.leaseId, error: { class: 'E', message: 'm' } }], 'worker:w');
    const l2 = await eventually(async () => (await ledger.claim({ workerId: 'w', jobTypes: ['bo_cap'], limit: 1 }))[0], 10_000);
    await ledger.fail([{ tenantId: T, jobId: id, leaseId: l2.leaseId, error: { class: 'E', message: 'm' } }], 'worker:w');
    const { rows } = await db.pool.query<{ delay: number }>('SELECT extract(epoch FROM run_after - updated_at) * 1000 AS delay FROM orch.jobs WHERE id = $1', [id]);
    assert.ok(Math.abs(Number(rows[0]!.delay) - 500) < 5, `capped delay was ${rows[0]!.delay}`);
  });

  test('attempts exhausted: dead_lettered with the last error', async () => {
    await ledger.jobTypes.define('exhaust', { backoffBaseMs: 0, backoffMaxMs: 0, maxAttempts: 2 });
    const id = await enqueueOne('exhaust');
    const l1 = await claimOne('exhaust');
    const [o1] = await ledger.fail([{ tenantId: T, jobId: id, leaseId: l1.leaseId, error: { class: 'E1', message: 'first' } }], 'worker:w');
    assert.equal(o1?.state, 'failed');
    const l2 = await claimOne('exhaust');
    assert.equal(l2.attempt, 2);
    const [o2] = await ledger.fail([{ tenantId: T, jobId: id, leaseId: l2.leaseId, error: { class: 'E2', message: 'second' } }], 'worker:w');
    assert.deepEqual(o2, { jobId: id, status: 'ok', state: 'dead_lettered' });
    const j = await job(id);
    assert.equal(j.state, 'dead_lettered');
    assert.equal(j.attempt, 2);
    assert.ok(j.finishedAt);
    assert.deepEqual(j.lastError, { class: 'E2', message: 'second', retryable: true });
    assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['exhaust'], limit: 5 }), []);
  });

  test('retryable=false dead-letters at once, whatever attempts are left', async () => {
    const id = await enqueueOne('fatal', { maxAttempts: 10 });
    const l = await claimOne('fatal');
    const [o] = await ledger.fail([{ tenantId: T, jobId: id, leaseId: l.leaseId, error: { class: 'Bad', message: 'no', retryable: false } }], 'worker:w');
    assert.deepEqual(o, { jobId: id, status: 'ok', state: 'dead_lettered' });
    const j = await job(id);
    assert.equal(j.attempt, 1);
    assert.deepEqual(j.lastError, { class: 'Bad', message: 'no', retryable: false });
    const h = await ledger.getHistory(T, id);
    const last = h[h.length - 1]!;
    assert.deepEqual([last.from, last.to, last.reason], ['leased', 'dead_lettered', 'worker_failed']);
    assert.deepEqual(last.error, { class: 'Bad', message: 'no', retryable: false });
    assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['fatal'], limit: 5 }), []);
  });
});

describe('cancel', () => {
  test('queued job: canceled with a history row, no longer claimable', async () => {
    const id = await enqueueOne('cx_q');
    await ledger.cancel(T, id, 'operator:alice', 'not needed');
    const j = await job(id);
    assert.equal(j.state, 'canceled');
    assert.ok(j.finishedAt);
    const last = (await ledger.getHistory(T, id)).at(-1)!;
    assert.deepEqual([last.from, last.to, last.actor, last.reason], ['queued', 'canceled', 'operator:alice', 'not needed']);
    assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['cx_q'], limit: 5 }), []);
  });

  test('leased job: canceled; its heartbeat and acks are refused with reason canceled', async () => {
    const id = await enqueueOne('cx_l');
    const l = await claimOne('cx_l');
    await ledger.cancel(T, id, 'api');
    const [hb] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: l.leaseId, progress: 0.1 }]);
    assert.deepEqual(hb, { jobId: id, status: 'refused', reason: 'canceled', state: 'canceled' });
    const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: l.leaseId, result: 1 }], 'worker:w1');
    assert.deepEqual(c, { jobId: id, status: 'refused', reason: 'canceled', state: 'canceled' });
    const [f] = await ledger.fail([{ tenantId: T, jobId: id, leaseId: l.leaseId, error: { class: 'E', message: 'm' } }], 'worker:w1');
    assert.equal(f?.status === 'refused' && f.reason, 'canceled');
    const j = await job(id);
    assert.equal(j.state, 'canceled');
    assert.equal(j.result, null);
    assert.equal(j.progress, null);
    const [r] = await ledger.release([{ tenantId: T, jobId: id, leaseId: l.leaseId }], 'worker:w1');
    assert.equal(r?.status, 'refused');
    assert.equal((await job(id)).state, 'canceled');
  });

  test('failed (waiting to retry) job can be canceled', async () => {
    await ledger.jobTypes.define('cx_f', { backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
    const id = await enqueueOne('cx_f');
    const l = await claimOne('cx_f');
    await ledger.fail([{ tenantId: T, jobId: id, leaseId: l.leaseId, error: { class: 'E', message: 'm' } }], 'worker:w1');
    await ledger.cancel(T, id, 'api');
    assert.equal((await job(id)).state, 'canceled');
  });

  test('terminal job: conflict; another tenant or unknown id: not_found; nothing changes', async () => {
    const id = await enqueueOne('cx_t');
    const l = await claimOne('cx_t');
    await ledger.complete([{ tenantId: T, jobId: id, leaseId: l.leaseId }], 'worker:w1');
    await assert.rejects(ledger.cancel(T, id, 'api'), isLedgerError('conflict', 'jobId'));
    assert.equal((await job(id)).state, 'succeeded');

    const other = await enqueueOne('cx_t');
    await assert.rejects(ledger.cancel('globex', other, 'api'), isLedgerError('not_found', 'jobId'));
    assert.equal((await job(other)).state, 'queued');
    await assert.rejects(ledger.cancel(T, '987654321', 'api'), isLedgerError('not_found'));
    await ledger.cancel(T, other, 'api');
    await assert.rejects(ledger.cancel(T, other, 'api'), isLedgerError('conflict'));
    assert.equal((await ledger.getHistory(T, other)).length, 2);
  });
});

describe('lease reaper transitions', () => {
  test('expired lease: back to queued (reason lease_expired), attempt counted, re-claimable; old lease is lost', async () => {
    await ledger.jobTypes.define('exp', { leaseMs: 1000, maxAttempts: 3 });
    const id = await enqueueOne('exp');
    const live = await enqueueOne('exp_live');
    const liveLease = await claimOne('exp_live');
    const l1 = await claimOne('exp');
    await leaseLapsed(id);
    const records = await ledger.expireLeases(1000, 'system:lease-reaper');
    assert.deepEqual(records.filter((r) => r.jobId === id).map((r) => [r.from, r.to, r.reason]), [['leased', 'queued', 'lease_expired']]);
    assert.ok(!records.some((r) => r.jobId === live), 'a live lease is not reaped');
    assert.equal((await job(live)).state, 'leased');
    assert.equal((await job(live)).leaseId, liveLease.leaseId);

    const j = await job(id);
    assert.equal(j.state, 'queued');
    assert.equal(j.attempt, 1);
    assert.equal(j.leaseUntil, null);
    const last = (await ledger.getHistory(T, id)).at(-1)!;
    assert.deepEqual([last.from, last.to, last.reason, last.attempt, last.leaseId, last.actor], ['leased', 'queued', 'lease_expired', 1, l1.leaseId, 'system:lease-reaper']);

    const l2 = await claimOne('exp', 'w2');
    assert.equal(l2.attempt, 2);
    assert.notEqual(l2.leaseId, l1.leaseId);
    const [stale] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: l1.leaseId }], 'worker:w1');
    assert.deepEqual(stale, { jobId: id, status: 'refused', reason: 'lease_lost', state: 'leased' });
    const [ok] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: l2.leaseId }], 'worker:w2');
    assert.equal(ok?.status, 'ok');
  });

  test('expired lease with attempts spent: dead_lettered', async () => {
    await ledger.jobTypes.define('exp_dl', { leaseMs: 1000, maxAttempts: 1 });
    const id = await enqueueOne('exp_dl');
    await claimOne('exp_dl');
    await leaseLapsed(id);
    const records = await ledger.expireLeases(1000, 'system:lease-reaper');
    assert.deepEqual(records.filter((r) => r.jobId === id).map((r) => r.to), ['dead_lettered']);
    const j = await job(id);
    assert.equal(j.state, 'dead_lettered');
    assert.ok(j.finishedAt);
    assert.equal(j.lastError?.class, 'LeaseExpired');
    assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['exp_dl'], limit: 5 }), []);
  });

  test('run-time limit: a job that keeps heartbeating past timeoutMs is timed_out', async () => {
    await ledger.jobTypes.define('slow', { leaseMs: 5000, timeoutMs: 1000 });
    const id = await enqueueOne('slow');
    const l = await claimOne('slow');
    assert.ok(l.deadlineAt);
    // keep heartbeating: renewals succeed until the deadline, then are refused as timed_out
    const refused = await eventually(async () => {
      const [o] = await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: l.leaseId }]);
      return o?.status === 'refused' ? o : null;
    }, 10_000, 'heartbeat to be refused at the deadline');
    assert.equal(refused.reason, 'timed_out');
    assert.equal((await ledger.expireLeases(1000, 'system:test')).filter((r) => r.jobId === id).length, 0, 'its lease is still live');
    const records = await ledger.timeoutJobs(1000, 'system:lease-reaper');
    assert.deepEqual(records.filter((r) => r.jobId === id).map((r) => [r.from, r.to, r.reason]), [['leased', 'timed_out', 'timeout']]);
    const j = await job(id);
    assert.equal(j.state, 'timed_out');
    assert.equal(j.lastError?.class, 'Timeout');
    const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: l.leaseId }], 'worker:w1');
    assert.deepEqual(c, { jobId: id, status: 'refused', reason: 'timed_out', state: 'timed_out' });
    assert.deepEqual(await ledger.claim({ workerId: 'w', jobTypes: ['slow'], limit: 5 }), []);
  });
});

test('release: back to queued with the attempt given back; a stale release is refused', async () => {
  const id = await enqueueOne('rel', { maxAttempts: 1 });
  const l1 = await claimOne('rel');
  const [o] = await ledger.release([{ tenantId: T, jobId: id, leaseId: l1.leaseId }], 'worker:w1');
  assert.deepEqual(o, { jobId: id, status: 'ok', state: 'queued' });
  const j = await job(id);
  assert.equal(j.state, 'queued');
  assert.equal(j.attempt, 0);
  const last = (await ledger.getHistory(T, id)).at(-1)!;
  assert.deepEqual([last.from, last.to, last.reason], ['leased', 'queued', 'released_by_worker']);
  const [again] = await ledger.release([{ tenantId: T, jobId: id, leaseId: l1.leaseId }], 'worker:w1');
  assert.equal(again?.status, 'refused');
  const l2 = await claimOne('rel');
  assert.equal(l2.attempt, 1, 'the single allowed attempt is still available');
  const [c] = await ledger.complete([{ tenantId: T, jobId: id, leaseId: l2.leaseId }], 'worker:w1');
  assert.equal(c?.state, 'succeeded');
});

describe('history', () => {
  test('a full lifecycle is recorded transition by transition, in order', async () => {
    await ledger.jobTypes.define('life', { backoffBaseMs: 0, backoffMaxMs: 0, maxAttempts: 3 });
    const id = await enqueueOne('life');
    const l1 = await claimOne('life', 'wa');
    await ledger.fail([{ tenantId: T, jobId: id, leaseId: l1.leaseId, error: { class: 'Oops', message: 'boom' } }], 'worker:wa');
    const l2 = await claimOne('life', 'wb');
    await ledger.heartbeat([{ tenantId: T, jobId: id, leaseId: l2.leaseId, progress: 0.5 }]);
    await ledger.complete([{ tenantId: T, jobId: id, leaseId: l2.leaseId, result: 'ok' }], 'worker:wb');
    const h = await ledger.getHistory(T, id);
    assert.deepEqual(h.map((e) => ({ from: e.from, to: e.to, attempt: e.attempt, leaseId: e.leaseId, actor: e.actor, reason: e.reason })), [
      { from: null, to: 'queued', attempt: 0, leaseId: null, actor: 'api', reason: null },
      { from: 'queued', to: 'leased', attempt: 1, leaseId: l1.leaseId, actor: 'worker:wa', reason: null },
      { from: 'leased', to: 'failed', attempt: 1, leaseId: l1.leaseId, actor: 'worker:wa', reason: 'worker_failed' },
      { from: 'failed', to: 'leased', attempt: 2, leaseId: l2.leaseId, actor: 'worker:wb', reason: null },
      { from: 'leased', to: 'succeeded', attempt: 2, leaseId: l2.leaseId, actor: 'worker:wb', reason: null },
    ]);
    assert.deepEqual(h[2]!.error, { class: 'Oops', message: 'boom', retryable: true });
    for (let i = 1; i < h.length; i++) assert.ok(Date.parse(h[i]!.at) >= Date.parse(h[i - 1]!.at), 'timestamps never go back');
    assert.equal(await ledger.getHistory('globex', id).then((x) => x.length), 0, 'history is tenant-scoped');
  });

  test('history stays in transition order when transitions run on different database connections', async () => {
    // A server runs transitions on many pooled connections (API, reaper, notifier...).
    await ledger.enqueue([{ tenantId: T, jobType: 'conn_warm', payload: 1 }]); // a pooled connection writes history first
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    let id: string;
    try {
      const [r] = await ledger.enqueue([{ tenantId: T, jobType: 'conn', payload: 1 }], { client: other });
      id = r!.id;
    } finally {
      await other.end();
    }
    const l = await claimOne('conn');
    await ledger.complete([{ tenantId: T, jobId: id, leaseId: l.leaseId }], 'worker:w1');
    const h = await ledger.getHistory(T, id);
    assert.deepEqual(h.map((e) => e.to), ['queued', 'leased', 'succeeded']);
  });
});

test('job type cap: a new type beyond maxJobTypes is refused (limit) and nothing is inserted', async () => {
  const capDb = await createTestDatabase();
  try {
    const capped = new Ledger(capDb.pool, loadConfig({}, { maxJobTypes: 3 }));
    await capped.enqueue([{ tenantId: T, jobType: 'one', payload: 1 }, { tenantId: T, jobType: 'two', payload: 2 }]);
    await capped.jobTypes.define('three', {});
    const counts = async () => {
      const { rows } = await capDb.pool.query<{ jobs: string; types: string; history: string }>(
        'SELECT (SELECT count(*) FROM orch.jobs) AS jobs, (SELECT count(*) FROM orch.job_types) AS types, (SELECT count(*) FROM orch.job_history) AS history');
      return rows[0]!;
    };
    const before = await counts();
    assert.deepEqual(before, { jobs: '2', types: '3', history: '2' });
    await assert.rejects(capped.enqueue([{ tenantId: T, jobType: 'four', payload: 4 }]), isLedgerError('limit', 'jobType'));
    await assert.rejects(
      capped.enqueue([{ tenantId: T, jobType: 'one', payload: 1 }, { tenantId: T, jobType: 'four', payload: 4 }]),
      isLedgerError('limit', 'jobType'),
    );
    await assert.rejects(capped.jobTypes.define('five', {}), isLedgerError('limit'));
    // a different Ledger (another replica) over the same database is held to the same cap
    const replica = new Ledger(capDb.pool, loadConfig({}, { maxJobTypes: 3 }));
    await assert.rejects(replica.enqueue([{ tenantId: T, jobType: 'six', payload: 6 }]), isLedgerError('limit'));
    assert.deepEqual(await counts(), before);
    const [ok] = await capped.enqueue([{ tenantId: T, jobType: 'three', payload: 3 }]);
    assert.equal(ok?.created, true, 'existing types still accept jobs');
  } finally {
    await capDb.drop();
  }
});
