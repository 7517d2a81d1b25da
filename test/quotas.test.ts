import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { defaultConfig, type Config } from '../src/config/config.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import { Pauses } from '../src/flow/pauses.ts';
import { Quotas, type Quota, type QuotaUse } from '../src/flow/quotas.ts';
import { createPool } from '../src/ledger/db.ts';
import { LedgerError } from '../src/ledger/errors.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import type { Lease, LeaseRef } from '../src/ledger/types.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, runCli, startTestServer } from './helpers/server.ts';
import { httpRequest, type HttpOptions } from './helpers/http.ts';

/**
 * Quotas per (tenant, job type), either of which may be "*": concurrency caps,
 * token buckets, hourly counts, weights, pauses and boosts, enforced in the
 * claim statement; the control side over the ledger, the HTTP API and the CLI;
 * the audit log every change writes.
 *
 * Every test uses job types of its own, so quotas of one test never cover the
 * work of another.
 */

const BASE = '/api/v1/orchestrator';
const OP = { actor: 'operator:test', reason: 'quota test', ticket: 'OPS-1' };
const WHY = { 'x-operator-reason': 'quota test', 'x-operator-ticket': 'OPS-1' };

let db: TestDatabase;
let plane: ControlPlane;
let ledger: Ledger;
let quotas: Quotas;

/** The quota keeper recounts active leases: at a ten-minute interval it runs once at start and never again during the file, so it cannot hide a slot an ack failed to free, nor clear a boost. */
const maintenance = (quotaKeeperIntervalMs: number): Config['maintenance'] => ({ ...defaultConfig.maintenance, quotaKeeperIntervalMs });

before(async () => {
  db = await createTestDatabase();
  // A poll tick far beyond any long-poll here: only a wake-up can end one early.
  plane = await startTestServer(db.url, { claimPollIntervalMs: 120_000, maintenance: maintenance(600_000) });
  ledger = new Ledger(db.pool, defaultConfig);
  quotas = new Quotas(db.pool, ledger.tenants);
});

after(async () => {
  await plane?.stop();
  await db?.drop();
});

interface ErrorBody { error: { code: string; message: string; field: string | null } }

const call = <T>(method: string, path: string, opts: HttpOptions & { url?: string } = {}) =>
  httpRequest<T>(`${opts.url ?? plane.url}${BASE}${path}`, method, opts);

async function enqueue(tenantId: string, jobType: string, n: number, priority?: (i: number) => number): Promise<string[]> {
  const results = await ledger.enqueue(Array.from({ length: n }, (_, i) => ({ tenantId, jobType, payload: i, priority: priority?.(i) })));
  return results.map((r) => r.id);
}

const refs = (leases: Lease[]): LeaseRef[] => leases.map(({ tenantId, jobId, leaseId }) => ({ tenantId, jobId, leaseId }));
const claimRound = (jobTypes: string[], limit: number) => ledger.claimRound({ workerId: 'quota-test', jobTypes, limit });
const claim = (jobTypes: string[], limit: number) => ledger.claim({ workerId: 'quota-test', jobTypes, limit });
const count = (leases: Lease[], tenantId: string, jobType?: string) =>
  leases.filter((l) => l.tenantId === tenantId && (jobType === undefined || l.jobType === jobType)).length;

async function completeAll(leases: Lease[]): Promise<void> {
  const outcomes = await ledger.complete(refs(leases), 'worker:quota-test');
  assert.deepEqual(outcomes.map((o) => o.status), leases.map(() => 'ok'));
}

/** The quota's line in the summary. */
async function use(tenantId: string, jobType: string): Promise<QuotaUse> {
  const u = (await quotas.summary()).find((q) => q.tenantId === tenantId && q.jobType === jobType);
  assert.ok(u, `quota ${tenantId}/${jobType} in the summary`);
  return u;
}

/** Claims until a round brings nothing (a single claim may take less than its limit to keep rounds fair). */
async function claimAll(jobTypes: string[]): Promise<Lease[]> {
  const all: Lease[] = [];
  for (;;) {
    const leases = await claim(jobTypes, 100);
    if (leases.length === 0) return all;
    all.push(...leases);
  }
}

/** A tiny random pause, so racing claimers interleave differently on every run. */
const jiffy = () => new Promise((r) => setTimeout(r, Math.random() * 3));

/**
 * Runs `n` claimers at once, each a Ledger on a pool of one connection of its
 * own. The first failure stops the others (they poll `stopped`) and is thrown.
 */
