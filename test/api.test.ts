import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import type { HistoryEntry, Job, Lease } from '../src/ledger/types.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startTestServer } from './helpers/server.ts';
import { httpClient, type HttpResult } from './helpers/http.ts';

const BASE = '/api/v1/orchestrator';

let db: TestDatabase;
let plane: ControlPlane;

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
});

after(async () => {
  await plane.stop();
  await db.drop();
});

type Res<T> = HttpResult<T>;
interface EnqueuedRef { id: string; jobType: string; state: string; created: boolean }
interface ErrorBody { error: { code: string; message: string; field: string | null } }
interface AckResult { jobId: string; status: 'ok' | 'duplicate' | 'refused'; state: string | null; reason?: string }
interface HeartbeatResult { jobId: string; status: 'ok' | 'refused'; leaseUntil?: string; reason?: string; state?: string | null }

const call = httpClient(() => plane.url, '', { tenant: 'acme' });

const enqueue = (body: Record<string, unknown>, tenant = 'acme') => call<EnqueuedRef>('POST', `${BASE}/jobs`, { body, tenant });

async function claim(jobTypes: string[], limit = 1, extra: Record<string, unknown> = {}, tenant: string | null = null): Promise<Lease[]> {
  const r = await call<{ leases: Lease[] }>('POST', `${BASE}/claim`, { body: { workerId: 'http-worker', jobTypes, limit, ...extra }, tenant });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.leases;
}

async function claimOne(jobType: string): Promise<Lease> {
  const leases = await claim([jobType]);
  assert.equal(leases.length, 1);
  return leases[0]!;
}

async function show(id: string, tenant = 'acme') {
  return call<{ job: Job; history: HistoryEntry[] }>('GET', `${BASE}/jobs/${id}`, { tenant });
}

