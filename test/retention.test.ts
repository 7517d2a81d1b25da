import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config/config.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import { PRUNE_START } from '../src/ledger/transitions/prune.ts';
import type { Lease } from '../src/ledger/types.ts';
import { sample } from '../src/metrics/exposition.ts';
import { Workflows } from '../src/workflows/workflows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, startTestServer } from './helpers/server.ts';

let db: TestDatabase;
let plane: ControlPlane;

before(async () => {
  db = await createTestDatabase();
  // the pruner off (retention 0): these tests call the prune statements with a cutoff of their own
  plane = await startTestServer(db.url, { jobRetentionMs: 0 });
});

after(async () => {
  await plane.stop();
  await db.drop();
});

const future = () => new Date(Date.now() + 60_000);

async function claimAll(tenant: string, jobType: string): Promise<Lease[]> {
  return plane.ledger.claim({ workerId: 'ret-w', jobTypes: [jobType], tenantIds: [tenant], limit: 100 });
}

/** History rows (statements) about none but these jobs: a row shared with a job still kept stays until that one goes too. */
async function historyRows(ids: string[], pool = db.pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM orch.job_transitions WHERE job_ids && $1::bigint[] AND job_ids <@ $1::bigint[]', [ids]);
  return rows[0]!.n;
}

describe('retention of finished jobs', () => {
  test('jobs that ended leave with their history; dead letters, live jobs and the history they share stay whole', async () => {
    const T = 'ret-a';
    const [ok, dead, live, canceled] = await plane.ledger.enqueue(['ok', 'dead', 'live', 'canceled'].map((k) => ({ tenantId: T, jobType: 'ret', payload: { k }, maxAttempts: 1 })));
    await plane.ledger.cancel(T, canceled!.id, 'operator:test', 'not needed');
    const leases = await claimAll(T, 'ret');
    assert.equal(leases.length, 3);
    const by = (id: string) => leases.find((l) => l.jobId === id)!;
    await plane.ledger.complete([{ tenantId: T, jobId: ok!.id, leaseId: by(ok!.id).leaseId, result: 1 }], null);
    await plane.ledger.fail([{ tenantId: T, jobId: dead!.id, leaseId: by(dead!.id).leaseId, error: { class: 'X', message: 'no', retryable: false } }], null);
    await plane.ledger.release([{ tenantId: T, jobId: live!.id, leaseId: by(live!.id).leaseId }], null);
    const keptHistory = { dead: (await plane.ledger.getHistory(T, dead!.id)).length, live: (await plane.ledger.getHistory(T, live!.id)).length };

    // a cutoff before they ended: nothing goes
    const none = await plane.ledger.pruneFinished(new Date(Date.now() - 60_000), PRUNE_START, 500);
    assert.equal(none.jobs, 0);

    const r = await plane.ledger.pruneFinished(future(), PRUNE_START, 500);
    assert.equal(r.jobs, 2, 'the succeeded and the canceled job');
    assert.equal(await plane.ledger.getJob(T, ok!.id), null);
    assert.equal(await plane.ledger.getJob(T, canceled!.id), null);
    assert.ok(await historyRows([ok!.id, canceled!.id]) === 0, 'their own history rows (the cancel, the completion) left with them');
    // the enqueue and claim batches also hold the two kept jobs: those rows stay, and their history is whole
    assert.equal((await plane.ledger.getJob(T, dead!.id))?.state, 'dead_lettered');
    assert.equal((await plane.ledger.getJob(T, live!.id))?.state, 'queued');
    assert.equal((await plane.ledger.getHistory(T, dead!.id)).length, keptHistory.dead);
    assert.equal((await plane.ledger.getHistory(T, live!.id)).length, keptHistory.live);
    assert.ok(r.cursor.at !== PRUNE_START.at, 'the cursor moved past the batches it looked at');

    // a dead letter cleared from the DLQ ends too, and goes the next time its (new) batch is reached
    await plane.ledger.clear(T, [dead!.id], 'operator:test', 'snapshotted');
    const again = await plane.ledger.pruneFinished(future(), r.cursor, 500);
    assert.equal(again.jobs, 1);
    assert.equal(await plane.ledger.getJob(T, dead!.id), null);
    assert.equal(await historyRows([ok!.id, canceled!.id, dead!.id]), 0, 'the claim batch shared with the live job stays; the rest went');
    assert.equal((await plane.ledger.getHistory(T, live!.id)).length, keptHistory.live);
  });

  test('a job something still waits for stays; a running workflow keeps its steps, an ended one goes whole', async () => {
    const T = 'ret-b';
    const [parent] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'ret_p', payload: {} }]);
    const [child] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'ret_c', payload: {}, dependsOn: [{ jobId: parent!.id, onFailure: 'wait' }] }]);
    await plane.ledger.cancel(T, parent!.id, 'operator:test', 'later');
    assert.equal((await plane.ledger.getJob(T, child!.id))?.state, 'waiting');
    await plane.ledger.pruneFinished(future(), PRUNE_START, 500);
    assert.equal((await plane.ledger.getJob(T, parent!.id))?.state, 'canceled', 'a waiting job depends on it (a replay would release it)');

    const workflows = new Workflows(db.pool, plane.ledger);
    const { workflow } = await workflows.submit(T, { name: 'ret', steps: [{ name: 'a', jobType: 'ret_w' }, { name: 'b', jobType: 'ret_w', dependsOn: ['a'] }] }, 'api');
    const [a] = await claimAll(T, 'ret_w');
    await plane.ledger.complete([{ tenantId: T, jobId: a!.jobId, leaseId: a!.leaseId }], null);
    await plane.ledger.pruneFinished(future(), PRUNE_START, 500);
    assert.equal((await plane.ledger.getJob(T, a!.jobId))?.state, 'succeeded', 'a step of a running workflow stays');
    const [b] = await claimAll(T, 'ret_w');
    await plane.ledger.complete([{ tenantId: T, jobId: b!.jobId, leaseId: b!.leaseId }], null);
    assert.equal((await workflows.get(db.pool, T, workflow.id))?.state, 'succeeded');
    const w = await plane.ledger.pruneWorkflows(future(), 100);
    assert.deepEqual([w.workflows, w.jobs], [1, 2]);
    assert.equal(await workflows.get(db.pool, T, workflow.id), null);
    assert.equal(await historyRows([a!.jobId, b!.jobId]), 0);
  });

  test('the pruner service: with a short retention, finished jobs leave by themselves and the metric counts them', async () => {
    const db2 = await createTestDatabase();
    const base = loadConfig({});
    const plane2 = await startTestServer(db2.url, { jobRetentionMs: 200, maintenance: { ...base.maintenance, jobPrunerIntervalMs: 50 } });
    try {
      const ids = (await plane2.ledger.enqueue(Array.from({ length: 50 }, (_, i) => ({ tenantId: 'ret-s', jobType: 'ret_s', payload: { i } })))).map((r) => r.id);
      const leases = await plane2.ledger.claim({ workerId: 'ret-s-w', jobTypes: ['ret_s'], limit: 100 });
      await plane2.ledger.complete(leases.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId })), null);
      await eventually(async () => {
        const { rows } = await db2.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orch.jobs WHERE id = ANY($1::bigint[])', [ids]);
        return rows[0]!.n === 0;
      }, 15_000, 'the finished jobs to be pruned');
      assert.equal(sample(await plane2.metrics.scrape(), 'orchestrator_jobs_pruned_total'), 50);
      const { rows } = await db2.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orch.job_transitions');
      assert.equal(rows[0]!.n, 0, 'no history row left behind');
    } finally {
      await plane2.stop();
      await db2.drop();
    }
  });
});
