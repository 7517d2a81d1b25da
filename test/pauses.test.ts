import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import type { Pause } from '../src/flow/pauses.ts';
import { createWorker, OrchApiError, OrchClient } from '../src/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { runCli, startTestServer } from './helpers/server.ts';

/** Dispatch pauses: the runbook's "pause new dispatch for the job type", over the API, the SDK client and the CLI. */

let db: TestDatabase;
let plane: ControlPlane;
let acme: OrchClient;
let globex: OrchClient;

before(async () => {
  db = await createTestDatabase();
  // A poll tick far beyond the test's patience: only a wake-up can deliver promptly.
  plane = await startTestServer(db.url, { claimPollIntervalMs: 120_000 });
  acme = new OrchClient({ apiUrl: plane.url, tenant: 'acme' });
  globex = new OrchClient({ apiUrl: plane.url, tenant: 'globex' });
});

after(async () => {
  await plane.stop();
  await db.drop();
});

const claim = (jobTypes: string[], limit = 10) => plane.ledger.claim({ workerId: 'w', jobTypes, limit });

async function pauseCount(): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM orch.dispatch_pauses');
  return Number(rows[0]!.n);
}

describe('pausing a job type for every tenant', () => {
  test('queued work stays queued (shown as paused) and is not claimed; resume restores dispatch', async () => {
    const a = await acme.enqueue({ jobType: 'pz_type' });
    const g = await globex.enqueue({ jobType: 'pz_type' });
    const other = await acme.enqueue({ jobType: 'pz_other' });
    const p = await acme.setDispatch('pause', { jobType: 'pz_type' }, 'bad deploy', 'INC-42');
    assert.deepEqual([p.tenantId, p.jobType, p.reason, p.ticket], ['*', 'pz_type', 'bad deploy', 'INC-42']);

    assert.deepEqual(await claim(['pz_type']), []);
    const shown = (await acme.getJob(a.id)).job;
    assert.equal(shown.state, 'queued');
    assert.equal(shown.paused, true);
    // other types are untouched, and enqueue still works while paused
    assert.deepEqual((await claim(['pz_other', 'pz_type'])).map((l) => l.jobId), [other.id]);
    const late = await acme.enqueue({ jobType: 'pz_type' });
    assert.equal(late.state, 'queued');

    await acme.setDispatch('resume', { jobType: 'pz_type' }, 'fixed');
    assert.equal((await acme.getJob(a.id)).job.paused, false);
    const ids = (await claim(['pz_type'])).map((l) => l.jobId).sort();
    assert.deepEqual(ids, [a.id, g.id, late.id].sort());
  });

  test('running jobs finish normally under a pause', async () => {
    const r = await acme.enqueue({ jobType: 'pz_running' });
    const [lease] = await claim(['pz_running'], 1);
    await acme.setDispatch('pause', { jobType: 'pz_running' }, 'drain');
    const [hb] = await plane.ledger.heartbeat([{ tenantId: 'acme', jobId: r.id, leaseId: lease!.leaseId }]);
    assert.equal(hb?.status, 'ok');
    const [done] = await plane.ledger.complete([{ tenantId: 'acme', jobId: r.id, leaseId: lease!.leaseId }], 'worker:w');
    assert.equal(done?.status, 'ok');
    await acme.setDispatch('resume', { jobType: 'pz_running' }, 'done');
  });

  test('resume wakes a long-polling worker at once', async () => {
    await acme.setDispatch('pause', { jobType: 'pz_wake' }, 'hold');
    const r = await acme.enqueue({ jobType: 'pz_wake' });
    const got: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const worker = await createWorker({
      apiUrl: plane.url, jobTypes: ['pz_wake'], handleSignals: false, waitMs: 60_000,
      handler: (job) => {
        got.push(job.id);
        done();
      },
    });
    try {
      // the claim long-polls; the job must wait for the resume, then arrive well before the poll would have ended
      const resumedAt = Date.now();
      await acme.setDispatch('resume', { jobType: 'pz_wake' }, 'go');
      await finished;
      assert.deepEqual(got, [r.id]);
      assert.ok(Date.now() - resumedAt < 30_000, 'woken by the resume, not by a poll tick (2 min) or the end of the long-poll (1 min)');
    } finally {
      await worker.stop();
    }
  });
});