describe('jobs', () => {
  test('enqueue is 201; an idempotent re-submit is 200 with the same id', async () => {
    const a = await enqueue({ jobType: 'email', payload: { to: 'a@example.com' }, priority: 3, idempotencyKey: 'mail-1' });
    assert.equal(a.status, 201);
    assert.deepEqual({ ...a.body, id: 'x' }, { id: 'x', jobType: 'email', state: 'queued', created: true });
    const b = await enqueue({ jobType: 'email', payload: { to: 'other' }, idempotencyKey: 'mail-1' });
    assert.equal(b.status, 200);
    assert.equal(b.body.id, a.body.id);
    assert.equal(b.body.created, false);
    const s = await show(a.body.id);
    assert.deepEqual(s.body.job.payload, { to: 'a@example.com' });
    assert.equal(s.body.job.priority, 3);
  });

  test('X-Tenant-Id and X-Stella-Tenant both name the tenant', async () => {
    const r = await call<EnqueuedRef>('POST', `${BASE}/jobs`, { body: { jobType: 'stella' }, tenant: null, headers: { 'x-stella-tenant': 'stella-co' } });
    assert.equal(r.status, 201);
    const viaStella = await call<{ job: Job }>('GET', `${BASE}/jobs/${r.body.id}`, { tenant: null, headers: { 'x-stella-tenant': 'stella-co' } });
    assert.equal(viaStella.status, 200);
    assert.equal(viaStella.body.job.tenantId, 'stella-co');
    const viaTenantId = await show(r.body.id, 'stella-co');
    assert.equal(viaTenantId.status, 200);
    assert.equal((await show(r.body.id, 'acme')).status, 404);
  });

  test('batch enqueue returns one ref per job, in order', async () => {
    const r = await call<{ jobs: EnqueuedRef[] }>('POST', `${BASE}/jobs/batch`, {
      body: { jobs: [{ jobType: 'b1', payload: 1 }, { jobType: 'b2', payload: 2, delayMs: 60_000 }, { jobType: 'b1', payload: 3, idempotencyKey: 'bk' }, { jobType: 'b1', payload: 4, idempotencyKey: 'bk' }] },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.jobs.map((j) => [j.jobType, j.created]), [['b1', true], ['b2', true], ['b1', true], ['b1', false]]);
    assert.equal(r.body.jobs[3]!.id, r.body.jobs[2]!.id);
    const payloads = await Promise.all(r.body.jobs.slice(0, 3).map(async (j) => (await show(j.id)).body.job.payload));
    assert.deepEqual(payloads, [1, 2, 3]);
    const delayed = (await show(r.body.jobs[1]!.id)).body.job;
    assert.ok(Date.parse(delayed.runAfter) > Date.now() + 50_000, 'delayMs sets runAfter');
  });

  test('list is newest first and pages with a cursor; filters by state and job type', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await enqueue({ jobType: 'page', payload: i }, 'pager')).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `${BASE}/jobs?limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const r: Res<{ jobs: Job[]; nextCursor: string | null }> = await call('GET', q, { tenant: 'pager' });
      assert.equal(r.status, 200);
      assert.ok(r.body.jobs.length <= 3);
      seen.push(...r.body.jobs.map((j) => j.id));
      cursor = r.body.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    assert.equal(pages, 3);
    assert.deepEqual(seen, [...ids].reverse(), 'every job once, newest first');

    await call('POST', `${BASE}/jobs/${ids[0]}/cancel`, { tenant: 'pager', headers: { 'x-operator-reason': 'test' } });
    const canceled = await call<{ jobs: Job[] }>('GET', `${BASE}/jobs?state=canceled`, { tenant: 'pager' });
    assert.deepEqual(canceled.body.jobs.map((j) => j.id), [ids[0]]);
    await enqueue({ jobType: 'page_other' }, 'pager');
    const byType = await call<{ jobs: Job[] }>('GET', `${BASE}/jobs?jobType=page&state=queued`, { tenant: 'pager' });
    assert.equal(byType.body.jobs.length, 6);
    assert.ok(byType.body.jobs.every((j) => j.jobType === 'page' && j.state === 'queued'));
  });

  test('show returns the job with its history; cancel cancels; tenants are isolated', async () => {
    const { body: ref } = await enqueue({ jobType: 'iso', payload: 'secret' }, 'tenant-a');
    const s = await show(ref.id, 'tenant-a');
    assert.equal(s.status, 200);
    assert.equal(s.body.job.state, 'queued');
    assert.deepEqual(s.body.history.map((h) => [h.from, h.to, h.actor]), [[null, 'queued', 'anonymous']]);

    const seenByB = await show(ref.id, 'tenant-b');
    assert.equal(seenByB.status, 404);
    assert.equal((seenByB.body as unknown as ErrorBody).error.code, 'not_found');
    const listB = await call<{ jobs: Job[] }>('GET', `${BASE}/jobs?jobType=iso`, { tenant: 'tenant-b' });
    assert.deepEqual(listB.body.jobs, []);
    const cancelByB = await call<ErrorBody>('POST', `${BASE}/jobs/${ref.id}/cancel`, { tenant: 'tenant-b', headers: { 'x-operator-reason': 'test' } });
    assert.equal(cancelByB.status, 404);
    assert.equal((await show(ref.id, 'tenant-a')).body.job.state, 'queued', 'B\'s cancel changed nothing');

    const c = await call<{ job: Job }>('POST', `${BASE}/jobs/${ref.id}/cancel`, { tenant: 'tenant-a', headers: { 'x-operator-reason': 'customer asked' } });
    assert.equal(c.status, 200);
    assert.equal(c.body.job.state, 'canceled');
    const after = await show(ref.id, 'tenant-a');
    assert.deepEqual(after.body.history.at(-1) && [after.body.history.at(-1)!.to, after.body.history.at(-1)!.reason], ['canceled', 'customer asked']);
    const again = await call<ErrorBody>('POST', `${BASE}/jobs/${ref.id}/cancel`, { tenant: 'tenant-a', headers: { 'x-operator-reason': 'test' } });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'conflict');
  });
});

describe('worker bridge', () => {
  test('claim -> heartbeat -> complete; a repeat complete is a 200 duplicate', async () => {
    const { body: ref } = await enqueue({ jobType: 'render', payload: { page: 1 }, correlationId: 'corr-9' });
    const lease = await claimOne('render');
    assert.equal(lease.jobId, ref.id);
    assert.equal(lease.attempt, 1);
    assert.equal(lease.tenantId, 'acme');
    assert.deepEqual(lease.payload, { page: 1 });
    assert.equal(lease.correlationId, 'corr-9');

    const hb = await call<{ jobId: string; leaseUntil: string }>('POST', `${BASE}/jobs/${ref.id}/heartbeat`, { body: { leaseId: lease.leaseId, progress: 0.25, message: 'a quarter' } });
    assert.equal(hb.status, 200);
    assert.ok(Date.parse(hb.body.leaseUntil) >= Date.parse(lease.leaseUntil));
    let s = await show(ref.id);
    assert.equal(s.body.job.progress, 0.25);
    assert.equal(s.body.job.progressMessage, 'a quarter');

    const artifacts = [{ name: 'out.png', uri: 'file:///tmp/out.png', sha256: 'b'.repeat(64) }];
    const done = await call<AckResult>('POST', `${BASE}/jobs/${ref.id}/complete`, { body: { leaseId: lease.leaseId, result: { pages: 1 }, artifacts } });
    assert.equal(done.status, 200);
    assert.deepEqual(done.body, { jobId: ref.id, status: 'ok', state: 'succeeded' });
    const dup = await call<AckResult>('POST', `${BASE}/jobs/${ref.id}/complete`, { body: { leaseId: lease.leaseId, result: { pages: 99 } } });
    assert.equal(dup.status, 200);
    assert.deepEqual(dup.body, { jobId: ref.id, status: 'duplicate', state: 'succeeded' });
    s = await show(ref.id);
    assert.equal(s.body.job.state, 'succeeded');
    assert.deepEqual(s.body.job.result, { pages: 1 });
    assert.deepEqual(s.body.job.artifacts, artifacts);
    assert.deepEqual(s.body.history.map((h) => h.to), ['queued', 'leased', 'succeeded']);

    const late = await call<ErrorBody>('POST', `${BASE}/jobs/${ref.id}/heartbeat`, { body: { leaseId: lease.leaseId } });
    assert.equal(late.status, 409);
  });

  test('complete with a stale lease is 409 with a JSON error naming leaseId; unknown job is 404', async () => {
    const { body: ref } = await enqueue({ jobType: 'stale' });
    const lease = await claimOne('stale');
    const r = await call<ErrorBody>('POST', `${BASE}/jobs/${ref.id}/complete`, { body: { leaseId: randomUUID(), result: 'x' } });
    assert.equal(r.status, 409);
    assert.match(r.contentType ?? '', /application\/json/);
    assert.equal(r.body.error.code, 'lease_lost');
    assert.equal(r.body.error.field, 'leaseId');
    assert.equal(typeof r.body.error.message, 'string');
    assert.ok(r.body.error.message.length > 0);
    assert.equal((await show(ref.id)).body.job.state, 'leased', 'nothing changed');
    const missing = await call<ErrorBody>('POST', `${BASE}/jobs/987654321/complete`, { body: { leaseId: lease.leaseId } });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'not_found');
  });

  test('fail: retryable goes to failed with backoff, non-retryable dead-letters', async () => {
    await enqueue({ jobType: 'flaky' });
    const l1 = await claimOne('flaky');
    const r1 = await call<AckResult>('POST', `${BASE}/jobs/${l1.jobId}/fail`, { body: { leaseId: l1.leaseId, error: { class: 'Timeout', message: 'upstream slow' } } });
    assert.equal(r1.status, 200);
    assert.deepEqual(r1.body, { jobId: l1.jobId, status: 'ok', state: 'failed' });
    const s = await show(l1.jobId);
    assert.deepEqual(s.body.job.lastError, { class: 'Timeout', message: 'upstream slow', retryable: true });
    assert.ok(Date.parse(s.body.job.runAfter) > Date.now(), 'retry is delayed by backoff');

    await enqueue({ jobType: 'fatal' });
    const l2 = await claimOne('fatal');
    const r2 = await call<AckResult>('POST', `${BASE}/jobs/${l2.jobId}/fail`, { body: { leaseId: l2.leaseId, error: { class: 'Invalid', message: 'bad input', retryable: false, details: { line: 3 } } } });
    assert.deepEqual(r2.body, { jobId: l2.jobId, status: 'ok', state: 'dead_lettered' });
    const again = await call<ErrorBody>('POST', `${BASE}/jobs/${l2.jobId}/fail`, { body: { leaseId: l2.leaseId, error: { class: 'Invalid', message: 'bad input', retryable: false } } });
    assert.equal(again.status, 200, 'repeating the same failure ack is a duplicate');
    const asSuccess = await call<ErrorBody>('POST', `${BASE}/jobs/${l2.jobId}/complete`, { body: { leaseId: l2.leaseId } });
    assert.equal(asSuccess.status, 409);
    assert.equal(asSuccess.body.error.code, 'already_acked');
  });

  test('/acks: a batch with mixed outcomes gets a result per item', async () => {
    await call('POST', `${BASE}/jobs/batch`, { body: { jobs: [1, 2, 3, 4, 5].map((n) => ({ jobType: 'acks', payload: n, priority: 10 - n })) } });
    const leases = await claim(['acks'], 5);
    assert.equal(leases.length, 5);
    const [a, b, c, d, e] = leases as [Lease, Lease, Lease, Lease, Lease];
    await call('POST', `${BASE}/jobs/${a.jobId}/complete`, { body: { leaseId: a.leaseId } });
    await call('POST', `${BASE}/jobs/${e.jobId}/cancel`, { headers: { 'x-operator-reason': 'test' } });
    const r = await call<{ results: AckResult[] }>('POST', `${BASE}/acks`, {
      body: {
        acks: [
          { jobId: a.jobId, leaseId: a.leaseId, outcome: 'succeeded' },
          { jobId: b.jobId, leaseId: b.leaseId, outcome: 'succeeded', result: { n: 2 } },
          { jobId: c.jobId, leaseId: randomUUID(), outcome: 'failed', error: { class: 'E', message: 'm' } },
          { jobId: d.jobId, leaseId: d.leaseId, outcome: 'failed', error: { class: 'E', message: 'm', retryable: false } },
          { jobId: e.jobId, leaseId: e.leaseId, outcome: 'succeeded' },
          { jobId: '987654321', leaseId: randomUUID(), outcome: 'succeeded' },
        ],
      },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.results.length, 6);
    const by = new Map(r.body.results.map((x) => [x.jobId, x]));
    assert.deepEqual(by.get(a.jobId), { jobId: a.jobId, status: 'duplicate', state: 'succeeded' });
    assert.deepEqual(by.get(b.jobId), { jobId: b.jobId, status: 'ok', state: 'succeeded' });
    assert.deepEqual(by.get(c.jobId), { jobId: c.jobId, status: 'refused', reason: 'lease_lost', state: 'leased' });
    assert.deepEqual(by.get(d.jobId), { jobId: d.jobId, status: 'ok', state: 'dead_lettered' });
    assert.deepEqual(by.get(e.jobId), { jobId: e.jobId, status: 'refused', reason: 'canceled', state: 'canceled' });
    assert.deepEqual(by.get('987654321'), { jobId: '987654321', status: 'refused', reason: 'not_found', state: null });
    assert.deepEqual((await show(b.jobId)).body.job.result, { n: 2 });
    assert.equal((await show(c.jobId)).body.job.state, 'leased');
  });

  test('/heartbeats renews many leases, refusing the bad ones; /releases hands leases back', async () => {
    await call('POST', `${BASE}/jobs/batch`, { body: { jobs: [{ jobType: 'hbs' }, { jobType: 'hbs' }] } });
    const [a, b] = (await claim(['hbs'], 2)) as [Lease, Lease];
    const hb = await call<{ results: HeartbeatResult[] }>('POST', `${BASE}/heartbeats`, {
      body: { leases: [{ jobId: a.jobId, leaseId: a.leaseId, progress: 0.7 }, { jobId: b.jobId, leaseId: randomUUID() }, { jobId: '987654321', leaseId: a.leaseId }] },
    });
    assert.equal(hb.status, 200);
    const by = new Map(hb.body.results.map((x) => [x.jobId, x]));
    assert.equal(by.get(a.jobId)?.status, 'ok');
    assert.ok(by.get(a.jobId)?.leaseUntil);
    assert.deepEqual([by.get(b.jobId)?.status, by.get(b.jobId)?.reason], ['refused', 'lease_lost']);
    assert.deepEqual([by.get('987654321')?.status, by.get('987654321')?.reason], ['refused', 'not_found']);
    assert.equal((await show(a.jobId)).body.job.progress, 0.7);

    const rel = await call<{ results: AckResult[] }>('POST', `${BASE}/releases`, { body: { leases: [{ jobId: a.jobId, leaseId: a.leaseId }, { jobId: b.jobId, leaseId: randomUUID() }] } });
    assert.equal(rel.status, 200);
    const rby = new Map(rel.body.results.map((x) => [x.jobId, x]));
    assert.deepEqual(rby.get(a.jobId), { jobId: a.jobId, status: 'ok', state: 'queued' });
    assert.equal(rby.get(b.jobId)?.status, 'refused');
    const s = await show(a.jobId);
    assert.equal(s.body.job.state, 'queued');
    assert.equal(s.body.job.attempt, 0);
    assert.equal((await show(b.jobId)).body.job.state, 'leased');
    const again = await claimOne('hbs');
    assert.equal(again.jobId, a.jobId);
    assert.equal(again.attempt, 1);
  });

  test('claim with a tenant header only claims that tenant\'s jobs', async () => {
    await enqueue({ jobType: 'tclaim', payload: 'a' }, 'ta');
    await enqueue({ jobType: 'tclaim', payload: 'b' }, 'tb');
    const leases = await claim(['tclaim'], 10, {}, 'tb');
    assert.deepEqual(leases.map((l) => [l.tenantId, l.payload]), [['tb', 'b']]);
  });

  test('long-poll: a waiting claim gets a job enqueued after it started, long before waitMs', async () => {
    const started = Date.now();
    let settled = false;
    const pending = claim(['longpoll'], 1, { waitMs: 10_000 }).finally(() => (settled = true));
    // give the claim time to find the queue empty and start waiting (test pacing, not waiting for background work)
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(settled, false, 'the claim is still waiting for work');
    const { body: ref } = await enqueue({ jobType: 'longpoll', payload: 'wake' });
    const enqueuedAt = Date.now();
    const leases = await pending;
    const tookAfterEnqueue = Date.now() - enqueuedAt;
    assert.deepEqual(leases.map((l) => l.jobId), [ref.id], `the waiting claim returned the job (returned after ${Date.now() - started} ms)`);
    assert.ok(tookAfterEnqueue < 5000, `returned ${tookAfterEnqueue} ms after the enqueue`);
  });

  test('long-poll: with no work the claim returns empty at waitMs, not before', async () => {
    const started = Date.now();
    const leases = await claim(['nothing_here'], 1, { waitMs: 1200 });
    const took = Date.now() - started;
    assert.deepEqual(leases, []);
    assert.ok(took >= 1100, `waited ${took} ms of 1200`);
    assert.ok(took < 5000);
  });
});

describe('operations', () => {
  test('/healthz and /readyz', async () => {
    const h = await call<{ status: string }>('GET', '/healthz', { tenant: null });
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');
    const r = await call<{ status: string; checks: Record<string, { ok: boolean }> }>('GET', '/readyz', { tenant: null });
    assert.equal(r.status, 200);
    assert.equal(r.body.status, 'ready');
    assert.deepEqual(r.body.checks, { database: { ok: true }, migrations: { ok: true } });
  });

  test('/metrics exposes job outcomes and dispatch latency after some work', async () => {
    await enqueue({ jobType: 'metered' });
    const l = await claimOne('metered');
    await call('POST', `${BASE}/jobs/${l.jobId}/complete`, { body: { leaseId: l.leaseId } });
    const m = await call<string>('GET', '/metrics', { tenant: null });
    assert.equal(m.status, 200);
    assert.match(m.contentType ?? '', /text\/plain/);
    assert.match(m.body, /^orchestrator_jobs_total\{tenant="acme",job_type="metered",outcome="succeeded"\} 1$/m);
    assert.match(m.body, /^orchestrator_dispatch_latency_seconds_count\{job_type="metered"\} 1$/m);
    assert.match(m.body, /^orchestrator_dispatch_latency_seconds_bucket\{le="\+Inf",job_type="metered"\} 1$/m);
    assert.match(m.body, /^orchestrator_jobs_enqueued_total\{tenant="acme",job_type="metered"\} 1$/m);
  });

  test('/.well-known/openapi is OpenAPI 3.1 and lists every route', async () => {
    const r = await call<{ openapi: string; paths: Record<string, Record<string, unknown>> }>('GET', '/.well-known/openapi', { tenant: null });
    assert.equal(r.status, 200);
    assert.equal(r.body.openapi, '3.1.0');
    const expected: [string, string][] = [
      ['post', '/claim'], ['post', '/acks'], ['post', '/heartbeats'], ['post', '/releases'],
      ['post', '/jobs'], ['get', '/jobs'], ['post', '/jobs/batch'], ['get', '/jobs/{jobId}'], ['post', '/jobs/{jobId}/cancel'],
      ['get', '/jobs/counts'], ['post', '/jobs/bulk'], ['post', '/jobs/bulk/preview'],
      ['post', '/jobs/{jobId}/heartbeat'], ['post', '/jobs/{jobId}/complete'], ['post', '/jobs/{jobId}/fail'],
      ['get', '/jobtypes'], ['get', '/jobtypes/{name}'], ['put', '/jobtypes/{name}'],
      ['get', '/pauses'], ['post', '/jobtypes/{name}/pause'], ['post', '/jobtypes/{name}/resume'],
      ['post', '/tenants/{tenantId}/pause'], ['post', '/tenants/{tenantId}/resume'],
      ['get', '/quotas'], ['get', '/quotas/summary'], ['get', '/quotas/{tenantId}/{jobType}'], ['put', '/quotas/{tenantId}/{jobType}'],
      ['delete', '/quotas/{tenantId}/{jobType}'], ['post', '/quotas/{tenantId}/{jobType}/pause'],
      ['post', '/quotas/{tenantId}/{jobType}/resume'], ['post', '/quotas/{tenantId}/{jobType}/boost'],
      ['post', '/quotas/{tenantId}/{jobType}/restore'], ['get', '/audit'],
      ['get', '/deadletter'], ['get', '/deadletter/stats'], ['get', '/deadletter/summary'], ['post', '/deadletter/snapshots'],
      ['get', '/deadletter/snapshots'], ['get', '/deadletter/snapshots/{snapshotId}'], ['get', '/deadletter/snapshots/{snapshotId}/download'],
      ['post', '/deadletter/clear'], ['post', '/deadletter/replay'], ['get', '/deadletter/replays'], ['get', '/deadletter/replays/{replayId}'],
      ['post', '/jobs/{jobId}/replay'], ['get', '/leases'], ['post', '/leases/release'], ['get', '/workers'], ['post', '/workers/{workerId}/stopped'],
      ['get', '/stream'], ['post', '/tokens'], ['get', '/tokens'], ['delete', '/tokens/{id}'], ['get', '/cluster'],
      ['get', '/schedules'], ['post', '/schedules'], ['get', '/schedules/{name}'], ['patch', '/schedules/{name}'], ['delete', '/schedules/{name}'],
      ['post', '/schedules/{name}/pause'], ['post', '/schedules/{name}/resume'], ['post', '/schedules/{name}/trigger'], ['get', '/watermarks'],
      ['get', '/backfills'], ['post', '/backfills'], ['post', '/backfills/plan'], ['get', '/backfills/{id}'],
      ['post', '/backfills/{id}/pause'], ['post', '/backfills/{id}/resume'], ['post', '/backfills/{id}/cancel'], ['post', '/backfills/{id}/retry'],
      ['get', '/workflows'], ['post', '/workflows'], ['get', '/workflows/{id}'], ['post', '/workflows/{id}/cancel'], ['post', '/workflows/{id}/retry'],
      ['get', '/whoami'], ['get', '/alerts'], ['get', '/stats/throughput'],
    ];
    for (const [method, path] of expected) {
      assert.ok(r.body.paths[BASE + path]?.[method], `${method.toUpperCase()} ${BASE}${path} is documented`);
    }
    const listed = Object.entries(r.body.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)).sort();
    assert.deepEqual(listed, expected.map(([m, p]) => `${m} ${BASE}${p}`).sort(), 'nothing undocumented, nothing extra');
  });
});
