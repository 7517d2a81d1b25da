/**
 * Every operator action writes its audit entry in the same transaction as
 * the change (issue 14, item 9): cancel, job-type definition, force release
 * and DLQ clear each leave exactly one entry, and when the entry cannot be
 * written the change is rolled back with it. The second part walks every
 * operator route the OpenAPI document lists (and DLQ snapshots), so a new
 * one without its entry fails here.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, startTestServer } from './helpers/server.ts';
import { httpClient } from './helpers/http.ts';
import { Workflows } from '../src/workflows/workflows.ts';

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

const call = httpClient(() => plane.url, BASE, { tenant: T });

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

// ---------------------------------------------------------------------------------------------------------------

const T2 = 'audit-all';
const WORKER2 = 'audit-all-worker';

async function send(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { 'x-tenant-id': T2, ...opts.headers };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${plane.url}${BASE}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const auditCount = async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orch.audit_log')).rows[0]!.n;
const lastEntry = async () => (await db.pool.query<{ action: string; reason: string | null; tenant_id: string | null; target: string }>(
  'SELECT action, reason, tenant_id, target FROM orch.audit_log ORDER BY id DESC LIMIT 1')).rows[0];
const jobState = async (id: string) => (await db.pool.query<{ state: string }>('SELECT state FROM orch.jobs WHERE tenant_id = $1 AND id = $2', [T2, id])).rows[0]?.state;

async function enqueueOne(jobType: string, maxAttempts = 3): Promise<string> {
  const [r] = await plane.ledger.enqueue([{ tenantId: T2, jobType, payload: {}, maxAttempts }]);
  return r!.id;
}
async function leasedOne(jobType: string): Promise<string> {
  const id = await enqueueOne(jobType);
  const [lease] = await plane.ledger.claim({ workerId: WORKER2, jobTypes: [jobType], tenantIds: [T2], limit: 1 });
  assert.equal(lease?.jobId, id);
  return id;
}
async function deadLetteredOne(jobType: string): Promise<string> {
  const id = await enqueueOne(jobType, 1);
  const [lease] = await plane.ledger.claim({ workerId: WORKER2, jobTypes: [jobType], tenantIds: [T2], limit: 1 });
  await plane.ledger.fail([{ tenantId: T2, jobId: id, leaseId: lease!.leaseId, error: { class: 'E', message: 'boom' } }], `worker:${WORKER2}`);
  assert.equal(await jobState(id), 'dead_lettered');
  return id;
}

interface Case {
  /** The audit action the entry names. */
  action: string;
  /** Sets up what the request acts on; returns the request. */
  request: () => Promise<{ method: string; path: string; body?: unknown; ticket?: boolean }>;
  /** What the action changes, read straight from the database. */
  state: () => Promise<unknown>;
}