describe('pausing for one tenant', () => {
  test('a job type paused for one tenant keeps running for the others', async () => {
    const a = await acme.enqueue({ jobType: 'pz_tenant' });
    const g = await globex.enqueue({ jobType: 'pz_tenant' });
    await acme.setDispatch('pause', { jobType: 'pz_tenant', tenantId: 'acme' }, 'acme asked');
    assert.deepEqual((await claim(['pz_tenant'])).map((l) => l.jobId), [g.id]);
    assert.equal((await acme.getJob(a.id)).job.paused, true);
    await acme.setDispatch('resume', { jobType: 'pz_tenant', tenantId: 'acme' }, 'ok');
    assert.deepEqual((await claim(['pz_tenant'])).map((l) => l.jobId), [a.id]);
  });

  test('a whole tenant paused: none of its job types dispatch', async () => {
    const a1 = await acme.enqueue({ jobType: 'pz_whole_1' });
    const a2 = await acme.enqueue({ jobType: 'pz_whole_2' });
    const g = await globex.enqueue({ jobType: 'pz_whole_1' });
    await acme.setDispatch('pause', { jobType: '*', tenantId: 'acme' }, 'tenant incident');
    assert.deepEqual((await claim(['pz_whole_1', 'pz_whole_2'])).map((l) => l.jobId), [g.id]);
    await acme.setDispatch('resume', { jobType: '*', tenantId: 'acme' }, 'over');
    assert.deepEqual((await claim(['pz_whole_1', 'pz_whole_2'])).map((l) => l.jobId).sort(), [a1.id, a2.id].sort());
  });
});

describe('bad requests change nothing', () => {
  test('a missing or oversize reason is refused with the header named', async () => {
    const before = await pauseCount();
    const missing = await fetch(`${plane.url}/api/v1/orchestrator/jobtypes/pz_bad/pause`, { method: 'POST' });
    assert.equal(missing.status, 400);
    assert.equal(((await missing.json()) as { error: { field: string } }).error.field, 'X-Operator-Reason');
    await assert.rejects(acme.setDispatch('pause', { jobType: 'pz_bad' }, 'x'.repeat(257)), (e: OrchApiError) => e.status === 400 && e.field === 'X-Operator-Reason');
    await assert.rejects(acme.setDispatch('pause', { jobType: 'pz_bad' }, 'ok', 't'.repeat(129)), (e: OrchApiError) => e.status === 400 && e.field === 'X-Operator-Ticket');
    await assert.rejects(acme.setDispatch('pause', { jobType: 'bad type!' }, 'ok'), (e: OrchApiError) => e.status === 400);
    await assert.rejects(acme.setDispatch('pause', { jobType: 'pz_bad', tenantId: 'no tenant!' }, 'ok'), (e: OrchApiError) => e.status === 400);
    assert.equal(await pauseCount(), before);
  });

  test('resuming what is not paused is a 404', async () => {
    await assert.rejects(acme.setDispatch('resume', { jobType: 'pz_never' }, 'why'), (e: OrchApiError) => e.status === 404);
  });
});

describe('CLI', () => {
  test('orch pause / pauses / resume, and the reason is required', async () => {
    const env = { ORCH_API_URL: plane.url };
    const p = await runCli(['pause', 'pz_cli', '--reason', 'runbook step', '--ticket', 'INC-7', '--output', 'json'], env);
    assert.equal(p.code, 0, p.stderr);
    const pause = JSON.parse(p.stdout) as Pause;
    assert.deepEqual([pause.jobType, pause.tenantId, pause.ticket], ['pz_cli', '*', 'INC-7']);
    const list = await runCli(['pauses'], env);
    assert.match(list.stdout, /pz_cli\s+runbook step/);
    const noReason = await runCli(['resume', 'pz_cli'], env);
    assert.equal(noReason.code, 1);
    assert.equal(noReason.stderr.trim().split('\n').length, 1, noReason.stderr);
    const r = await runCli(['resume', 'pz_cli', '--reason', 'fixed'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await pauseCount(), 0);
  });
});
