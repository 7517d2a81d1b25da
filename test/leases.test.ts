import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { defaultConfig } from '../src/config/config.ts';
import { createWorker, OrchApiError, OrchClient, type ControlPlane, type HistoryEntry, type Lease } from '../src/index.ts';
import { createLogger } from '../src/logging.ts';
import type { WorkerRecord } from '../src/ledger/workers.ts';
import { sample } from '../src/metrics/exposition.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { kill, spawnCrashWorker } from './helpers/processes.ts';
import { eventually, runCli, startTestServer } from './helpers/server.ts';
import { httpRequest, type HttpOptions } from './helpers/http.ts';

/**
 * Leases and the worker registry: the lease view (stuck first, PostgreSQL
 * lock waits), force release, lost-worker recovery through missed
 * heartbeats, the lease gauges, and the CLI on top of them.
 */

const BASE = '/api/v1/orchestrator';
/** Long enough that no lease in this file can lapse: only a release (operator or lost worker) can end one early. */
const LONG_LEASE_MS = 600_000;
const STUCK_AFTER_MS = 30_000;

let db: TestDatabase;
let plane: ControlPlane;
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  db = await createTestDatabase();
  // The main server never marks workers lost (600 s) and its reaper runs once at start only, so the
  // leases the tests backdate or push past their deadline stay exactly as the tests left them.
  plane = await startTestServer(db.url, {
    workerLostAfterMs: 600_000,
    leaseStuckAfterMs: STUCK_AFTER_MS,
    maintenance: { ...defaultConfig.maintenance, leaseReaperIntervalMs: 600_000, leaseGraceMs: 0 },
  });
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await plane?.stop();
  await db?.drop();
});

interface ErrorBody { error: { code: string; message: string; field: string | null } }
const http = <T = ErrorBody>(base: string, method: string, path: string, opts: HttpOptions = {}) => httpRequest<T>(base + BASE + path, method, opts);
const api = <T = ErrorBody>(method: string, path: string, opts: HttpOptions = {}) => http<T>(plane.url, method, path, opts);

const client = (tenant: string, url = plane.url) => new OrchClient({ apiUrl: url, tenant });

/** Enqueues n jobs of `type` for `tenant` and claims them as `workerId`; returns the leases in job id order. */
async function leased(tenant: string, type: string, n: number, workerId: string, opts: { maxAttempts?: number } = {}): Promise<Lease[]> {
  await plane.ledger.jobTypes.define(type, { leaseMs: LONG_LEASE_MS, maxAttempts: opts.maxAttempts ?? 5 });
  await plane.ledger.enqueue(Array.from({ length: n }, (_, i) => ({ tenantId: tenant, jobType: type, payload: { i } })));
  const leases = await plane.ledger.claim({ workerId, jobTypes: [type], limit: n, tenantIds: [tenant] });
  assert.equal(leases.length, n, `${workerId} claimed ${n} ${type} jobs of ${tenant}`);
  return leases.sort((a, b) => Number(a.jobId) - Number(b.jobId));
}

/** Moves the last heartbeat (and the claim) of these jobs `seconds` into the past. */
async function backdate(jobIds: string[], seconds: number): Promise<void> {
  const { rowCount } = await db.pool.query(
    `UPDATE orch.jobs SET heartbeat_at = now() - make_interval(secs => $2), started_at = least(started_at, now() - make_interval(secs => $2))
     WHERE id = ANY($1::bigint[]) AND state = 'leased'`, [jobIds, seconds]);
  assert.equal(rowCount, jobIds.length);
}

async function jobRow(id: string): Promise<{ state: string; attempt: number; lease_id: string | null; lease_until: Date | null }> {
  const { rows } = await db.pool.query<{ state: string; attempt: number; lease_id: string | null; lease_until: Date | null }>(
    'SELECT state::text, attempt, lease_id::text, lease_until FROM orch.jobs WHERE id = $1', [id]);
  assert.ok(rows[0], `job ${id} exists`);
  return rows[0];
}

const refOf = (l: Lease) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId });
const trail = (h: HistoryEntry[]) => h.map((e) => `${e.to}#${e.attempt}${e.reason ? `/${e.reason}` : ''}`);


async function scrape(url = plane.url): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

