import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfig } from '../src/config/config.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import type { Lease } from '../src/ledger/types.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import { sample } from '../src/metrics/exposition.ts';
import { expand, readOutbox } from '../src/events/envelope.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, startTestServer } from './helpers/server.ts';

/** Metrics are fed from transitions in batches: the counts must still be exact per label set. */

let db: TestDatabase;
let ledger: Ledger;
let metrics: Metrics;

before(async () => {
  db = await createTestDatabase();
  ledger = new Ledger(db.pool, loadConfig({}));
  metrics = new Metrics();
  ledger.observe(metrics);
});

after(async () => {
  await db.drop();
});

/** A sample's value; histogram parts are named by their series (e.g. "..._seconds_count"). */
async function value(name: string, labels: Record<string, string>): Promise<number> {
  const all = await metrics.registry.getMetricsAsJSON();
  const metric = all.find((m) => m.name === name) ?? all.find((m) => name.startsWith(`${m.name}_`));
  const values = (metric?.values ?? []) as { value: number; labels: Record<string, string | number>; metricName?: string }[];
  const sample = values.find((v) => (v.metricName ?? metric!.name) === name && Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return sample?.value ?? 0;
}

const refs = (leases: Lease[]) => leases.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId }));

test('batched transitions are counted once each, per tenant, job type and outcome', async () => {
  await ledger.enqueue([
    ...Array.from({ length: 200 }, (_, i) => ({ tenantId: 'acme', jobType: 'm_batch', payload: i })),
    ...Array.from({ length: 100 }, (_, i) => ({ tenantId: 'globex', jobType: 'm_batch', payload: i })),
  ]);
  assert.equal(await value('orchestrator_jobs_enqueued_total', { tenant: 'acme', job_type: 'm_batch' }), 200);
  assert.equal(await value('orchestrator_jobs_enqueued_total', { tenant: 'globex', job_type: 'm_batch' }), 100);

  // Claims share their limit across tenants, so a tenant with less than its share leaves the rest for the next round.
  const leases: Lease[] = [];
  for (let round = 0; round < 5 && leases.length < 300; round++) leases.push(...await ledger.claim({ workerId: 'w', jobTypes: ['m_batch'], limit: 300 - leases.length }));
  assert.equal(leases.length, 300);
  const acme = leases.filter((l) => l.tenantId === 'acme');
  await ledger.complete(refs(acme.slice(0, 150)), 'worker:w');
  await ledger.fail(refs(acme.slice(150, 190)).map((r) => ({ ...r, error: { class: 'Boom', message: 'retry me' } })), 'worker:w');
  await ledger.fail(refs(acme.slice(190)).map((r) => ({ ...r, error: { class: 'Fatal', message: 'no', retryable: false } })), 'worker:w');

  assert.equal(await value('orchestrator_jobs_total', { tenant: 'acme', job_type: 'm_batch', outcome: 'succeeded' }), 150);
  assert.equal(await value('orchestrator_jobs_total', { tenant: 'acme', job_type: 'm_batch', outcome: 'failed' }), 40);
  assert.equal(await value('orchestrator_jobs_total', { tenant: 'acme', job_type: 'm_batch', outcome: 'dead_lettered' }), 10);
  assert.equal(await value('orchestrator_job_failures_total', { job_type: 'm_batch', error_class: 'Boom' }), 40);
  assert.equal(await value('orchestrator_job_failures_total', { job_type: 'm_batch', error_class: 'Fatal' }), 10);
  assert.equal(await value('orchestrator_dispatch_latency_seconds_count', { job_type: 'm_batch' }), 300);
  assert.equal(await value('orchestrator_job_duration_seconds_count', { job_type: 'm_batch', outcome: 'succeeded' }), 150);
  // a repeated ack is not counted again
  await ledger.complete(refs(acme.slice(0, 150)), 'worker:w');
  assert.equal(await value('orchestrator_jobs_total', { tenant: 'acme', job_type: 'm_batch', outcome: 'succeeded' }), 150);
});