/** Every operator route (scopes orch:operate, orch:quota and orch:backfill), by its OpenAPI template. */
function cases(): Map<string, Case> {
  const quota = `/quotas/${T2}/aq_type`;
  const quotaRow = async () => (await db.pool.query('SELECT max_active, boost_until IS NOT NULL AS boosted FROM orch.quotas WHERE tenant_id = $1 AND job_type = $2', [T2, 'aq_type'])).rows[0] ?? null;
  const pauseRow = async (tenant: string, type: string) => (await db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM orch.dispatch_pauses WHERE tenant_id = $1 AND job_type = $2', [tenant, type])).rows[0]!.n;
  const scheduleRow = async () => (await db.pool.query(
    `SELECT cron, enabled, next_tick_at FROM orch.schedules WHERE tenant_id = $1 AND name = 'aud-sched'`, [T2])).rows[0] ?? null;
  const backfillId = async () => (await db.pool.query<{ id: string }>('SELECT id FROM orch.backfills WHERE tenant_id = $1', [T2])).rows[0]!.id;
  // the backfill's state and its windows waiting to start (concurrency 1 and no worker: after the first, the runner
  // starts none while these cases run; a canceled window's job settling in the background is not counted)
  const backfillRow = async () => (await db.pool.query(
    `SELECT b.state, (SELECT count(*)::int FROM orch.windows w WHERE w.owner_id = b.id AND w.state = 'pending') AS pending
     FROM orch.backfills b WHERE b.tenant_id = $1`, [T2])).rows[0] ?? null;
  // a one-step workflow: cancel ends it canceled (its step canceled), retry replays the step
  let workflowId = '';
  const workflowRow = async () => (await db.pool.query(
    `SELECT w.state, w.cancel_requested, (SELECT string_agg(j.state::text, ',' ORDER BY j.id) FROM orch.jobs j WHERE j.tenant_id = w.tenant_id AND j.workflow_id = w.id) AS steps
     FROM orch.workflows w WHERE w.tenant_id = $1 AND w.id = $2`, [T2, workflowId])).rows[0] ?? null;
  const workflow = async () => (workflowId ||= (await new Workflows(db.pool, plane.ledger).submit(T2, { name: 'aud-wf', steps: [{ name: 'only', jobType: 'a_wf' }] }, 'api')).workflow.id);
  let cancelId = '';
  let releaseId = '';
  let clearIds: string[] = [];
  let snapshotId = '';
  let replayIds: string[] = [];
  let jobReplayId = '';
  return new Map<string, Case>([
    ['POST /jobs/{jobId}/cancel', {
      action: 'job.cancel',
      request: async () => ({ method: 'POST', path: `/jobs/${(cancelId ||= await enqueueOne('a_cancel'))}/cancel` }),
      state: () => jobState(cancelId),
    }],
    ['PUT /jobtypes/{name}', {
      action: 'jobtype.define',
      request: async () => ({ method: 'PUT', path: '/jobtypes/a_defined', body: { maxAttempts: 7 } }),
      state: async () => (await db.pool.query('SELECT max_attempts, implicit FROM orch.job_types WHERE name = $1', ['a_defined'])).rows[0] ?? null,
    }],
    ['POST /leases/release', {
      action: 'lease.release',
      request: async () => ({ method: 'POST', path: '/leases/release', body: { jobIds: [(releaseId ||= await leasedOne('a_release'))] } }),
      state: () => jobState(releaseId),
    }],
    ['POST /deadletter/snapshots', {
      action: 'dlq.snapshot',
      request: async () => {
        if (clearIds.length === 0) clearIds = [await deadLetteredOne('a_clear'), await deadLetteredOne('a_clear')];
        return { method: 'POST', path: '/deadletter/snapshots', body: { jobType: 'a_clear' } };
      },
      state: async () => {
        const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM orch.dlq_snapshots WHERE tenant_id = $1 ORDER BY created_at DESC', [T2]);
        snapshotId = rows[0]?.id ?? '';
        return rows.length;
      },
    }],
    ['POST /deadletter/clear', {
      action: 'dlq.clear',
      request: async () => ({ method: 'POST', path: '/deadletter/clear', body: { snapshotId } }),
      state: async () => Promise.all(clearIds.map(jobState)),
    }],
    ['POST /deadletter/replay', {
      action: 'dlq.replay',
      request: async () => {
        if (replayIds.length === 0) replayIds = [await deadLetteredOne('a_replay'), await deadLetteredOne('a_replay')];
        return { method: 'POST', path: '/deadletter/replay', body: { jobIds: replayIds } };
      },
      state: async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orch.jobs WHERE tenant_id = $1 AND replay_of = ANY($2::bigint[])', [T2, replayIds])).rows[0]!.n,
    }],
    ['POST /jobs/{jobId}/replay', {
      action: 'dlq.replay',
      request: async () => ({ method: 'POST', path: `/jobs/${(jobReplayId ||= await deadLetteredOne('a_job_replay'))}/replay`, body: {} }),
      state: async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orch.jobs WHERE tenant_id = $1 AND replay_of = $2', [T2, jobReplayId])).rows[0]!.n,
    }],
    ['POST /jobtypes/{name}/pause', {
      action: 'dispatch.pause',
      request: async () => ({ method: 'POST', path: `/jobtypes/a_paused/pause?tenantId=${T2}` }),
      state: () => pauseRow(T2, 'a_paused'),
    }],
    ['POST /jobtypes/{name}/resume', {
      action: 'dispatch.resume',
      request: async () => ({ method: 'POST', path: `/jobtypes/a_paused/resume?tenantId=${T2}` }),
      state: () => pauseRow(T2, 'a_paused'),
    }],
    ['POST /tenants/{tenantId}/pause', {
      action: 'dispatch.pause',
      request: async () => ({ method: 'POST', path: `/tenants/${T2}/pause` }),
      state: () => pauseRow(T2, '*'),
    }],
    ['POST /tenants/{tenantId}/resume', {
      action: 'dispatch.resume',
      request: async () => ({ method: 'POST', path: `/tenants/${T2}/resume` }),
      state: () => pauseRow(T2, '*'),
    }],
    ['PUT /quotas/{tenantId}/{jobType}', {
      action: 'quota.create',
      request: async () => ({ method: 'PUT', path: quota, body: { maxActive: 5, ratePerSecond: 10 }, ticket: true }),
      state: quotaRow,
    }],
    ['POST /quotas/{tenantId}/{jobType}/pause', {
      action: 'dispatch.pause', request: async () => ({ method: 'POST', path: `${quota}/pause`, ticket: true }), state: () => pauseRow(T2, 'aq_type'),
    }],
    ['POST /quotas/{tenantId}/{jobType}/resume', {
      action: 'dispatch.resume', request: async () => ({ method: 'POST', path: `${quota}/resume`, ticket: true }), state: () => pauseRow(T2, 'aq_type'),
    }],
    ['POST /quotas/{tenantId}/{jobType}/boost', {
      action: 'quota.boost', request: async () => ({ method: 'POST', path: `${quota}/boost`, body: { factor: 2, durationSeconds: 600 }, ticket: true }), state: quotaRow,
    }],
    ['POST /quotas/{tenantId}/{jobType}/restore', { action: 'quota.restore', request: async () => ({ method: 'POST', path: `${quota}/restore`, ticket: true }), state: quotaRow }],
    ['DELETE /quotas/{tenantId}/{jobType}', { action: 'quota.delete', request: async () => ({ method: 'DELETE', path: quota, ticket: true }), state: quotaRow }],
    ['POST /schedules', {
      action: 'schedule.create', request: async () => ({ method: 'POST', path: '/schedules', body: { name: 'aud-sched', jobType: 'a_sched', cron: '0 3 * * *' } }), state: scheduleRow,
    }],
    ['PATCH /schedules/{name}', { action: 'schedule.update', request: async () => ({ method: 'PATCH', path: '/schedules/aud-sched', body: { cron: '0 4 * * *' } }), state: scheduleRow }],
    ['POST /schedules/{name}/pause', { action: 'schedule.pause', request: async () => ({ method: 'POST', path: '/schedules/aud-sched/pause' }), state: scheduleRow }],
    ['POST /schedules/{name}/resume', { action: 'schedule.resume', request: async () => ({ method: 'POST', path: '/schedules/aud-sched/resume' }), state: scheduleRow }],
    ['POST /schedules/{name}/trigger', {
      action: 'schedule.trigger', request: async () => ({ method: 'POST', path: '/schedules/aud-sched/trigger' }),
      state: async () => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM orch.jobs WHERE tenant_id = $1 AND job_type = 'a_sched'`, [T2])).rows[0]!.n,
    }],
    ['DELETE /schedules/{name}', { action: 'schedule.delete', request: async () => ({ method: 'DELETE', path: '/schedules/aud-sched' }), state: scheduleRow }],
    ['POST /backfills', {
      action: 'backfill.create',
      request: async () => ({ method: 'POST', path: '/backfills', body: { jobType: 'a_backfill', from: '2026-01-01T00:00:00Z', to: '2026-01-01T03:00:00Z', windowMs: 3_600_000 }, ticket: true }),
      state: async () => (await db.pool.query('SELECT id, state FROM orch.backfills WHERE tenant_id = $1', [T2])).rows,
    }],
    ['POST /backfills/{id}/pause', {
      action: 'backfill.pause',
      request: async () => {
        await eventually(async () => (await backfillRow())?.pending === 2, 10_000, 'the runner to start the first window');
        return { method: 'POST', path: `/backfills/${await backfillId()}/pause`, ticket: true };
      },
      state: backfillRow,
    }],
    ['POST /backfills/{id}/resume', { action: 'backfill.resume', request: async () => ({ method: 'POST', path: `/backfills/${await backfillId()}/resume`, ticket: true }), state: backfillRow }],
    ['POST /backfills/{id}/cancel', { action: 'backfill.cancel', request: async () => ({ method: 'POST', path: `/backfills/${await backfillId()}/cancel`, ticket: true }), state: backfillRow }],
    ['POST /backfills/{id}/retry', { action: 'backfill.retry', request: async () => ({ method: 'POST', path: `/backfills/${await backfillId()}/retry`, ticket: true }), state: backfillRow }],
    ['POST /workflows/{id}/cancel', { action: 'workflow.cancel', request: async () => ({ method: 'POST', path: `/workflows/${await workflow()}/cancel` }), state: workflowRow }],
    ['POST /workflows/{id}/retry', { action: 'workflow.retry', request: async () => ({ method: 'POST', path: `/workflows/${await workflow()}/retry` }), state: workflowRow }],
    ['POST /jobs/bulk', {
      action: 'job.bulk_cancel',
      request: async () => {
        await plane.ledger.enqueue([{ tenantId: T2, jobType: 'a_bulk', payload: { n: 1 } }, { tenantId: T2, jobType: 'a_bulk', payload: { n: 2 } }]);
        return { method: 'POST', path: '/jobs/bulk', body: { action: 'cancel', filter: { jobType: 'a_bulk' } } };
      },
      state: async () => (await db.pool.query(`SELECT string_agg(state::text, ',' ORDER BY id) AS states FROM orch.jobs WHERE tenant_id = $1 AND job_type = 'a_bulk'`, [T2])).rows[0]!.states,
    }],
  ]);
}

describe('every operator route: one entry, or no change at all', () => {
  before(async () => {
    // Test-only: while orch.test_refuse_all holds a row, every audit insert fails (entries without a reason too).
    await db.pool.query(`
      CREATE TABLE orch.test_refuse_all (on_ boolean);
      CREATE FUNCTION orch.test_refuse_all() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
      BEGIN
        IF EXISTS (SELECT 1 FROM orch.test_refuse_all) THEN RAISE EXCEPTION 'audit log unavailable (test)'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_refuse_all BEFORE INSERT ON orch.audit_log FOR EACH ROW EXECUTE FUNCTION orch.test_refuse_all();`);
  });

  test('each operator route: an audit entry that cannot be written rolls the change back; otherwise exactly one entry', async () => {
    const plan = cases();
    const doc = (await (await fetch(`${plane.url}/.well-known/openapi`)).json()) as {
      paths: Record<string, Record<string, { security?: { bearer?: string[] }[] }>>;
    };
    const operatorRoutes = Object.entries(doc.paths).flatMap(([p, methods]) => Object.entries(methods)
      .filter(([, op]) => ['orch:operate', 'orch:quota', 'orch:backfill'].includes(op.security?.[0]?.bearer?.[0] ?? ''))
      .map(([m]) => `${m.toUpperCase()} ${p.slice(BASE.length)}`));
    assert.deepEqual(operatorRoutes.filter((r) => !plan.has(r)), [], 'operator routes this test does not cover');
    assert.ok(operatorRoutes.includes('PUT /jobtypes/{name}'), 'defining a job type is an operator action');

    for (const [route, c] of plan) {
      const req = await c.request();
      const headers = { 'x-operator-reason': `audit test: ${route}`, ...(req.ticket ? { 'x-operator-ticket': 'AUD-1' } : {}) };
      const before = await c.state();
      const entries = await auditCount();

      await db.pool.query('INSERT INTO orch.test_refuse_all VALUES (true)');
      const refused = await send(req.method, req.path, { body: req.body, headers }).finally(() => db.pool.query('DELETE FROM orch.test_refuse_all'));
      assert.ok(refused.status >= 500, `${route}: fails when its audit entry cannot be written (got ${refused.status} ${JSON.stringify(refused.body)})`);
      assert.deepEqual(await c.state(), before, `${route}: the change rolled back with its audit entry`);
      assert.equal(await auditCount(), entries, `${route}: no entry`);

      const done = await send(req.method, req.path, { body: req.body, headers });
      assert.ok(done.status < 300, `${route}: ${done.status} ${JSON.stringify(done.body)}`);
      assert.notDeepEqual(await c.state(), before, `${route}: changed`);
      assert.equal(await auditCount(), entries + 1, `${route}: exactly one audit entry`);
      const entry = await lastEntry();
      assert.equal(entry?.action, c.action, route);
      if (route !== 'POST /deadletter/snapshots') assert.equal(entry?.reason, `audit test: ${route}`, route);
    }
  });

  test('a refused cancel (job already ended) leaves no audit entry', async () => {
    const id = await enqueueOne('a_cancel_twice');
    const headers = { 'x-operator-reason': 'twice' };
    assert.equal((await send('POST', `/jobs/${id}/cancel`, { headers })).status, 200);
    const entries = await auditCount();
    assert.equal((await send('POST', `/jobs/${id}/cancel`, { headers })).status, 409);
    assert.equal(await auditCount(), entries);
  });
});