describe('GET /leases', () => {
  test('lists the tenant\'s leases oldest heartbeat first, flags stuck ones by the threshold, and never shows another tenant\'s', async () => {
    const [a1, a2, a3] = await leased('acme', 'lz_list', 3, 'w-list');
    const [g1] = await leased('globex', 'lz_list', 1, 'w-list');
    // Not in id order: the oldest heartbeat must come first whatever the claim order.
    await backdate([a3!.jobId], 45);
    await backdate([a1!.jobId], 20);
    await backdate([g1!.jobId], 300);

    const acme = await client('acme').listLeases({ jobType: 'lz_list' });
    assert.equal(acme.stuckAfterMs, STUCK_AFTER_MS, 'the server default threshold applies');
    assert.deepEqual(acme.leases.map((l) => l.jobId), [a3!.jobId, a1!.jobId, a2!.jobId], 'oldest heartbeat first');
    assert.deepEqual(acme.leases.map((l) => l.stuck), [true, false, false], '45 s is past the 30 s threshold, 20 s is not');
    assert.equal(acme.stuck, 1);
    const [v3, v1, v2] = acme.leases;
    assert.ok(v3!.heartbeatAgeSeconds >= 45 && v3!.heartbeatAgeSeconds < 60, `heartbeat age ${v3!.heartbeatAgeSeconds}`);
    assert.ok(v1!.heartbeatAgeSeconds >= 20 && v1!.heartbeatAgeSeconds < 30, `heartbeat age ${v1!.heartbeatAgeSeconds}`);
    assert.ok(v2!.heartbeatAgeSeconds < 10 && v2!.ageSeconds < 10, 'the fresh lease is young');
    assert.deepEqual(
      { tenantId: v3!.tenantId, jobType: v3!.jobType, workerId: v3!.workerId, leaseId: v3!.leaseId, attempt: v3!.attempt },
      { tenantId: 'acme', jobType: 'lz_list', workerId: 'w-list', leaseId: a3!.leaseId, attempt: 1 });

    // A lower threshold flags more; the order does not change.
    const tight = await client('acme').listLeases({ jobType: 'lz_list', stuckAfterMs: 10_000 });
    assert.equal(tight.stuckAfterMs, 10_000);
    assert.deepEqual(tight.leases.map((l) => [l.jobId, l.stuck]), [[a3!.jobId, true], [a1!.jobId, true], [a2!.jobId, false]]);
    assert.equal(tight.stuck, 2);

    // Tenant scoping: globex sees its own lease (stuck for 300 s) and none of acme's, and acme never sees globex's.
    const globex = await client('globex').listLeases();
    assert.deepEqual(globex.leases.map((l) => [l.jobId, l.tenantId, l.stuck]), [[g1!.jobId, 'globex', true]]);
    assert.equal(globex.stuck, 1);
    const acmeAll = await client('acme').listLeases();
    assert.ok(acmeAll.leases.every((l) => l.tenantId === 'acme'));
    assert.ok(!acmeAll.leases.some((l) => l.jobId === g1!.jobId), 'acme does not see globex\'s lease');
    assert.equal((await client('initech').listLeases()).leases.length, 0, 'a tenant with no leases sees none');

    // Filters: worker, limit.
    assert.equal((await client('acme').listLeases({ workerId: 'nobody' })).leases.length, 0);
    assert.deepEqual((await client('acme').listLeases({ jobType: 'lz_list', limit: 1 })).leases.map((l) => l.jobId), [a3!.jobId]);

    // The tenant header is required and the threshold bounded.
    assert.equal((await api('GET', '/leases')).status, 400);
    assert.equal((await api('GET', '/leases?stuckAfterMs=10', { tenant: 'acme' })).status, 400);
  });

  test('a lease past its deadline is flagged stuck even with a recent heartbeat', async () => {
    const [d] = await leased('acme', 'lz_deadline', 1, 'w-deadline');
    let view = await client('acme').listLeases({ jobType: 'lz_deadline' });
    assert.deepEqual(view.leases.map((l) => l.stuck), [false]);
    // The main server's reaper does not run again, so the lapsed lease stays leased for the view to show.
    await db.pool.query(`UPDATE orch.jobs SET lease_until = now() - interval '1 second' WHERE id = $1`, [d!.jobId]);
    view = await client('acme').listLeases({ jobType: 'lz_deadline' });
    assert.deepEqual(view.leases.map((l) => [l.jobId, l.stuck]), [[d!.jobId, true]]);
    assert.ok(view.leases[0]!.heartbeatAgeSeconds < 10, 'stuck by the deadline, not by the heartbeat');
  });

  test('locks: a session waiting on an orch.jobs row lock is shown with the pid of the session holding it', async () => {
    const [job] = await plane.ledger.enqueue([{ tenantId: 'acme', jobType: 'lz_lock', payload: {} }]);
    const holder = new pg.Client({ connectionString: db.url, application_name: 'lz-holder' });
    const waiter = new pg.Client({ connectionString: db.url, application_name: 'lz-waiter' });
    await holder.connect();
    await waiter.connect();
    let update: Promise<pg.QueryResult> | null = null;
    try {
      const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const waiterPid = (await waiter.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      assert.equal((await client('acme').listLeases()).locks.length, 0, 'no lock waits before');

      await holder.query('BEGIN');
      await holder.query('SELECT id FROM orch.jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE', ['acme', job!.id]);
      update = waiter.query('UPDATE orch.jobs SET priority = 7 WHERE tenant_id = $1 AND id = $2', ['acme', job!.id]);

      const view = await eventually(async () => {
        const v = await client('acme').listLeases();
        // (pg_stat_activity is read once per query, pg_blocking_pids live: a session caught just as it starts
        // to wait shows as blocked before its wait event does)
        return v.locks.some((l) => l.role === 'waiting' && l.waitEvent) ? v : null;
      }, 10_000, 'the blocked UPDATE to show as a lock wait');
      const waiting = view.locks.filter((l) => l.role === 'waiting');
      assert.equal(waiting.length, 1, `one waiting session: ${JSON.stringify(view.locks)}`);
      const w = waiting[0]!;
      assert.equal(w.pid, waiterPid);
      assert.deepEqual(w.blockedBy, [holderPid]);
      assert.ok(w.relations.includes('jobs'), `relations ${w.relations}`);
      assert.match(w.waitEvent ?? '', /^Lock:/);
      assert.equal(w.application, 'lz-waiter');
      assert.match(w.query ?? '', /UPDATE orch\.jobs SET priority = 7/);
      const h = view.locks.find((l) => l.pid === holderPid);
      assert.ok(h, 'the holder is listed');
      assert.equal(h.role, 'blocking');
      assert.deepEqual(h.blockedBy, []);
      assert.equal(h.state, 'idle in transaction');
      assert.ok(h.relations.includes('jobs'), `holder relations ${h.relations}`);
      assert.ok((h.transactionSeconds ?? -1) >= 0);
      assert.equal((await jobRow(job!.id)).state, 'queued');
      assert.equal((await plane.ledger.getJob('acme', job!.id))!.priority, 0, 'the UPDATE has not gone through');

      await holder.query('ROLLBACK');
      assert.equal((await update).rowCount, 1, 'the waiter proceeds once the holder lets go');
      update = null;
      assert.equal((await plane.ledger.getJob('acme', job!.id))!.priority, 7);
      assert.deepEqual((await client('acme').listLeases()).locks, [], 'no lock waits after');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await update?.catch(() => undefined);
      await holder.end();
      await waiter.end();
    }
  });
});

describe('POST /leases/release', () => {
  const REASON = 'handler wedged on a dead NFS mount';

  async function lastAudit(tenantId: string) {
    return (await client(tenantId).listAudit({ action: 'lease.release', tenantId, limit: 1 })).entries[0];
  }

  /** The old holder's ack and heartbeat are refused by the ledger, and by the bridge with 409. */
  async function assertOldHolderRefused(l: Lease, state: string) {
    const [c] = await plane.ledger.complete([{ ...refOf(l), result: { late: true } }], 'worker:old');
    assert.equal(c!.status, 'refused', `late complete of ${l.jobId}: ${JSON.stringify(c)}`);
    const [hb] = await plane.ledger.heartbeat([refOf(l)]);
    assert.equal(hb!.status, 'refused', `late heartbeat of ${l.jobId}`);
    const httpComplete = await api('POST', `/jobs/${l.jobId}/complete`, { tenant: l.tenantId, body: { leaseId: l.leaseId, result: { late: true } } });
    assert.equal(httpComplete.status, 409, JSON.stringify(httpComplete.body));
    const httpHeartbeat = await api('POST', `/jobs/${l.jobId}/heartbeat`, { tenant: l.tenantId, body: { leaseId: l.leaseId } });
    assert.equal(httpHeartbeat.status, 409);
    const j = (await plane.ledger.getJob(l.tenantId, l.jobId))!;
    assert.equal(j.state, state, 'the refused acks changed nothing');
    assert.equal(j.result, null);
  }

  test('by job id, a healthy lease: back to the queue with the attempt given back, the old holder refused, reason in history and audit', async () => {
    const [l1, l2] = await leased('acme', 'lz_rel_job', 2, 'w-rel-job');
    const r = await client('acme').releaseLeases({ jobIds: [l1!.jobId] }, { reason: REASON, ticket: 'OPS-77' });
    assert.deepEqual(r, { released: 1, jobs: [{ jobId: l1!.jobId, jobType: 'lz_rel_job', state: 'queued' }] });

    const row = await jobRow(l1!.jobId);
    assert.deepEqual({ state: row.state, attempt: row.attempt, leaseUntil: row.lease_until }, { state: 'queued', attempt: 0, leaseUntil: null });
    assert.equal((await jobRow(l2!.jobId)).state, 'leased', 'the other lease is untouched');

    const { history } = await client('acme').getJob(l1!.jobId);
    const last = history.at(-1)!;
    assert.deepEqual({ from: last.from, to: last.to, attempt: last.attempt, actor: last.actor, reason: last.reason, leaseId: last.leaseId },
      { from: 'leased', to: 'queued', attempt: 0, actor: 'anonymous', reason: REASON, leaseId: l1!.leaseId });

    const audit = await lastAudit('acme');
    assert.ok(audit);
    assert.deepEqual({ action: audit.action, actor: audit.actor, tenantId: audit.tenantId, reason: audit.reason, ticket: audit.ticket, result: audit.result },
      { action: 'lease.release', actor: 'anonymous', tenantId: 'acme', reason: REASON, ticket: 'OPS-77', result: 'ok' });
    assert.equal((audit.details as { released: number }).released, 1);

    await assertOldHolderRefused(l1!, 'queued');

    // The next claim is attempt 1 again: the holder was heartbeating, so the release was no failure of the job.
    const [again] = await plane.ledger.claim({ workerId: 'w-rel-job-2', jobTypes: ['lz_rel_job'], limit: 5, tenantIds: ['acme'] });
    assert.equal(again!.jobId, l1!.jobId);
    assert.equal(again!.attempt, 1);
    assert.notEqual(again!.leaseId, l1!.leaseId);
    assert.equal((await plane.ledger.complete([refOf(again!)], 'worker:w-rel-job-2'))[0]!.status, 'ok');
    assert.deepEqual(trail((await client('acme').getJob(l1!.jobId)).history),
      ['queued#0', 'leased#1', `queued#0/${REASON}`, 'leased#1', 'succeeded#1']);
  });

  test('by lease id: only that lease is taken', async () => {
    const [l1, l2] = await leased('acme', 'lz_rel_lease', 2, 'w-rel-lease');
    const r = await client('acme').releaseLeases({ leaseIds: [l2!.leaseId] }, { reason: REASON });
    assert.deepEqual(r.jobs.map((j) => [j.jobId, j.state]), [[l2!.jobId, 'queued']]);
    assert.equal((await jobRow(l1!.jobId)).state, 'leased');
    assert.equal((await jobRow(l2!.jobId)).attempt, 0);
    await assertOldHolderRefused(l2!, 'queued');
    // The holder of the untouched lease can still finish it.
    assert.equal((await plane.ledger.complete([refOf(l1!)], 'worker:w-rel-lease'))[0]!.status, 'ok');
  });

  test('by worker: every lease the worker holds in this tenant, and no other tenant\'s', async () => {
    const mine = await leased('acme', 'lz_rel_worker', 3, 'w-doomed');
    const [theirs] = await leased('globex', 'lz_rel_worker', 1, 'w-doomed');
    const [other] = await leased('acme', 'lz_rel_worker_b', 1, 'w-healthy');

    const r = await client('acme').releaseLeases({ workerIds: ['w-doomed'] }, { reason: REASON });
    assert.equal(r.released, 3);
    assert.deepEqual(r.jobs.map((j) => j.jobId).sort(), mine.map((l) => l.jobId).sort());
    for (const l of mine) assert.equal((await jobRow(l.jobId)).state, 'queued');
    assert.equal((await jobRow(theirs!.jobId)).state, 'leased', 'globex\'s lease of the same worker is untouched');
    assert.equal((await jobRow(other!.jobId)).state, 'leased', 'another worker\'s lease is untouched');
    await assertOldHolderRefused(mine[0]!, 'queued');

    // Another tenant cannot take acme's leases by id either.
    const cross = await client('globex').releaseLeases({ jobIds: [other!.jobId], leaseIds: [other!.leaseId], workerIds: ['w-healthy'] }, { reason: REASON });
    assert.deepEqual(cross, { released: 0, jobs: [] });
    assert.equal((await jobRow(other!.jobId)).state, 'leased');
    assert.equal((await client('globex').releaseLeases({ workerIds: ['w-doomed'] }, { reason: REASON })).released, 1);
    assert.equal((await jobRow(theirs!.jobId)).state, 'queued');
  });

  test('--stuck: leases whose heartbeat is older than the threshold (server default or given), in this tenant only', async () => {
    const [old, recent, fresh] = await leased('stuckco', 'lz_rel_stuck', 3, 'w-stuck');
    const [otherTenant] = await leased('stuckco-b', 'lz_rel_stuck', 1, 'w-stuck');
    await backdate([old!.jobId, otherTenant!.jobId], 120);
    await backdate([recent!.jobId], 10);

    const byDefault = await client('stuckco').releaseLeases({ stuck: true }, { reason: REASON });
    assert.deepEqual(byDefault.jobs.map((j) => j.jobId), [old!.jobId], 'the 30 s default takes only the 120 s lease');
    const byGiven = await client('stuckco').releaseLeases({ stuck: true, stuckAfterMs: 5000 }, { reason: REASON });
    assert.deepEqual(byGiven.jobs.map((j) => j.jobId), [recent!.jobId], 'a 5 s threshold takes the 10 s lease too');
    assert.equal((await jobRow(fresh!.jobId)).state, 'leased');
    assert.equal((await jobRow(otherTenant!.jobId)).state, 'leased', 'the other tenant\'s stuck lease is untouched');
    assert.equal((await lastAudit('stuckco'))!.reason, REASON);
    await assertOldHolderRefused(old!, 'queued');
  });

  test('a healthy lease on its last attempt goes back to the queue, never to the DLQ', async () => {
    const [l] = await leased('acme', 'lz_rel_last', 1, 'w-rel-last', { maxAttempts: 1 });
    const r = await client('acme').releaseLeases({ jobIds: [l!.jobId] }, { reason: REASON });
    assert.deepEqual(r.jobs, [{ jobId: l!.jobId, jobType: 'lz_rel_last', state: 'queued' }]);
    const row = await jobRow(l!.jobId);
    assert.deepEqual([row.state, row.attempt], ['queued', 0]);
    await assertOldHolderRefused(l!, 'queued');
  });

  test('a stuck lease (silent past the threshold) keeps its attempt counted: spent, it is dead-lettered', async () => {
    const [l] = await leased('acme', 'lz_rel_dead', 1, 'w-rel-dead', { maxAttempts: 1 });
    await backdate([l!.jobId], STUCK_AFTER_MS / 1000 + 30);
    const r = await client('acme').releaseLeases({ jobIds: [l!.jobId] }, { reason: REASON });
    assert.deepEqual(r.jobs, [{ jobId: l!.jobId, jobType: 'lz_rel_dead', state: 'dead_lettered' }]);
    const { job, history } = await client('acme').getJob(l!.jobId);
    assert.equal(job.state, 'dead_lettered');
    assert.equal(job.attempt, 1);
    assert.ok(job.finishedAt);
    assert.equal(job.lastError?.class, 'LeaseReleased');
    assert.deepEqual({ to: history.at(-1)!.to, reason: history.at(-1)!.reason, actor: history.at(-1)!.actor },
      { to: 'dead_lettered', reason: REASON, actor: 'anonymous' });
    await assertOldHolderRefused(l!, 'dead_lettered');
  });

  test('bad requests release nothing: no reason, blank reason, empty selector, stuckAfterMs without stuck, empty id list', async () => {
    const [l] = await leased('acme', 'lz_rel_bad', 1, 'w-rel-bad');
    const auditBefore = (await lastAudit('acme'))?.id;
    const reason = { 'x-operator-reason': REASON };

    const noReason = await api('POST', '/leases/release', { tenant: 'acme', body: { jobIds: [l!.jobId] } });
    assert.equal(noReason.status, 400);
    assert.equal(noReason.body.error.code, 'reason_required');
    const blank = await api('POST', '/leases/release', { tenant: 'acme', body: { jobIds: [l!.jobId] }, headers: { 'x-operator-reason': '   ' } });
    assert.equal(blank.status, 400);
    const empty = await api('POST', '/leases/release', { tenant: 'acme', body: {}, headers: reason });
    assert.equal(empty.status, 400);
    assert.match(empty.body.error.message, /leaseIds, jobIds, workerIds or stuck/);
    assert.equal((await api('POST', '/leases/release', { tenant: 'acme', body: { stuck: false }, headers: reason })).status, 400);
    assert.equal((await api('POST', '/leases/release', { tenant: 'acme', body: { stuckAfterMs: 5000 }, headers: reason })).status, 400);
    assert.equal((await api('POST', '/leases/release', { tenant: 'acme', body: { jobIds: [] }, headers: reason })).status, 400);
    assert.equal((await api('POST', '/leases/release', { body: { jobIds: [l!.jobId] }, headers: reason })).status, 400, 'no tenant');
    await assert.rejects(client('acme').releaseLeases({ jobIds: [l!.jobId] }, { reason: '' }),
      (e: unknown) => e instanceof OrchApiError && e.status === 400);

    const row = await jobRow(l!.jobId);
    assert.deepEqual({ state: row.state, leaseId: row.lease_id }, { state: 'leased', leaseId: l!.leaseId }, 'still held by its worker');
    assert.equal((await lastAudit('acme'))?.id, auditBefore, 'no audit entry for a refused request');
    assert.equal((await plane.ledger.complete([refOf(l!)], 'worker:w-rel-bad'))[0]!.status, 'ok', 'the holder still owns the lease');
  });
});

describe('the worker registry', () => {
  async function worker(id: string): Promise<WorkerRecord> {
    const w = (await client('acme').listWorkers()).workers.find((x) => x.workerId === id);
    assert.ok(w, `worker ${id} is registered`);
    return w;
  }

  test('a claim registers host, version and job types; inFlight counts the leases held; a heartbeat refreshes lastSeen', async () => {
    await plane.ledger.jobTypes.define('lz_reg', { leaseMs: LONG_LEASE_MS });
    await plane.ledger.enqueue(Array.from({ length: 4 }, (_, i) => ({ tenantId: 'acme', jobType: 'lz_reg', payload: { i } })));
    const leases = await plane.ledger.claim({ workerId: 'reg-w1', jobTypes: ['lz_reg', 'lz_reg_other'], limit: 3, host: 'build-07.example', version: '2.4.1' });
    assert.equal(leases.length, 3);
    // Over the bridge too: host and version travel with the HTTP claim.
    const bridged = await api<{ leases: Lease[] }>('POST', '/claim', {
      tenant: 'acme', body: { workerId: 'reg-w2', jobTypes: ['lz_reg'], limit: 5, host: 'edge-3', version: '1.0.0+b7' },
    });
    assert.equal(bridged.status, 200);
    assert.equal(bridged.body.leases.length, 1);

    const list = await client('acme').listWorkers();
    assert.equal(list.lostAfterMs, 600_000);
    const w1 = await worker('reg-w1');
    assert.deepEqual({ status: w1.status, host: w1.host, version: w1.version, jobTypes: w1.jobTypes, inFlight: w1.inFlight, lostAt: w1.lostAt },
      { status: 'active', host: 'build-07.example', version: '2.4.1', jobTypes: ['lz_reg', 'lz_reg_other'], inFlight: 3, lostAt: null });
    assert.ok(w1.silentSeconds < 10);
    const w2 = await worker('reg-w2');
    assert.deepEqual({ host: w2.host, version: w2.version, inFlight: w2.inFlight }, { host: 'edge-3', version: '1.0.0+b7', inFlight: 1 });

    // inFlight follows the leases held.
    assert.equal((await plane.ledger.complete([refOf(leases[0]!)], 'worker:reg-w1'))[0]!.status, 'ok');
    await client('acme').releaseLeases({ jobIds: [leases[1]!.jobId] }, { reason: 'registry test' });
    assert.equal((await worker('reg-w1')).inFlight, 1);

    // Both fall silent; a heartbeat on reg-w1's lease refreshes reg-w1 only.
    await db.pool.query(`UPDATE orch.workers SET last_seen = now() - interval '20 seconds' WHERE worker_id IN ('reg-w1', 'reg-w2')`);
    const silent = await worker('reg-w1');
    assert.ok(silent.silentSeconds >= 20, `silent ${silent.silentSeconds}`);
    const [hb] = await plane.ledger.heartbeat([{ ...refOf(leases[2]!), progress: 0.5 }]);
    assert.equal(hb!.status, 'ok');
    const refreshed = await worker('reg-w1');
    assert.ok(Date.parse(refreshed.lastSeen) > Date.parse(silent.lastSeen) + 15_000, `lastSeen ${silent.lastSeen} -> ${refreshed.lastSeen}`);
    assert.ok(refreshed.silentSeconds < 10);
    assert.equal(refreshed.status, 'active');
    assert.ok((await worker('reg-w2')).silentSeconds >= 20, 'another worker\'s heartbeat does not refresh reg-w2');
    // A refused heartbeat (a lease the worker no longer holds) keeps nobody alive.
    await db.pool.query(`UPDATE orch.workers SET last_seen = now() - interval '20 seconds' WHERE worker_id = 'reg-w1'`);
    const [refused] = await plane.ledger.heartbeat([refOf(leases[1]!)]);
    assert.equal(refused!.status, 'refused');
    assert.ok((await worker('reg-w1')).silentSeconds >= 20);
  });
});

describe('metrics', () => {
  test('lease and worker gauges follow the leases held; the release counter counts force releases by cause', async () => {
    const leases = await leased('acme', 'lz_metrics', 3, 'met-w');
    await backdate([leases[0]!.jobId], 90);
    const L = { job_type: 'lz_metrics' };
    let text = await scrape();
    assert.equal(sample(text, 'orchestrator_leases_active', L), 3);
    const oldest = sample(text, 'orchestrator_lease_oldest_heartbeat_age_seconds', L)!;
    assert.ok(oldest >= 90 && oldest < 100, `oldest heartbeat age ${oldest}`);
    assert.equal(sample(text, 'orchestrator_workers_active', L), 1);
    assert.equal(sample(text, 'orchestrator_lease_released_total', { ...L, cause: 'force_released' }) ?? 0, 0);

    await client('acme').releaseLeases({ jobIds: [leases[0]!.jobId, leases[1]!.jobId] }, { reason: 'metrics test' });
    text = await scrape();
    assert.equal(sample(text, 'orchestrator_lease_released_total', { ...L, cause: 'force_released' }), 2);
    assert.equal(sample(text, 'orchestrator_leases_active', L), 1);
    assert.ok(sample(text, 'orchestrator_lease_oldest_heartbeat_age_seconds', L)! < 30, 'the backdated lease is gone');
    assert.equal(sample(text, 'orchestrator_lease_released_total', { ...L, cause: 'worker_lost' }), undefined);

    // A normal ack is not a release; the gauge drops to 0 rather than keeping its last value.
    assert.equal((await plane.ledger.complete([refOf(leases[2]!)], 'worker:met-w'))[0]!.status, 'ok');
    text = await scrape();
    assert.equal(sample(text, 'orchestrator_leases_active', L), 0);
    assert.equal(sample(text, 'orchestrator_lease_released_total', { ...L, cause: 'force_released' }), 2);
  });
});

describe('orch leases / orch workers', () => {
  test('list shows the stuck lease first, release takes a job by id, workers list --output json, bad input fails in one line', async () => {
    const [stuck, ok] = await leased('cli-co', 'lz_cli', 2, 'cli-w');
    await backdate([stuck!.jobId], 120);
    const orch = (...args: string[]) => runCli(['--api-url', plane.url, '--tenant', 'cli-co', ...args]);

    const [list, otherTenant, workers, noSelector, noReason, badThreshold] = await Promise.all([
      orch('leases', 'list', '--stuck-after', '60s'),
      runCli(['--api-url', plane.url, '--tenant', 'cli-co-b', 'leases', 'list']),
      orch('--output', 'json', 'workers', 'list'),
      orch('leases', 'release', '--reason', 'r'),
      orch('leases', 'release', stuck!.jobId),
      orch('leases', 'list', '--stuck-after', '500ms'),
    ]);

    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trimEnd().split('\n');
    assert.equal(lines[0], '2 leases, 1 stuck (heartbeat older than 60s)');
    const rows = lines.slice(1, 4).map((l) => l.trim().split(/\s{2,}/));
    assert.deepEqual(rows[0], ['JOBID', 'JOBTYPE', 'WORKERID', 'ATTEMPT', 'AGESECONDS', 'HEARTBEATAGESECONDS', 'PROGRESS', 'STUCK', 'LEASEID']);
    assert.deepEqual([rows[1]![0], rows[1]![1], rows[1]![2], rows[1]![7], rows[1]![8]], [stuck!.jobId, 'lz_cli', 'cli-w', 'true', stuck!.leaseId]);
    assert.deepEqual([rows[2]![0], rows[2]![7]], [ok!.jobId, 'false']);
    assert.ok(Number(rows[1]![5]) >= 120, `heartbeat age column ${rows[1]![5]}`);
    assert.match(list.stdout, /postgres lock waits on the ledger: none/);

    assert.equal(otherTenant.code, 0, otherTenant.stderr);
    assert.match(otherTenant.stdout, /^0 leases, 0 stuck/, '--tenant scopes the list');

    assert.equal(workers.code, 0, workers.stderr);
    const parsed = JSON.parse(workers.stdout) as { workers: WorkerRecord[]; lostAfterMs: number };
    const cliW = parsed.workers.find((w) => w.workerId === 'cli-w');
    assert.ok(cliW);
    assert.deepEqual({ status: cliW.status, inFlight: cliW.inFlight, jobTypes: cliW.jobTypes }, { status: 'active', inFlight: 2, jobTypes: ['lz_cli'] });

    for (const [r, pattern] of [
      [noSelector, /give lease or job ids, --worker W, or --stuck/],
      [noReason, /--reason/],
      [badThreshold, /stuckAfterMs.*HTTP 400/],
    ] as const) {
      assert.equal(r.code, 1, `exit 1: ${r.stderr}`);
      const errLines = r.stderr.split('\n').filter((l) => l !== '');
      assert.equal(errLines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
      assert.match(errLines[0]!, /^orch: /);
      assert.match(errLines[0]!, pattern);
      assert.equal(r.stdout, '');
    }
    assert.equal((await jobRow(stuck!.jobId)).state, 'leased', 'the failed commands released nothing');

    const release = await orch('leases', 'release', stuck!.jobId, '--reason', 'r');
    assert.equal(release.code, 0, release.stderr);
    const out = release.stdout.trimEnd().split('\n');
    assert.deepEqual(out.map((l) => l.trim().split(/\s{2,}/)), [['JOBID', 'JOBTYPE', 'STATE'], [stuck!.jobId, 'lz_cli', 'queued'], ['1 released']]);
    assert.equal((await jobRow(stuck!.jobId)).state, 'queued');
    assert.equal((await jobRow(ok!.jobId)).state, 'leased');
    const last = (await client('cli-co').getJob(stuck!.jobId)).history.at(-1)!;
    assert.deepEqual([last.to, last.reason, last.actor], ['queued', 'r', 'anonymous']);
  });
});

// --- a worker process killed mid-job -------------------------------------------------------------

/** A crash worker whose process is killed when the file's tests end. */
async function spawnWorker(args: string[]): Promise<ChildProcess> {
  const child = await spawnCrashWorker(args);
  cleanups.push(() => kill(child, 'SIGKILL'));
  return child;
}

describe('a worker process killed mid-job', () => {
  test('missed heartbeats mark it lost and its jobs go back long before the lease deadline; a healthy worker runs each once', async () => {
    const LOST_AFTER_MS = 15_000; // the smallest the config allows
    const TENANT = 'default';
    const type = 'lz_lost';
    const total = 30;
    const db2 = await createTestDatabase();
    cleanups.push(() => db2.drop());
    const cp = await startTestServer(db2.url, {
      workerLostAfterMs: LOST_AFTER_MS, maintenance: { ...defaultConfig.maintenance, leaseReaperIntervalMs: 100 },
    });
    cleanups.push(() => cp.stop());
    const c = client(TENANT, cp.url);
    await c.defineJobType(type, { leaseMs: LONG_LEASE_MS, maxAttempts: 3 }, { reason: 'test setup' });
    const ids = (await c.enqueueBatch(Array.from({ length: total }, (_, n) => ({ jobType: type, payload: { n } })))).map((r) => r.id);
    const count = async (state: string, workerId?: string) => Number((await db2.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1 AND state = $2::orch.job_state AND ($3::text IS NULL OR worker_id = $3)`,
      [type, state, workerId ?? null])).rows[0]!.n);

    const doomedId = `doomed-${process.pid}`;
    const child = await spawnWorker([db2.url, type, doomedId, 'hang']);
    // concurrency 10 + prefetch 10: twenty leases held, the handlers hanging
    await eventually(async () => (await count('leased', doomedId)) === 20, 15_000, 'twenty jobs leased to the doomed worker');
    const { rows: held } = await db2.pool.query<{ id: string; lease_until: Date }>(
      `SELECT id::text, lease_until FROM orch.jobs WHERE job_type = $1 AND worker_id = $2 AND state = 'leased'`, [type, doomedId]);
    const doomed = new Set(held.map((r) => r.id));
    const earliestDeadline = Math.min(...held.map((r) => r.lease_until.getTime()));
    const before = (await c.listWorkers()).workers.find((w) => w.workerId === doomedId);
    assert.ok(before, 'the doomed worker is registered');
    const host = /^[A-Za-z0-9._:-]{1,255}$/.test(hostname()) ? hostname() : null;
    assert.deepEqual({ status: before.status, inFlight: before.inFlight, jobTypes: before.jobTypes, host: before.host },
      { status: 'active', inFlight: 20, jobTypes: [type], host });
    assert.equal(sample(await scrape(cp.url), 'orchestrator_workers_active', { job_type: type }), 1);

    await kill(child, 'SIGKILL');
    const killedAt = Date.now();

    // The reaper marks the worker lost, then releases its leases in a second statement: wait for both.
    await eventually(async () => (await count('queued')) === total, LOST_AFTER_MS + 20_000, 'all the doomed worker\'s jobs queued again');
    const recoveredAt = Date.now();
    const lost = (await c.listWorkers()).workers.find((x) => x.workerId === doomedId);
    assert.ok(lost);
    assert.equal(lost.status, 'lost');
    assert.ok(recoveredAt < earliestDeadline - 500_000, 'recovered long before any lease deadline');
    assert.equal(lost.inFlight, 0);
    assert.ok(lost.lostAt);
    const silence = Date.parse(lost.lostAt) - Date.parse(lost.lastSeen);
    assert.ok(silence >= LOST_AFTER_MS && silence < LOST_AFTER_MS + 5000, `marked lost after ${silence} ms of silence`);
    assert.ok(recoveredAt - killedAt < LOST_AFTER_MS + 10_000, `recovered ${recoveredAt - killedAt} ms after the kill`);

    for (const id of doomed) {
      const h = await cp.ledger.getHistory(TENANT, id);
      const last = h.at(-1)!;
      assert.deepEqual({ from: last.from, to: last.to, attempt: last.attempt, actor: last.actor, reason: last.reason },
        { from: 'leased', to: 'queued', attempt: 1, actor: 'system:lease-reaper', reason: 'worker_lost' }, `job ${id}`);
    }
    // The reaper feeds the counter once its release statement returns, a moment after the rows commit.
    await eventually(async () => sample(await scrape(cp.url), 'orchestrator_lease_released_total', { job_type: type, cause: 'worker_lost' }) === 20,
      5000, 'twenty worker_lost releases counted');
    let text = await scrape(cp.url);
    assert.equal(sample(text, 'orchestrator_workers_active', { job_type: type }), 0, 'a lost worker is not active');
    assert.equal(sample(text, 'orchestrator_leases_active', { job_type: type }), 0);

    const runs = new Map<string, number>();
    const healthy = await createWorker<{ n: number }>({
      connectionString: db2.url, jobTypes: [type], workerId: `healthy-${process.pid}`, concurrency: 10, waitMs: 1000,
      handleSignals: false, log: createLogger('silent'),
      handler: (j) => {
        runs.set(j.id, (runs.get(j.id) ?? 0) + 1);
        return { n: j.payload.n, attempt: j.attempt };
      },
    });
    cleanups.push(() => healthy.stop());
    await eventually(async () => (await count('succeeded')) === total, 30_000, 'all jobs succeeded');
    await healthy.stop();

    const { rows: states } = await db2.pool.query<{ state: string; n: string }>(
      'SELECT state::text, count(*) AS n FROM orch.jobs WHERE job_type = $1 GROUP BY state', [type]);
    assert.deepEqual(Object.fromEntries(states.map((r) => [r.state, Number(r.n)])), { succeeded: total }, 'nothing lost, nothing left');
    for (const id of ids) {
      const h = await cp.ledger.getHistory(TENANT, id);
      assert.equal(h.filter((e) => e.to === 'succeeded').length, 1, `job ${id}: exactly one succeeded row`);
      assert.equal(runs.get(id), 1, `job ${id} ran once on the healthy worker`);
      const j = (await cp.ledger.getJob(TENANT, id))!;
      if (doomed.has(id)) {
        assert.deepEqual(trail(h), ['queued#0', 'leased#1', 'queued#1/worker_lost', 'leased#2', 'succeeded#2'], `job ${id}`);
        assert.equal(h[1]!.actor, `worker:${doomedId}`);
      } else {
        assert.deepEqual(trail(h), ['queued#0', 'leased#1', 'succeeded#1'], `job ${id}`);
      }
      assert.deepEqual(j.result, { n: (j.payload as { n: number }).n, attempt: j.attempt });
    }
    text = await scrape(cp.url);
    assert.equal(sample(text, 'orchestrator_lease_released_total', { job_type: type, cause: 'worker_lost' }), 20, 'no further releases');
  });
});