test('lapsed leases count as retried and lease_expired; handed-back leases count as nothing', async () => {
  await ledger.jobTypes.define('m_lapse', { leaseMs: 1000 });
  await ledger.enqueue(Array.from({ length: 5 }, (_, i) => ({ tenantId: 'acme', jobType: 'm_lapse', payload: i })));
  const leases = await ledger.claim({ workerId: 'w', jobTypes: ['m_lapse'], limit: 5 });
  await ledger.release(refs(leases.slice(0, 2)), 'worker:w');
  const expired = await eventually(async () => {
    const r = await ledger.expireLeases(100, 'system:test');
    return r.length > 0 ? r : null;
  }, 10_000, 'leases to lapse');
  assert.equal(expired.length, 3);
  assert.equal(await value('orchestrator_lease_expired_total', { job_type: 'm_lapse' }), 3);
  assert.equal(await value('orchestrator_jobs_total', { tenant: 'acme', job_type: 'm_lapse', outcome: 'retried' }), 3);
  assert.equal(await value('orchestrator_job_failures_total', { job_type: 'm_lapse', error_class: 'LeaseExpired' }), 3);
});

test('claims are counted by whether they leased anything, both outcomes from 0', async () => {
  const fresh = new Metrics();
  const counted = new Ledger(db.pool, loadConfig({}));
  counted.observe(fresh);
  const claims = async (outcome: string) => {
    const m = (await fresh.registry.getMetricsAsJSON()).find((x) => x.name === 'orchestrator_claims_total');
    return m?.values.find((v) => v.labels.outcome === outcome)?.value;
  };
  assert.deepEqual([await claims('leased'), await claims('empty')], [0, 0]);
  await counted.enqueue([{ tenantId: 'acme', jobType: 'm_claims', payload: 1 }]);
  const req = { workerId: 'w', jobTypes: ['m_claims'], limit: 5 };
  assert.equal((await counted.claim(req)).length, 1);
  assert.equal((await counted.claim(req)).length, 0);
  assert.equal((await counted.claim(req)).length, 0);
  assert.deepEqual([await claims('leased'), await claims('empty')], [1, 2]);
});

test('error classes past the cap per job type are folded into "other"', async () => {
  const n = Metrics.MAX_ERROR_CLASSES_PER_TYPE + 5;
  await ledger.enqueue(Array.from({ length: n }, (_, i) => ({ tenantId: 'acme', jobType: 'm_classes', payload: i })));
  const leases = await ledger.claim({ workerId: 'w', jobTypes: ['m_classes'], limit: n });
  await ledger.fail(refs(leases).map((r, i) => ({ ...r, error: { class: `E${i}`, message: 'm' } })), 'worker:w');
  const failures = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'orchestrator_job_failures_total')!;
  const classes = failures.values.filter((v) => v.labels.job_type === 'm_classes');
  assert.equal(classes.length, Metrics.MAX_ERROR_CLASSES_PER_TYPE + 1);
  assert.equal(await value('orchestrator_job_failures_total', { job_type: 'm_classes', error_class: 'other' }), 5);
});