async function race(n: number, run: (claimer: Ledger, i: number, stopped: () => boolean) => Promise<void>): Promise<void> {
  const pools = Array.from({ length: n }, () => createPool(db.url, 1));
  let failure: unknown = null;
  try {
    await Promise.all(pools.map((p) => p.query('SELECT 1'))); // all connected before the race starts
    await Promise.all(pools.map((p, i) => run(new Ledger(p, defaultConfig), i, () => failure !== null).catch((err: unknown) => {
      failure ??= err;
    })));
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
  if (failure !== null) throw failure;
}

interface AuditRow { id: number; at: Date; actor: string; tenant_id: string | null; action: string; target: string; reason: string | null; ticket: string | null; result: string; details: Record<string, unknown> | null }

async function auditSince(id: number): Promise<AuditRow[]> {
  const { rows } = await db.pool.query<AuditRow>('SELECT id::int AS id, at, actor, tenant_id, action, target, reason, ticket, result, details FROM orch.audit_log WHERE id > $1 ORDER BY id', [id]);
  return rows;
}

async function auditHead(): Promise<number> {
  const { rows } = await db.pool.query<{ id: number }>('SELECT coalesce(max(id), 0)::int AS id FROM orch.audit_log');
  return rows[0]!.id;
}

async function states(jobType: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ state: string; n: number }>('SELECT state, count(*)::int AS n FROM orch.jobs WHERE job_type = $1 GROUP BY state', [jobType]);
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

describe('concurrency caps', () => {
  test('12 racing claimers never exceed the (*, type) and (tenant, type) caps; every job runs once; all slots come back', { timeout: 120_000 }, async () => {
    const type = 'cap_race';
    const tenants = ['cap_t1', 'cap_t2', 'cap_t3'];
    const TOTAL = 300;
    const CAP = 7;
    const CAP_T1 = 3;
    await ledger.enqueue(tenants.flatMap((tenantId) => Array.from({ length: TOTAL / 3 }, (_, i) => ({ tenantId, jobType: type, payload: i }))));
    await quotas.set('*', type, { maxActive: CAP }, OP);
    await quotas.set('cap_t1', type, { maxActive: CAP_T1 }, OP);

    // The caps bind: a claim for far more than the cap gets the cap, then "concurrency".
    const first = await claim([type], 50);
    assert.equal(first.length, CAP);
    assert.ok(count(first, 'cap_t1') <= CAP_T1);
    const full = await claimRound([type], 50);
    assert.deepEqual(full.leases, []);
    assert.deepEqual(new Set(full.throttled.map((t) => t.reason)), new Set(['concurrency']));
    await completeAll(first);
    const completed = first.map((l) => l.jobId);

    /** One snapshot of the database: leased jobs and the quotas' active counts (net of slots acks released) move together and stay within the caps. */
    async function checkSnapshot(): Promise<void> {
      const { rows: [s] } = await db.pool.query<{ leased: number; leased_t1: number; active: number; active_t1: number }>(
        `SELECT (SELECT count(*)::int FROM orch.jobs WHERE job_type = $1 AND state = 'leased') AS leased,
                (SELECT count(*)::int FROM orch.jobs WHERE job_type = $1 AND state = 'leased' AND tenant_id = 'cap_t1') AS leased_t1,
                (SELECT active - coalesce((SELECT sum(n) FROM orch.quota_releases WHERE tenant_id = '*' AND job_type = $1), 0)
                   FROM orch.quotas WHERE tenant_id = '*' AND job_type = $1)::int AS active,
                (SELECT active - coalesce((SELECT sum(n) FROM orch.quota_releases WHERE tenant_id = 'cap_t1' AND job_type = $1), 0)
                   FROM orch.quotas WHERE tenant_id = 'cap_t1' AND job_type = $1)::int AS active_t1`, [type]);
      assert.ok(s!.leased <= CAP && s!.leased_t1 <= CAP_T1, `leased ${s!.leased} (cap ${CAP}), of cap_t1 ${s!.leased_t1} (cap ${CAP_T1})`);
      assert.deepEqual([s!.active, s!.active_t1], [s!.leased, s!.leased_t1], 'active counts equal the leased jobs they cover');
    }

    // Leases held now, as the claimers know them: added once a claim returns, removed before the ack is sent,
    // so this never counts more than the database does.
    const held = new Map<string, string>();
    await race(12, async (claimer, i, stopped) => {
      const worker = `racer-${i}`;
      while (completed.length < TOTAL && !stopped()) {
        const leases = await claimer.claim({ workerId: worker, jobTypes: [type], limit: 1 + Math.floor(Math.random() * 5) });
        for (const l of leases) held.set(l.leaseId, l.tenantId);
        const heldT1 = [...held.values()].filter((t) => t === 'cap_t1').length;
        assert.ok(held.size <= CAP && heldT1 <= CAP_T1, `held ${held.size} (cap ${CAP}), of cap_t1 ${heldT1} (cap ${CAP_T1})`);
        await checkSnapshot();
        await Promise.all(leases.map(async (l) => {
          await jiffy();
          held.delete(l.leaseId);
          const [outcome] = await claimer.complete(refs([l]), `worker:${worker}`);
          assert.equal(outcome?.status, 'ok');
          completed.push(l.jobId);
        }));
        if (leases.length === 0) await jiffy();
      }
    });

    assert.equal(completed.length, TOTAL);
    assert.equal(new Set(completed).size, TOTAL, 'no job was handed out twice');
    assert.deepEqual(await states(type), { succeeded: TOTAL });
    assert.equal((await use('*', type)).active, 0);
    assert.equal((await use('cap_t1', type)).active, 0);
  });

  test('a job is covered by (tenant, type), (tenant, *), (*, type) and (*, *): every one must allow its claim', async () => {
    await enqueue('cov_t1', 'cov_x', 5);
    await enqueue('cov_t1', 'cov_y', 5);
    await enqueue('cov_t2', 'cov_x', 5);
    await enqueue('cov_t2', 'cov_y', 5);
    await quotas.set('cov_t1', 'cov_x', { maxActive: 1 }, OP);
    await quotas.set('cov_t1', '*', { maxActive: 2 }, OP);
    await quotas.set('*', 'cov_y', { maxActive: 2 }, OP);

    const leases = await claimAll(['cov_x', 'cov_y']);
    assert.equal(count(leases, 'cov_t1', 'cov_x'), 1, '(cov_t1, cov_x) cap');
    assert.equal(count(leases, 'cov_t1'), 2, '(cov_t1, *) cap across job types');
    assert.equal(leases.filter((l) => l.jobType === 'cov_y').length, 2, '(*, cov_y) cap across tenants');
    assert.equal(count(leases, 'cov_t2', 'cov_x'), 5, 'work no cap covers all runs');
    assert.equal((await use('cov_t1', '*')).active, 2);
    assert.equal((await use('*', 'cov_y')).active, 2);

    const [late] = await enqueue('cov_t2', 'cov_x', 1);
    await quotas.set('*', '*', { maxActive: 0 }, OP);
    try {
      const r = await claimRound(['cov_x'], 10);
      assert.deepEqual(r.leases, []);
      assert.deepEqual(r.throttled.find((t) => t.tenantId === 'cov_t2'), { tenantId: 'cov_t2', jobType: 'cov_x', reason: 'concurrency', retryInMs: null });
    } finally {
      await quotas.remove('*', '*', OP);
    }
    assert.deepEqual((await claim(['cov_x'], 10)).map((l) => l.jobId), [late]);
  });

  test('a claim whose quota fills up while it runs takes nothing: the optimistic claim undoes itself and the locking one finds no room', async () => {
    const type = 'opt_race';
    await enqueue('opt_t', type, 5);
    await quotas.set('opt_t', type, { maxActive: 3 }, OP);
    // Another party holds the quota row and fills it to the cap, committing only after the claim has read the old value.
    const other = await db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(`UPDATE orch.quotas SET active = 3 WHERE tenant_id = 'opt_t' AND job_type = $1`, [type]);
      const claiming = claimRound([type], 5);
      // the claim has read the quota (room 3) and waits for the row, holding the jobs it took
      await eventually(async () => {
        const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'`);
        return rows[0].n > 0;
      }, 10_000, 'the claim to wait for the quota row');
      await other.query('COMMIT');
      const r = await claiming;
      assert.deepEqual(r.leases, [], 'nothing claimed past the cap');
      assert.equal(r.throttled[0]?.reason, 'concurrency');
    } finally {
      other.release();
    }
    assert.deepEqual(await states(type), { queued: 5 }, 'the jobs the undone claim had taken are queued again');
    assert.equal((await use('opt_t', type)).active, 3);
  });

  test('a quota created while its work is running counts the running leases', async () => {
    const type = 'pre_run';
    await enqueue('pre_t1', type, 5);
    await enqueue('pre_t2', type, 5);
    const running = await claim([type], 4);
    assert.equal(running.length, 4);
    const t1Running = count(running, 'pre_t1');
    await quotas.set('*', type, { maxActive: 5 }, OP);
    await quotas.set('pre_t1', type, { maxActive: t1Running }, OP);
    assert.equal((await use('*', type)).active, 4);
    assert.equal((await use('pre_t1', type)).active, t1Running);
    const more = await claimAll([type]);
    assert.deepEqual(more.map((l) => l.tenantId), ['pre_t2'], 'one slot of five left, and pre_t1 is at its cap');
  });
});

