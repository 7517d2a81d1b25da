import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfig } from '../src/config/config.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import type { Lease } from '../src/ledger/types.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually } from './helpers/server.ts';

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