test('refusal counters are exported at 0 before the first refusal, so increase() sees that refusal', async () => {
  // Known before the server starts: the ledger has its jobs.
  await ledger.enqueue([{ tenantId: 'm_early', jobType: 'm_known', payload: 1 }]);
  const plane = await startTestServer(db.url, { maxQueuedPerTenant: 2 });
  try {
    const scrape = async () => (await fetch(`${plane.url}/metrics`)).text();
    const api = (path: string, init: RequestInit & { tenant: string }) => fetch(`${plane.url}/api/v1/orchestrator${path}`, {
      ...init, headers: { 'content-type': 'application/json', 'x-tenant-id': init.tenant, ...init.headers as Record<string, string> },
    });
    let text = await scrape();
    for (const reason of ['rate', 'concurrency', 'quota', 'paused']) {
      assert.equal(sample(text, 'orchestrator_throttled_total', { tenant: 'm_early', job_type: 'm_known', reason }), 0, `throttled ${reason} at startup`);
    }
    assert.equal(sample(text, 'orchestrator_enqueue_refused_total', { tenant: 'm_early' }), 0, 'refused at startup');

    // Known when a quota names it, before any job of that type exists.
    const put = await api('/quotas/m_early/m_quota', { method: 'PUT', tenant: 'm_early', body: JSON.stringify({ maxActive: 1 }), headers: { 'x-operator-reason': 'test', 'x-operator-ticket': 'T-1' } });
    assert.equal(put.status, 200, await put.text());
    assert.equal(sample(await scrape(), 'orchestrator_throttled_total', { tenant: 'm_early', job_type: 'm_quota', reason: 'concurrency' }), 0);

    // Known at its first enqueue; the refusal that follows is a step from 0 to 1.
    const enqueue = () => api('/jobs', { method: 'POST', tenant: 'm_new', body: JSON.stringify({ jobType: 'm_fresh', payload: {} }) });
    assert.equal((await enqueue()).status, 201);
    text = await scrape();
    assert.equal(sample(text, 'orchestrator_enqueue_refused_total', { tenant: 'm_new' }), 0, 'refused before any refusal');
    assert.equal(sample(text, 'orchestrator_throttled_total', { tenant: 'm_new', job_type: 'm_fresh', reason: 'quota' }), 0);
    await eventually(async () => {
      const r = await enqueue();
      return r.status === 429;
    }, 10_000, 'the tenant to reach ORCH_MAX_QUEUED_PER_TENANT');
    assert.equal(sample(await scrape(), 'orchestrator_enqueue_refused_total', { tenant: 'm_new' }), 1);
  } finally {
    await plane.stop();
  }
});

/**
 * What made a transition is a typed cause stored with its history
 * (migrations/0011_transition_cause.sql), never decoded from the reason text:
 * an operator whose note reads like a code ("lease_expired") is still an
 * operator's force release, in the history, the events and the metrics.
 */
test('each transition records what made it; an operator\'s note never changes its meaning', async () => {
  const T = 'causes';
  await ledger.jobTypes.define('cz', { maxAttempts: 3 });
  const [a, b] = await ledger.enqueue([{ tenantId: T, jobType: 'cz', payload: {} }, { tenantId: T, jobType: 'cz', payload: {} }]);
  const leases = await ledger.claim({ workerId: 'w', jobTypes: ['cz'], tenantIds: [T], limit: 2 });
  const la = leases.find((l) => l.jobId === a!.id)!;
  await ledger.complete([{ tenantId: T, jobId: la.jobId, leaseId: la.leaseId }], null);
  await ledger.forceRelease({ tenantId: T, jobIds: [b!.id] }, 10, 'operator:alice', 'lease_expired');

  const causes = async (id: string) => (await ledger.getHistory(T, id)).map((h) => h.cause);
  assert.deepEqual(await causes(a!.id), ['enqueued', 'claimed', 'worker_completed']);
  assert.deepEqual(await causes(b!.id), ['enqueued', 'claimed', 'force_released']);
  assert.equal((await ledger.getHistory(T, b!.id)).at(-1)!.reason, 'lease_expired', 'the note is kept as written');

  // (the outbox is read below every open transaction on the server: other tests' may hold the newest row back a moment)
  const ofB = await eventually(async () => {
    const events = (await expand(db.pool, await readOutbox(db.pool, { limit: 1000, tenantId: T }))).map((p) => p.event).filter((e) => e.job?.id === b!.id);
    return events.length >= 3 ? events : null;
  }, 10_000, 'the events of the released job');
  assert.deepEqual(ofB.map((e) => e.eventType), ['job.enqueued', 'job.leased', 'lease.released']);
  assert.equal(await value('orchestrator_lease_expired_total', { job_type: 'cz' }), 0, 'no expiry counted for an operator\'s release');
  assert.equal(await value('orchestrator_lease_released_total', { job_type: 'cz', cause: 'force_released' }), 1);
});