describe('acks give slots back', () => {
  test('lease expiry, complete, fail, release and cancel each free their slot in the same statement', async () => {
    const type = 'ack_cap';
    const tenant = 'ack_t';
    await enqueue(tenant, type, 12);
    await quotas.set(tenant, type, { maxActive: 2 }, OP);
    const short = await ledger.claim({ workerId: 'quota-test', jobTypes: [type], limit: 1, leaseMs: 1000 });
    let held = [...short, ...await claim([type], 10)];
    assert.equal(held.length, 2);
    const full = await claimRound([type], 10);
    assert.deepEqual(full.leases, []);
    assert.deepEqual(full.throttled, [{ tenantId: tenant, jobType: type, reason: 'concurrency', retryInMs: null }]);
    assert.equal((await use(tenant, type)).active, 2);

    /** Ends the oldest held lease with `end`; then one slot is free and exactly one more claim fits. */
    async function freesOne(what: string, end: (l: Lease) => Promise<void>): Promise<void> {
      const [gone, ...rest] = held;
      await end(gone!);
      assert.equal((await use(tenant, type)).active, 1, `${what} freed its slot`);
      const next = await claim([type], 10);
      assert.equal(next.length, 1, `${what}: exactly one slot came back`);
      held = [...rest, ...next];
    }
    const single = async (outcomes: Promise<{ status: string }[]>) => assert.deepEqual((await outcomes).map((o) => o.status), ['ok']);

    await freesOne('lease expiry', async (l) => {
      await eventually(async () => {
        await ledger.expireLeases(100, 'system:quota-test');
        return (await ledger.getJob(tenant, l.jobId))?.state !== 'leased';
      }, 20_000, 'the one-second lease to expire');
    });
    await freesOne('complete', (l) => single(ledger.complete(refs([l]), 'worker:quota-test')));
    await freesOne('fail', (l) => single(ledger.fail([{ ...refs([l])[0]!, error: { class: 'Boom', message: 'retry later' } }], 'worker:quota-test')));
    await freesOne('release', (l) => single(ledger.release(refs([l]), 'worker:quota-test')));
    await freesOne('cancel', (l) => ledger.cancel(l.tenantId, l.jobId, 'operator:quota-test'));
  });
});

describe('token bucket', () => {
  test('10 racing claimers spend a burst of 25 exactly once between them; then "rate" with a retry time', { timeout: 120_000 }, async () => {
    const type = 'tb_race';
    const tenant = 'tb_t';
    await enqueue(tenant, type, 100);
    // 0.001 tokens a second: nothing worth a claim refills during the test
    const q = await quotas.set(tenant, type, { ratePerSecond: 0.001, burst: 25 }, OP);
    assert.deepEqual([q.ratePerSecond, q.burst], [0.001, 25]);
    const granted: string[] = [];
    // Claimers of one quota queue on its row lock, so a round that brings nothing means the bucket (or the queue) is empty.
    await race(10, async (claimer, i, stopped) => {
      while (!stopped()) {
        const leases = await claimer.claim({ workerId: `tb-${i}`, jobTypes: [type], limit: 1 + (i % 5) });
        if (leases.length === 0) return;
        granted.push(...leases.map((l) => l.jobId));
      }
    });
    assert.equal(granted.length, 25);
    assert.equal(new Set(granted).size, 25);
    assert.equal((await states(type)).leased, 25);

    const r = await claimRound([type], 10);
    assert.deepEqual(r.leases, []);
    assert.equal(r.throttled.length, 1);
    const [t] = r.throttled;
    assert.deepEqual([t!.tenantId, t!.jobType, t!.reason], [tenant, type, 'rate']);
    assert.ok(t!.retryInMs !== null && t!.retryInMs > 0, `retryInMs ${t!.retryInMs}`);
    const u = await use(tenant, type);
    assert.ok(u.tokensLeft !== null && u.tokensLeft >= 0 && u.tokensLeft < 1, `tokensLeft ${u.tokensLeft}`);
    assert.equal(u.throttledBy, 'rate');
    assert.ok(u.nextEligibleAt !== null && Date.parse(u.nextEligibleAt) > Date.now());
  });

  test('burst defaults to one second of rate, at least one token', async () => {
    await enqueue('tb_t', 'tb_default', 1);
    const small = await quotas.set('tb_t', 'tb_default', { ratePerSecond: 0.5 }, OP);
    assert.equal(small.burst, 1);
    const big = await quotas.set('tb_t', 'tb_default', { ratePerSecond: 40, burst: null }, OP);
    assert.equal(big.burst, 40);
  });

  test('a rate added to an existing quota starts with a full bucket, as a new quota does', async () => {
    const type = 'tb_added';
    await enqueue('tb_t', type, 5);
    await quotas.set('tb_t', type, { maxActive: 100 }, OP);
    await quotas.set('tb_t', type, { ratePerSecond: 0.001, burst: 3 }, OP);
    assert.equal((await claim([type], 10)).length, 3);
  });
});

