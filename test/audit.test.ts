/**
 * Every operator action writes its audit entry in the same transaction as
 * the change (issue 14, item 9): cancel, job-type definition, force release
 * and DLQ clear each leave exactly one entry, and when the entry cannot be
 * written the change is rolled back with it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startTestServer } from './helpers/server.ts';

const BASE = '/api/v1/orchestrator';
const T = 'audited';
/** A reason the test trigger refuses to record: the audit insert fails, as a full disk or a lost connection would. */
const UNRECORDABLE = 'audit-insert-fails';

let db: TestDatabase;
let plane: ControlPlane;

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
  await db.pool.query(`
    CREATE FUNCTION orch.test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit log unavailable (test)'; END $$;
    CREATE TRIGGER test_refuse_audit BEFORE INSERT ON orch.audit_log
      FOR EACH ROW WHEN (NEW.reason = '${UNRECORDABLE}') EXECUTE FUNCTION orch.test_refuse_audit();`);
});

after(async () => {
  await plane?.stop();
  await db?.drop();
});

async function call(method: string, path: string, o: { body?: unknown; reason?: string } = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'x-tenant-id': T };
  if (o.reason) headers['x-operator-reason'] = o.reason;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${plane.url}${BASE}${path}`, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function auditRows(action: string): Promise<{ reason: string; target: string; details: Record<string, unknown> | null }[]> {
  const { rows } = await db.pool.query(`SELECT reason, target, details FROM orch.audit_log WHERE action = $1 ORDER BY id`, [action]);
  return rows;
}

const state = async (id: string) => (await plane.ledger.getJob(T, id))!.state;

async function deadLetter(type: string): Promise<string> {
  await plane.ledger.jobTypes.define(type, { maxAttempts: 1 });
  const [j] = await plane.ledger.enqueue([{ tenantId: T, jobType: type, payload: {} }]);
  const [l] = await plane.ledger.claim({ workerId: 'w', jobTypes: [type], tenantIds: [T], limit: 1 });
  await plane.ledger.fail([{ tenantId: T, jobId: l!.jobId, leaseId: l!.leaseId, error: { class: 'E', message: 'x' } }], null);
  assert.equal(await state(j!.id), 'dead_lettered');
  return j!.id;
}

describe('operator actions and their audit entries commit together', () => {
  test('cancel: one audit entry with the reason; when the entry cannot be written the job is not canceled', async () => {
    const [kept, gone] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'au_c', payload: {} }, { tenantId: T, jobType: 'au_c', payload: {} }]);
    const refused = await call('POST', `/jobs/${kept!.id}/cancel`, { reason: UNRECORDABLE });
    assert.ok(refused.status >= 500, `${refused.status}`);
    assert.equal(await state(kept!.id), 'queued', 'no audit entry, no cancel');
    assert.equal((await call('POST', `/jobs/${gone!.id}/cancel`, { reason: 'customer asked, INC-9' })).status, 200);
    assert.equal(await state(gone!.id), 'canceled');
    assert.deepEqual((await auditRows('job.cancel')).map((r) => [r.reason, r.target]), [['customer asked, INC-9', `job:${gone!.id}`]]);
  });

  test('job type definition needs a reason, is audited with its settings, and rolls back with its entry', async () => {
    assert.equal((await call('PUT', '/jobtypes/au_t', { body: { maxAttempts: 4 } })).body.error.code, 'reason_required');
    assert.equal((await call('PUT', '/jobtypes/au_t', { body: { maxAttempts: 4 }, reason: 'slow vendor API' })).status, 200);
    const refused = await call('PUT', '/jobtypes/au_t', { body: { maxAttempts: 9 }, reason: UNRECORDABLE });
    assert.ok(refused.status >= 500);
    assert.equal((await plane.ledger.jobTypes.get(db.pool, 'au_t'))!.maxAttempts, 4, 'the unrecorded change did not happen');
    const rows = await auditRows('jobtype.define');
    assert.deepEqual(rows.map((r) => [r.reason, r.target, r.details]), [['slow vendor API', 'jobtype:au_t', { settings: { maxAttempts: 4 } }]]);
  });

  test('force release: the lease stays with its holder when the entry cannot be written; otherwise one entry', async () => {
    await plane.ledger.enqueue([{ tenantId: T, jobType: 'au_l', payload: {} }]);
    const [l] = await plane.ledger.claim({ workerId: 'w-au', jobTypes: ['au_l'], tenantIds: [T], limit: 1 });
    const refused = await call('POST', '/leases/release', { body: { jobIds: [l!.jobId] }, reason: UNRECORDABLE });
    assert.ok(refused.status >= 500);
    assert.equal(await state(l!.jobId), 'leased');
    const ok = await call('POST', '/leases/release', { body: { jobIds: [l!.jobId] }, reason: 'stuck on a lock' });
    assert.equal(ok.body.released, 1);
    assert.equal(await state(l!.jobId), 'queued');
    const rows = await auditRows('lease.release');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.details?.released, 1);
  });

  test('DLQ clear: the entries stay when the entry cannot be written; otherwise cleared with one entry', async () => {
    const id = await deadLetter('au_d');
    const snap = await call('POST', '/deadletter/snapshots', { body: { jobType: 'au_d' }, reason: 'before clear' });
    assert.equal(snap.status, 201, JSON.stringify(snap.body));
    const refused = await call('POST', '/deadletter/clear', { body: { snapshotId: snap.body.id }, reason: UNRECORDABLE });
    assert.ok(refused.status >= 500);
    assert.equal(await state(id), 'dead_lettered');
    const ok = await call('POST', '/deadletter/clear', { body: { snapshotId: snap.body.id }, reason: 'poison batch, INC-4' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(await state(id), 'cleared');
    assert.deepEqual((await auditRows('dlq.clear')).map((r) => [r.reason, r.details?.cleared]), [['poison batch, INC-4', 1]]);
  });
});
