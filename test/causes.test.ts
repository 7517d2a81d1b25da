/**
 * What made a transition is a typed cause stored with its history
 * (migrations/0011_transition_cause.sql), not decoded from the reason text:
 * an operator whose note reads like a code ("lease_expired") is still an
 * operator's force release, in the history, the events and the metrics.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import { expand, readOutbox } from '../src/events/envelope.ts';
import { sample } from '../src/metrics/exposition.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startTestServer } from './helpers/server.ts';

const T = 'causes';
let db: TestDatabase;
let plane: ControlPlane;

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
});

after(async () => {
  await plane?.stop();
  await db?.drop();
});

describe('transition causes', () => {
  test('each transition records what made it; an operator\'s note never changes its meaning', async () => {
    await plane.ledger.jobTypes.define('cz', { maxAttempts: 3 });
    const [a, b] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'cz', payload: {} }, { tenantId: T, jobType: 'cz', payload: {} }]);
    const leases = await plane.ledger.claim({ workerId: 'w', jobTypes: ['cz'], tenantIds: [T], limit: 2 });
    const la = leases.find((l) => l.jobId === a!.id)!;
    await plane.ledger.complete([{ tenantId: T, jobId: la.jobId, leaseId: la.leaseId }], null);
    // an operator's release whose reason text reads like the reaper's code
    await plane.ledger.forceRelease({ tenantId: T, jobIds: [b!.id] }, 10, 'operator:alice', 'lease_expired');

    const causes = async (id: string) => (await plane.ledger.getHistory(T, id)).map((h) => h.cause);
    assert.deepEqual(await causes(a!.id), ['enqueued', 'claimed', 'worker_completed']);
    assert.deepEqual(await causes(b!.id), ['enqueued', 'claimed', 'force_released']);
    const last = (await plane.ledger.getHistory(T, b!.id)).at(-1)!;
    assert.equal(last.reason, 'lease_expired', 'the note is kept as written');

    const events = (await expand(db.pool, await readOutbox(db.pool, { limit: 100, tenantId: T }))).map((p) => p.event);
    assert.deepEqual(events.filter((e) => e.job?.id === b!.id).map((e) => e.eventType), ['job.enqueued', 'job.leased', 'lease.released']);

    const text = await (await fetch(`${plane.url}/metrics`)).text();
    assert.equal(sample(text, 'orchestrator_lease_expired_total', { job_type: 'cz' }) ?? 0, 0, 'no expiry counted for an operator\'s release');
    assert.equal(sample(text, 'orchestrator_lease_released_total', { job_type: 'cz', cause: 'force_released' }), 1);
  });
});