describe('hourly quota', () => {
  test('maxPerHour 4: exactly 4 claims in the hour with slots free; then "quota" with a retry time', async () => {
    const type = 'hour_q';
    const tenant = 'hour_t';
    await enqueue(tenant, type, 10);
    await quotas.set(tenant, type, { maxPerHour: 4 }, OP);
    const a = await claim([type], 3);
    assert.equal(a.length, 3);
    await completeAll(a); // nothing running: only the hourly count can hold work back
    const b = await claim([type], 3);
    assert.equal(b.length, 1);
    await completeAll(b);
    const r = await claimRound([type], 3);
    assert.deepEqual(r.leases, []);
    assert.equal(r.throttled.length, 1);
    const [t] = r.throttled;
    assert.deepEqual([t!.tenantId, t!.jobType, t!.reason], [tenant, type, 'quota']);
    assert.ok(t!.retryInMs !== null && t!.retryInMs > 0 && t!.retryInMs <= 3_600_000, `retryInMs ${t!.retryInMs}`);
    const u = await use(tenant, type);
    assert.deepEqual([u.usedThisHour, u.active, u.throttledBy], [4, 0, 'quota']);
    assert.ok(u.nextEligibleAt !== null && Date.parse(u.nextEligibleAt) > Date.now());
    assert.deepEqual(await states(type), { succeeded: 4, queued: 6 });
  });
});

describe('fairness', () => {
  test("a tenant's single job is in the first claim despite another tenant's backlog of 2,000", async () => {
    const type = 'fair_bulk';
    await enqueue('fair_a', type, 2000);
    const [b1] = await enqueue('fair_b', type, 1);
    const two = await claim([type], 2);
    assert.deepEqual(two.map((l) => l.tenantId).sort(), ['fair_a', 'fair_b']);
    assert.equal(two.find((l) => l.tenantId === 'fair_b')!.jobId, b1);
    const [b2] = await enqueue('fair_b', type, 1);
    const ten = await claim([type], 10);
    assert.ok(ten.some((l) => l.jobId === b2), "fair_b's job is in the claim of 10");
  });

  test('weights 3:1 share a claim of 8 as 6:2, round after round', async () => {
    const type = 'fair_weight';
    await enqueue('fw_a', type, 50);
    await enqueue('fw_b', type, 50);
    await quotas.set('fw_a', type, { weight: 3, maxActive: 1000 }, OP);
    for (let round = 0; round < 2; round++) {
      const leases = await claim([type], 8);
      assert.deepEqual([count(leases, 'fw_a'), count(leases, 'fw_b')], [6, 2], `round ${round + 1}`);
    }
  });

  test('a quota with only a weight limits nothing', async () => {
    const type = 'fair_weight_only';
    await enqueue('fwo_t', type, 3);
    await quotas.set('fwo_t', type, { weight: 3 }, OP);
    const r = await claimRound([type], 10);
    assert.deepEqual(r.throttled, []);
    assert.equal(r.leases.length, 3);
  });

  test('priority orders the work within a tenant; tenants take turns', async () => {
    const type = 'fair_prio';
    const pa = [1, 9, 5, 7, 3];
    const pb = [2, 8, 4];
    await enqueue('fp_a', type, pa.length, (i) => pa[i]!);
    await enqueue('fp_b', type, pb.length, (i) => pb[i]!);
    const leases = await claim([type], 4);
    assert.deepEqual(leases.filter((l) => l.tenantId === 'fp_a').map((l) => l.priority), [9, 7]);
    assert.deepEqual(leases.filter((l) => l.tenantId === 'fp_b').map((l) => l.priority), [8, 4]);
    // which tenant goes first turns with every claim; after it, they alternate
    assert.ok(leases.every((l, i) => i === 0 || l.tenantId !== leases[i - 1]!.tenantId), 'tenants alternate');
  });

  test('single-job claims take turns between tenants too', async () => {
    const type = 'fair_single';
    await enqueue('fs_a', type, 10);
    const [b] = await enqueue('fs_b', type, 1);
    const first = await claim([type], 1);
    const second = await claim([type], 1);
    assert.ok([...first, ...second].some((l) => l.jobId === b), 'fs_b gets one of the first two single-job claims');
  });
});

describe('boosts', () => {
  test('factor 2 doubles the cap while it lasts; restore brings the old cap back at once, running work untouched', async () => {
    const type = 'boost_cap';
    const tenant = 'boost_t';
    await enqueue(tenant, type, 10);
    await quotas.set(tenant, type, { maxActive: 2 }, OP);
    const boosted = await quotas.boost(tenant, type, { factor: 2, durationMs: 60_000 }, OP);
    assert.equal(boosted.maxActive, 2, 'the base limit stays, to return to');
    assert.equal(boosted.boost?.maxActive, 4);
    const during = await use(tenant, type);
    assert.equal(during.limits.maxActive, 4);
    assert.equal(during.boostedUntil, boosted.boost?.until);
    const leases = await claimAll([type]);
    assert.equal(leases.length, 4);

    const restored = await quotas.restore(tenant, type, OP);
    assert.equal(restored.boost, null);
    const after = await use(tenant, type);
    assert.deepEqual([after.limits.maxActive, after.boostedUntil, after.active], [2, null, 4]);
    assert.deepEqual((await claimRound([type], 10)).throttled.map((t) => t.reason), ['concurrency']);
    await completeAll(leases.slice(0, 2));
    assert.deepEqual((await claimRound([type], 10)).throttled.map((t) => t.reason), ['concurrency'], 'two running: still at the restored cap');
    await completeAll(leases.slice(2, 3));
    assert.equal((await claim([type], 10)).length, 1);
  });

  test('a boost ends by itself while no server runs, and the restarted server records its end', async () => {
    const type = 'boost_restart';
    const tenant = 'boost_t';
    await enqueue(tenant, type, 6);
    const path = `/quotas/${tenant}/${type}`;
    // This server's keeper never runs after start: nothing but the restarted server can clear the boost.
    const first = await startTestServer(db.url, { maintenance: maintenance(600_000) });
    try {
      assert.equal((await call('PUT', path, { body: { maxActive: 2 }, headers: WHY, url: first.url })).status, 200);
      const b = await call<Quota>('POST', `${path}/boost`, { body: { factor: 2, durationSeconds: 2 }, headers: WHY, url: first.url });
      assert.equal(b.status, 200, JSON.stringify(b.body));
      assert.equal(b.body.boost?.maxActive, 4);
    } finally {
      await first.stop();
    }

    await eventually(async () => {
      const { rows } = await db.pool.query<{ over: boolean }>('SELECT boost_until < now() AS over FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2', [tenant, type]);
      return rows[0]?.over === true;
    }, 20_000, 'the boost time to pass');
    // Nobody has written the row since: the base limits are in force by construction.
    const { rows: [row] } = await db.pool.query<{ boost_max_active: number | null }>('SELECT boost_max_active FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2', [tenant, type]);
    assert.equal(row!.boost_max_active, 4, 'the ended boost is still in the row');
    assert.equal((await use(tenant, type)).limits.maxActive, 2);
    assert.equal((await claimAll([type])).length, 2, 'the base cap, not the boosted one');

    const head = await auditHead();
    // The quota keeper runs on the leader only: the file's plane steps down, so the restarted server leads.
    await plane.elector.stop();
    const second = await startTestServer(db.url, { maintenance: maintenance(100) }).finally(() => plane.elector.begin());
    try {
      const expired = await eventually(async () => (await auditSince(head)).find((a) => a.action === 'quota.boost_expired' && a.target === `quota:${tenant}/${type}`), 20_000, 'the boost_expired audit row');
      assert.equal(expired.actor, 'system:quota-keeper');
      assert.equal((expired.details?.restored as { maxActive?: number } | undefined)?.maxActive, 2);
      const { rows: [cleared] } = await db.pool.query<{ boost_until: Date | null }>('SELECT boost_until FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2', [tenant, type]);
      assert.equal(cleared!.boost_until, null);
      const q = await call<Quota>('GET', path, { url: second.url });
      assert.deepEqual([q.body.maxActive, q.body.boost], [2, null]);
      const summary = await call<{ quotas: QuotaUse[] }>('GET', '/quotas/summary', { url: second.url });
      const u = summary.body.quotas.find((x) => x.tenantId === tenant && x.jobType === type);
      assert.deepEqual([u?.limits.maxActive, u?.boostedUntil, u?.active], [2, null, 2]);
    } finally {
      await second.stop();
    }
  });
});

describe('paused quotas', () => {
  test('a paused quota holds its work back as "paused" (it stays queued); resume wakes a long-polling claim', async () => {
    // A quota's pause is the dispatch pause of the quota's scope: one mechanism, listed in /pauses.
    const type = 'pq_type';
    const tenant = 'pq_t';
    const ids = await enqueue(tenant, type, 3);
    const [other] = await enqueue('pq_u', type, 1);
    await quotas.set(tenant, type, { maxActive: 10 }, OP);
    const paused = await call<Quota>('POST', `/quotas/${tenant}/${type}/pause`, { headers: WHY });
    assert.equal(paused.status, 200);
    assert.equal(paused.body.paused, true);
    const pauses = await call<{ pauses: { tenantId: string; jobType: string; ticket: string }[] }>('GET', '/pauses');
    assert.deepEqual(pauses.body.pauses.filter((p) => p.jobType === type).map((p) => [p.tenantId, p.ticket]), [[tenant, 'OPS-1']]);

    const r = await claimRound([type], 10);
    assert.deepEqual(r.leases.map((l) => l.jobId), [other], 'work the quota does not cover still runs');
    assert.deepEqual(r.throttled, [{ tenantId: tenant, jobType: type, reason: 'paused', retryInMs: null }]);
    await completeAll(r.leases); // its lease must not lapse into a wake-up of the long-poll below
    for (const id of ids) assert.equal((await ledger.getJob(tenant, id))?.state, 'queued');
    const u = await use(tenant, type);
    assert.deepEqual([u.paused, u.throttledBy, u.active], [true, 'paused', 0]);

    // A claim long-polls for a minute, with the poll tick at two: only the resume's wake-up can hand it the jobs.
    const seen = u.throttledCount;
    const polling = call<{ leases: Lease[] }>('POST', '/claim', { body: { workerId: 'long-poller', jobTypes: [type], limit: 3, waitMs: 60_000 } });
    await eventually(async () => (await use(tenant, type)).throttledCount > seen, 20_000, 'the long-poll to be held back once');
    const resumed = await call<Quota>('POST', `/quotas/${tenant}/${type}/resume`, { headers: WHY });
    assert.equal(resumed.body.paused, false);
    assert.equal((await call<{ pauses: { jobType: string }[] }>('GET', '/pauses')).body.pauses.some((p) => p.jobType === type), false);
    const claimed = await polling;
    assert.equal(claimed.status, 200);
    assert.deepEqual(claimed.body.leases.map((l) => l.jobId).sort(), [...ids].sort());
  });
});

describe('metrics', () => {
  test('orchestrator_throttled_total counts an API claim held back, by tenant, type and reason', async () => {
    const type = 'mt_type';
    const tenant = 'mt_t';
    await enqueue(tenant, type, 2);
    await quotas.set(tenant, type, { maxActive: 0 }, OP);
    const sample = async () => {
      const text = await (await fetch(`${plane.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('orchestrator_throttled_total{')
        && [`tenant="${tenant}"`, `job_type="${type}"`, 'reason="concurrency"'].every((label) => l.includes(label)));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    assert.equal(await sample(), 0);
    const r = await call<{ leases: Lease[] }>('POST', '/claim', { body: { workerId: 'metrics-worker', jobTypes: [type], limit: 2 } });
    assert.deepEqual(r.body.leases, []);
    assert.equal(await sample(), 1);
  });
});

describe('queue depth gauges', () => {
  test('orchestrator_queue_depth files waiting work as queued, throttled or paused, and dead letters under orchestrator_dlq_depth', async () => {
    const gauge = async (name: string, labels: Record<string, string>) => {
      const text = await (await fetch(`${plane.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
      return line === undefined ? undefined : Number(line.split(' ').pop());
    };
    const depth = (tenant: string, job_type: string, state: string) => gauge('orchestrator_queue_depth', { tenant, job_type, state });
    await enqueue('qd_free', 'qd_type', 3);
    await enqueue('qd_capped', 'qd_type', 2);
    await enqueue('qd_paused', 'qd_type', 4);
    assert.equal(await depth('qd_free', 'qd_type', 'queued'), 3);
    await quotas.set('qd_capped', 'qd_type', { maxActive: 1 }, OP);
    await quotas.set('qd_paused', 'qd_type', { maxActive: 100 }, OP);
    await new Pauses(db.pool).pause('qd_paused', 'qd_type', OP);
    const [lease] = (await claim(['qd_type'], 20)).filter((l) => l.tenantId === 'qd_capped');
    assert.ok(lease, 'the capped tenant got its one slot');
    assert.equal(await depth('qd_capped', 'qd_type', 'throttled'), 1, 'the cap is full: the other job is throttled');
    assert.equal(await depth('qd_capped', 'qd_type', 'leased'), 1);
    assert.equal(await depth('qd_paused', 'qd_type', 'paused'), 4);
    assert.equal(await depth('qd_free', 'qd_type', 'queued'), 0, 'the free tenant\'s jobs were claimed (the series stays, at 0)');
    await ledger.fail([{ ...refs([lease!])[0]!, error: { class: 'Fatal', message: 'no', retryable: false } }], 'worker:qd');
    assert.equal(await gauge('orchestrator_dlq_depth', { tenant: 'qd_capped', job_type: 'qd_type' }), 1);
    assert.equal(await depth('qd_capped', 'qd_type', 'queued'), 1, 'with the slot back, the waiting job is queued again');
  });
});

describe('HTTP API', () => {
  test('bad requests get 4xx naming the field and change nothing', async () => {
    const tenant = 'api_t';
    await enqueue(tenant, 'api_type', 1);
    const path = `/quotas/${tenant}/api_type`;
    assert.equal((await call('PUT', path, { body: { maxActive: 2, ratePerSecond: 1 }, headers: WHY })).status, 200);
    assert.equal((await call('PUT', `/quotas/${tenant}/api_weight_only`, { body: { weight: 5 }, headers: WHY })).status, 200);
    const quotasBefore = await call<{ quotas: Quota[] }>('GET', '/quotas');
    const auditBefore = await auditHead();

    const cases: { what: string; method: string; path: string; body?: unknown; headers?: Record<string, string>; status: number; field: string }[] = [
      { what: 'negative rate', method: 'PUT', path, body: { ratePerSecond: -1 }, status: 400, field: 'ratePerSecond' },
      { what: 'burst below rate', method: 'PUT', path, body: { ratePerSecond: 10, burst: 5 }, status: 400, field: 'burst' },
      { what: 'maxActive -1', method: 'PUT', path, body: { maxActive: -1 }, status: 400, field: 'maxActive' },
      { what: 'maxPerHour not an integer', method: 'PUT', path, body: { maxPerHour: 1.5 }, status: 400, field: 'maxPerHour' },
      { what: 'weight 0', method: 'PUT', path, body: { weight: 0 }, status: 400, field: 'weight' },
      { what: 'weight 1001', method: 'PUT', path, body: { weight: 1001 }, status: 400, field: 'weight' },
      { what: 'unknown body field', method: 'PUT', path, body: { maxActiv: 3 }, status: 400, field: 'maxActiv' },
      { what: 'tenant never seen', method: 'PUT', path: '/quotas/api_never_seen/api_type', body: { maxActive: 1 }, status: 404, field: 'tenantId' },
      { what: 'malformed tenant', method: 'PUT', path: '/quotas/bad%20tenant!/api_type', body: { maxActive: 1 }, status: 400, field: 'tenantId' },
      { what: 'malformed job type', method: 'PUT', path: `/quotas/${tenant}/bad%20type!`, body: { maxActive: 1 }, status: 400, field: 'jobType' },
      { what: 'no X-Operator-Reason', method: 'PUT', path, body: { maxActive: 3 }, headers: { 'x-operator-ticket': 'OPS-1' }, status: 400, field: 'X-Operator-Reason' },
      { what: 'no X-Operator-Ticket', method: 'PUT', path, body: { maxActive: 3 }, headers: { 'x-operator-reason': 'why' }, status: 400, field: 'X-Operator-Ticket' },
      { what: 'delete without a ticket', method: 'DELETE', path, headers: { 'x-operator-reason': 'why' }, status: 400, field: 'X-Operator-Ticket' },
      { what: 'boost factor 0.5', method: 'POST', path: `${path}/boost`, body: { factor: 0.5, durationSeconds: 60 }, status: 400, field: 'factor' },
      { what: 'boost for 0 seconds', method: 'POST', path: `${path}/boost`, body: { factor: 2, durationSeconds: 0 }, status: 400, field: 'durationSeconds' },
      { what: 'boost that lowers the cap', method: 'POST', path: `${path}/boost`, body: { maxActive: 1, durationSeconds: 60 }, status: 400, field: 'maxActive' },
      { what: 'boost of a quota without rate or cap', method: 'POST', path: `/quotas/${tenant}/api_weight_only/boost`, body: { factor: 2, durationSeconds: 60 }, status: 400, field: 'factor' },
      { what: 'restore without a boost', method: 'POST', path: `${path}/restore`, status: 404, field: 'jobType' },
      { what: 'pause of an unknown quota', method: 'POST', path: `/quotas/${tenant}/api_none/pause`, status: 404, field: 'jobType' },
      { what: 'delete of an unknown quota', method: 'DELETE', path: `/quotas/${tenant}/api_none`, status: 404, field: 'jobType' },
    ];
    for (const c of cases) {
      const r = await call<ErrorBody>(c.method, c.path, { body: c.body, headers: c.headers ?? WHY });
      assert.equal(r.status, c.status, `${c.what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.field, c.field, c.what);
      assert.ok(r.body.error.code && r.body.error.message, c.what);
    }

    assert.deepEqual((await call<{ quotas: Quota[] }>('GET', '/quotas')).body, quotasBefore.body);
    assert.equal(await auditHead(), auditBefore, 'no audit row for a refused change');
  });

  test('a burst without a rate is refused naming burst', async () => {
    await enqueue('api_t', 'api_burst', 1);
    const r = await call<ErrorBody>('PUT', '/quotas/api_t/api_burst', { body: { burst: 5 }, headers: WHY });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.field, 'burst');
  });

  test('GET one quota and the summary read what PUT wrote', async () => {
    await enqueue('api_t', 'api_read', 1);
    const put = await call<Quota>('PUT', '/quotas/api_t/api_read', { body: { maxActive: 4, ratePerSecond: 2.5, maxPerHour: 100, weight: 7 }, headers: WHY });
    assert.equal(put.status, 200);
    const got = await call<Quota>('GET', '/quotas/api_t/api_read');
    assert.deepEqual(got.body, put.body);
    assert.deepEqual(
      [got.body.maxActive, got.body.ratePerSecond, got.body.burst, got.body.maxPerHour, got.body.weight, got.body.paused, got.body.boost, got.body.ticket],
      [4, 2.5, 2.5, 100, 7, false, null, 'OPS-1']);
    const changed = await call<Quota>('PUT', '/quotas/api_t/api_read', { body: { maxActive: 5 }, headers: WHY });
    assert.deepEqual([changed.body.maxActive, changed.body.ratePerSecond, changed.body.maxPerHour, changed.body.weight], [5, 2.5, 100, 7], 'omitted fields keep their values');
    const summary = await call<{ quotas: QuotaUse[] }>('GET', '/quotas/summary');
    const u = summary.body.quotas.find((x) => x.tenantId === 'api_t' && x.jobType === 'api_read');
    assert.deepEqual(u, {
      tenantId: 'api_t', jobType: 'api_read', limits: { maxActive: 5, ratePerSecond: 2.5, burst: 2.5, maxPerHour: 100 }, boostedUntil: null,
      paused: false, active: 0, tokensLeft: 2.5, usedThisHour: 0, throttledCount: 0, throttledBy: null, nextEligibleAt: null,
    });
  });

  test('null removes a limit', async () => {
    await enqueue('api_t', 'api_null', 1);
    const path = '/quotas/api_t/api_null';
    assert.equal((await call('PUT', path, { body: { maxActive: 1, ratePerSecond: 1, maxPerHour: 10 }, headers: WHY })).status, 200);
    const cap = await call<Quota>('PUT', path, { body: { maxActive: null }, headers: WHY });
    assert.deepEqual([cap.status, cap.body.maxActive], [200, null]);
    const rate = await call<Quota>('PUT', path, { body: { ratePerSecond: null, maxPerHour: null }, headers: WHY });
    assert.deepEqual([rate.status, rate.body.ratePerSecond, rate.body.burst, rate.body.maxPerHour], [200, null, null, null]);
  });
});

describe('audit log', () => {
  test('GET /audit and orch audit list show changes newest first, filtered, a page at a time', async () => {
    const tenant = 'auditq_t';
    await enqueue(tenant, 'auditq_type', 1);
    for (const maxActive of [1, 2, 3]) {
      assert.equal((await call('PUT', `/quotas/${tenant}/auditq_type`, { body: { maxActive }, headers: { ...WHY, 'x-operator-reason': `step ${maxActive}` } })).status, 200);
    }
    const first = await call<{ entries: { id: string; action: string; reason: string; ticket: string; tenantId: string }[]; nextCursor: string | null }>(
      'GET', `/audit?tenantId=${tenant}&limit=2`);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body.entries.map((e) => [e.action, e.reason, e.ticket]), [['quota.update', 'step 3', 'OPS-1'], ['quota.update', 'step 2', 'OPS-1']]);
    assert.ok(first.body.nextCursor);
    const second = await call<typeof first.body>('GET', `/audit?tenantId=${tenant}&limit=2&cursor=${first.body.nextCursor}`);
    assert.deepEqual(second.body.entries.map((e) => [e.action, e.reason]), [['quota.create', 'step 1']]);
    assert.equal(second.body.nextCursor, null);
    assert.equal((await call('GET', '/audit?limit=0')).status, 400);

    const cli = await runCli(['audit', 'list', '--api-url', plane.url, '--for-tenant', tenant, '--action', 'quota.create', '--output', 'json']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual((JSON.parse(cli.stdout) as typeof first.body).entries.map((e) => e.reason), ['step 1']);
    const bad = await runCli(['audit', 'list', '--api-url', plane.url, '--since', 'yesterday-ish']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
  });

  test('every change over the API writes one audit row with its reason and ticket', async () => {
    const tenant = 'audit_t';
    const type = 'audit_type';
    await enqueue(tenant, type, 1);
    const steps: { method: string; path: string; body?: unknown; action: string; tenant: string | null; target: string }[] = [
      { method: 'PUT', path: `/quotas/${tenant}/${type}`, body: { maxActive: 2 }, action: 'quota.create', tenant, target: `quota:${tenant}/${type}` },
      { method: 'PUT', path: `/quotas/${tenant}/${type}`, body: { maxActive: 3 }, action: 'quota.update', tenant, target: `quota:${tenant}/${type}` },
      { method: 'POST', path: `/quotas/${tenant}/${type}/pause`, action: 'dispatch.pause', tenant, target: `dispatch:${tenant}/${type}` },
      { method: 'POST', path: `/quotas/${tenant}/${type}/resume`, action: 'dispatch.resume', tenant, target: `dispatch:${tenant}/${type}` },
      { method: 'POST', path: `/quotas/${tenant}/${type}/boost`, body: { factor: 2, durationSeconds: 600 }, action: 'quota.boost', tenant, target: `quota:${tenant}/${type}` },
      { method: 'POST', path: `/quotas/${tenant}/${type}/restore`, action: 'quota.restore', tenant, target: `quota:${tenant}/${type}` },
      { method: 'DELETE', path: `/quotas/${tenant}/${type}`, action: 'quota.delete', tenant, target: `quota:${tenant}/${type}` },
      { method: 'PUT', path: `/quotas/*/${type}`, body: { maxActive: 9 }, action: 'quota.create', tenant: null, target: `quota:*/${type}` },
      { method: 'DELETE', path: `/quotas/*/${type}`, action: 'quota.delete', tenant: null, target: `quota:*/${type}` },
      { method: 'POST', path: `/jobtypes/${type}/pause`, action: 'dispatch.pause', tenant: null, target: `dispatch:*/${type}` },
      { method: 'POST', path: `/jobtypes/${type}/resume`, action: 'dispatch.resume', tenant: null, target: `dispatch:*/${type}` },
    ];
    for (const [i, s] of steps.entries()) {
      const head = await auditHead();
      const why = { reason: `step ${i}: ${s.action}`, ticket: `AUD-${i}` };
      const r = await call(s.method, s.path, { body: s.body, headers: { 'x-operator-reason': why.reason, 'x-operator-ticket': why.ticket } });
      assert.equal(r.status, 200, `${s.action}: ${JSON.stringify(r.body)}`);
      const rows = await auditSince(head);
      assert.equal(rows.length, 1, `${s.action} wrote one row`);
      const [a] = rows;
      assert.deepEqual(
        [a!.action, a!.tenant_id, a!.target, a!.reason, a!.ticket, a!.actor, a!.result],
        [s.action, s.tenant, s.target, why.reason, why.ticket, 'anonymous', 'ok']);
    }
  });

  test('the audit log is append-only: UPDATE, DELETE and TRUNCATE raise', async () => {
    const before = await auditSince(0);
    assert.ok(before.length > 0);
    await assert.rejects(db.pool.query(`UPDATE orch.audit_log SET reason = 'rewritten'`), /append-only/);
    await assert.rejects(db.pool.query('DELETE FROM orch.audit_log'), /append-only/);
    await assert.rejects(db.pool.query('TRUNCATE orch.audit_log'), /append-only/);
    assert.deepEqual(await auditSince(0), before);
  });
});

describe('CLI', () => {
  const orch = (...args: string[]) => runCli(['--api-url', plane.url, ...args]);
  const why = ['--reason', 'cli test', '--ticket', 'CLI-1'];

  function oneErrorLine(stderr: string): string {
    const lines = stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `exactly one line on stderr, got: ${JSON.stringify(stderr)}`);
    return lines[0]!;
  }

  async function json<T>(args: string[]): Promise<T> {
    const r = await orch(...args, '--output', 'json');
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  }

  test('orch quota set / list / summary / boost / restore / pause / resume / delete', async () => {
    const tenant = 'cli_t';
    const type = 'cli_type';
    await enqueue(tenant, type, 1);
    const set = await json<Quota>(['quota', 'set', tenant, type, '--max-active', '3', '--rate', '2', '--max-per-hour', '100', '--weight', '2', ...why]);
    assert.deepEqual([set.maxActive, set.ratePerSecond, set.burst, set.maxPerHour, set.weight, set.reason, set.ticket], [3, 2, 2, 100, 2, 'cli test', 'CLI-1']);

    const list = await json<Quota[]>(['quota', 'list']);
    assert.deepEqual(list.find((q) => q.tenantId === tenant && q.jobType === type), set);

    const summary = await orch('quota', 'summary');
    assert.equal(summary.code, 0, summary.stderr);
    const rows = summary.stdout.trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/));
    const header = rows[0]!;
    const row = rows.find((r) => r[0] === tenant && r[1] === type);
    assert.ok(row, summary.stdout);
    assert.deepEqual([row[header.indexOf('ACTIVE')], row[header.indexOf('MAXACTIVE')], row[header.indexOf('TOKENSLEFT')]], ['0', '3', '2']);

    const boosted = await json<Quota>(['quota', 'boost', tenant, type, '--for', '1m', '--factor', '2', ...why]);
    assert.deepEqual([boosted.boost?.maxActive, boosted.boost?.ratePerSecond, boosted.boost?.burst], [6, 4, 4]);
    assert.equal(Date.parse(boosted.boost!.until) - Date.parse(boosted.updatedAt), 60_000, 'the boost lasts one minute');
    assert.equal((await quotas.get(tenant, type)).boost?.maxActive, 6);

    const restored = await json<Quota>(['quota', 'restore', tenant, type, ...why]);
    assert.equal(restored.boost, null);
    assert.equal((await use(tenant, type)).limits.maxActive, 3);

    assert.equal((await json<Quota>(['quota', 'pause', tenant, type, ...why])).paused, true);
    assert.equal((await quotas.get(tenant, type)).paused, true);
    assert.equal((await json<Quota>(['quota', 'resume', tenant, type, ...why])).paused, false);
    assert.equal((await quotas.get(tenant, type)).paused, false);


    const deleted = await orch('quota', 'delete', tenant, type, ...why);
    assert.equal(deleted.code, 0, deleted.stderr);
    await assert.rejects(quotas.get(tenant, type), (e: unknown) => e instanceof LedgerError && e.code === 'not_found');
  });

  test('"none" removes a limit', async () => {
    await enqueue('cli_t', 'cli_none', 1);
    await json<Quota>(['quota', 'set', 'cli_t', 'cli_none', '--max-active', '3', '--rate', '2', '--max-per-hour', '100', ...why]);
    const q = await json<Quota>(['quota', 'set', 'cli_t', 'cli_none', '--rate', 'none', '--max-active', 'none', ...why]);
    assert.deepEqual([q.maxActive, q.ratePerSecond, q.burst, q.maxPerHour], [null, null, null, 100], 'the rate goes with its bucket, the hourly count stays');
  });

  test('bad input: exit 1 with one line on stderr, and nothing changes', async () => {
    await enqueue('cli_t', 'cli_bad', 1);
    const before = await quotas.list();
    const audit = await auditHead();

    const noReason = await orch('quota', 'set', 'cli_t', 'cli_bad', '--max-active', '1', '--ticket', 'CLI-1');
    assert.equal(noReason.code, 1);
    assert.match(oneErrorLine(noReason.stderr), /--reason/);

    const notANumber = await orch('quota', 'set', 'cli_t', 'cli_bad', '--max-active', 'abc', ...why);
    assert.equal(notANumber.code, 1);
    assert.match(oneErrorLine(notANumber.stderr), /--max-active/);

    const refused = await orch('quota', 'set', 'cli_t', 'cli_bad', '--max-active=-1', ...why);
    assert.equal(refused.code, 1);
    assert.match(oneErrorLine(refused.stderr), /field: maxActive.*HTTP 400/);

    const shortBoost = await orch('quota', 'boost', 'cli_t', 'cli_bad', '--for', '500ms', '--factor', '2', ...why);
    assert.equal(shortBoost.code, 1);
    assert.match(oneErrorLine(shortBoost.stderr), /--for/);

    assert.deepEqual(await quotas.list(), before);
    assert.equal(await auditHead(), audit);
  });
});
