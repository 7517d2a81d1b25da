import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import { expand, type OutboxRow } from '../src/events/envelope.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { LedgerError } from '../src/ledger/errors.ts';
import type { HistoryEntry, Job, Lease } from '../src/ledger/types.ts';
import { createLogger } from '../src/logging.ts';
import { sample } from '../src/metrics/exposition.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { createWorker, type Worker } from '../src/sdk/worker.ts';
import { MAX_STEPS, Workflows, type WorkflowDetail, type WorkflowSpec } from '../src/workflows/workflows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { httpClient } from './helpers/http.ts';
import { kill } from './helpers/processes.ts';
import { eventually, runCli, spawnServer, startTestServer } from './helpers/server.ts';

/**
 * Workflows: jobs that wait for other jobs. The release (or cancellation) of
 * dependents in the statement that ends a parent, the three edge policies,
 * retry from failure, bad graphs, tenant isolation of edges, operator cancel,
 * fan-in under concurrency, the enqueue/complete race, a kill -9 of the
 * server mid-workflow, and the CLI.
 */

let db: TestDatabase;
let plane: ControlPlane;
let workflows: Workflows;
const cleanups: (() => Promise<unknown>)[] = [];

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
  workflows = new Workflows(db.pool, plane.ledger);
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await plane?.stop();
  await db?.drop();
});

const api = (tenant: string) => httpClient(() => plane.url, '/api/v1/orchestrator', { tenant });

// ---- helpers ---------------------------------------------------------------------------------

async function claim(tenant: string, jobType: string, limit = 1000): Promise<Lease[]> {
  return plane.ledger.claim({ workerId: `wf-test-${tenant}`, jobTypes: [jobType], limit, tenantIds: [tenant] });
}

async function claimOne(tenant: string, jobType: string): Promise<Lease> {
  const leases = await claim(tenant, jobType, 10);
  assert.equal(leases.length, 1, `exactly one ${jobType} job claimable, got ${leases.map((l) => l.jobId).join(', ')}`);
  return leases[0]!;
}

async function complete(l: Lease, result: unknown = { ok: l.jobId }): Promise<void> {
  const [o] = await plane.ledger.complete([{ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId, result }], null);
  assert.equal(o!.status, 'ok', `complete ${l.jobId}: ${JSON.stringify(o)}`);
}

async function deadLetter(l: Lease): Promise<void> {
  const [o] = await plane.ledger.fail([{ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId, error: { class: 'Boom', message: 'it broke', retryable: false } }], null);
  assert.deepEqual(o, { jobId: l.jobId, status: 'ok', state: 'dead_lettered' });
}

async function job(tenant: string, id: string): Promise<Job> {
  const j = await plane.ledger.getJob(tenant, id);
  assert.ok(j, `job ${id} of ${tenant} exists`);
  return j;
}

const transitions = (h: HistoryEntry[]) => h.map((e) => `${e.from ?? '-'}>${e.to}:${e.cause}`);

function stepJob(w: WorkflowDetail, name: string): Job {
  const s = w.steps.find((x) => x.name === name);
  assert.ok(s, `step ${name} in workflow ${w.id}`);
  return s.job;
}

async function detail(tenant: string, id: string): Promise<WorkflowDetail> {
  const w = await workflows.get(db.pool, tenant, id);
  assert.ok(w, `workflow ${id}`);
  return w;
}

const stepStates = (w: WorkflowDetail) => Object.fromEntries(w.steps.map((s) => [s.name, s.job.state]));

/** The inline events of a type the tenant's outbox holds (workflow.started, workflow.finished). */
async function inlineEvents(tenant: string, type: string): Promise<{ target: string; data: Record<string, unknown> }[]> {
  const { rows } = await db.pool.query<{ target: string; data: Record<string, unknown> }>(
    `SELECT e->>'target' AS target, e->'data' AS data FROM orch.outbox o, jsonb_array_elements(o.events) e
     WHERE o.tenant_id = $1 AND e->>'type' = $2 ORDER BY o.xid, o.seq`, [tenant, type]);
  return rows;
}

async function outcomes(tenant: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ outcome: string; n: string }>('SELECT outcome, n FROM orch.workflow_outcomes WHERE tenant_id = $1', [tenant]);
  return Object.fromEntries(rows.map((r) => [r.outcome, Number(r.n)]));
}

/** How many history entries of `cause` name the job (each a transition the ledger recorded). */
async function causeCount(jobId: string, cause: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM orch.job_transitions t, unnest(t.job_ids) AS j(id) WHERE t.cause = $2 AND j.id = $1', [jobId, cause]);
  return Number(rows[0]!.n);
}

async function jobCount(tenant: string, jobType?: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM orch.jobs WHERE tenant_id = $1 AND ($2::text IS NULL OR job_type = $2)', [tenant, jobType ?? null]);
  return Number(rows[0]!.n);
}

const OP = (reason: string) => ({ actor: 'operator:wf-test', reason, ticket: null });

// ---- tests -----------------------------------------------------------------------------------

describe('a workflow', () => {
  test('diamond a -> (b, c) -> d: d runs only after both b and c, with their results; the workflow succeeds', async () => {
    const T = 'wf-diamond';
    const type = 'dia';
    const http = api(T);
    const submitted = await http('POST', '/workflows', {
      body: {
        name: 'diamond', correlationId: 'dia-1',
        steps: [
          { name: 'd', jobType: type, payload: { step: 'd' }, dependsOn: ['b', 'c'] },
          { name: 'b', jobType: type, payload: { step: 'b' }, dependsOn: ['a'] },
          { name: 'a', jobType: type, payload: { step: 'a' } },
          { name: 'c', jobType: type, payload: { step: 'c' }, dependsOn: [{ step: 'a', onFailure: 'cancel' }] },
        ],
      },
    });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const w0 = submitted.body as WorkflowDetail;
    assert.equal(w0.state, 'running');
    assert.equal(w0.stepCount, 4);
    assert.equal(w0.openSteps, 4);
    assert.deepEqual(stepStates(w0), { a: 'queued', b: 'waiting', c: 'waiting', d: 'waiting' });
    assert.deepEqual(Object.fromEntries(w0.steps.map((s) => [s.name, s.job.pendingParents])), { a: 0, b: 1, c: 1, d: 2 });
    assert.deepEqual(w0.steps.find((s) => s.name === 'd')!.dependsOn.map((p) => `${p.step}:${p.onFailure}`).sort(), ['b:cancel', 'c:cancel']);
    const id = w0.id;
    const ids = Object.fromEntries(w0.steps.map((s) => [s.name, s.job.id]));
    assert.equal((await inlineEvents(T, 'workflow.started')).filter((e) => e.target === id).length, 1, 'a workflow.started event');

    // only a is claimable
    const la = await claimOne(T, type);
    assert.equal(la.jobId, ids.a);
    assert.equal(la.parents, undefined, 'a root carries no parents');
    await complete(la, { a: 1 });

    const bc = await claim(T, type);
    assert.deepEqual(bc.map((l) => l.jobId).sort(), [ids.b, ids.c].sort(), 'b and c released together by a');
    assert.deepEqual(bc[0]!.parents, { a: { a: 1 } });
    const lb = bc.find((l) => l.jobId === ids.b)!;
    const lc = bc.find((l) => l.jobId === ids.c)!;
    await complete(lb, { b: 2 });
    // b done, c still running: d must not be claimable
    assert.deepEqual(await claim(T, type), [], 'd does not run before c');
    const dMid = await job(T, ids.d!);
    assert.equal(dMid.state, 'waiting');
    assert.equal(dMid.pendingParents, 1);
    await complete(lc, { c: 3 });
    assert.equal((await job(T, ids.d!)).state, 'queued');

    // d over the HTTP bridge: its lease carries b's and c's results by step name
    const claimed = await http('POST', '/claim', { body: { workerId: 'dia-http', jobTypes: [type], limit: 5 } });
    assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
    const leases = claimed.body.leases as Lease[];
    assert.equal(leases.length, 1);
    assert.equal(leases[0]!.jobId, ids.d);
    assert.deepEqual(leases[0]!.parents, { b: { b: 2 }, c: { c: 3 } });
    const done = await http('POST', `/jobs/${ids.d}/complete`, { body: { leaseId: leases[0]!.leaseId, result: { d: 4 } } });
    assert.equal(done.status, 200, JSON.stringify(done.body));

    const jobs = Object.fromEntries(await Promise.all(Object.entries(ids).map(async ([n, j]) => [n, await job(T, j!)] as const)));
    assert.ok(Date.parse(jobs.d!.startedAt!) >= Math.max(Date.parse(jobs.b!.finishedAt!), Date.parse(jobs.c!.finishedAt!)), 'd started after b and c finished');
    assert.equal(jobs.d!.correlationId, 'dia-1');
    assert.equal(jobs.d!.workflowId, id);
    assert.equal(jobs.d!.stepName, 'd');

    const got = await http('GET', `/workflows/${id}`);
    assert.equal(got.status, 200);
    const w = got.body as WorkflowDetail;
    assert.equal(w.state, 'succeeded');
    assert.equal(w.openSteps, 0);
    assert.equal(w.failedSteps, 0);
    assert.ok(w.finishedAt);
    assert.deepEqual(w.result, { d: { d: 4 } });
    assert.deepEqual(stepStates(w), { a: 'succeeded', b: 'succeeded', c: 'succeeded', d: 'succeeded' });

    const hd = await plane.ledger.getHistory(T, ids.d!);
    assert.deepEqual(transitions(hd), ['->waiting:enqueued', 'waiting>queued:dependencies_met', 'queued>leased:claimed', 'leased>succeeded:worker_completed']);
    assert.equal(hd[1]!.actor, 'system:dependencies');
    assert.equal(await causeCount(ids.d!, 'dependencies_met'), 1);

    // events: d's job.ready, and the workflow's end
    const { rows } = await db.pool.query<OutboxRow>('SELECT xid::text AS xid, seq::text AS seq, tenant_id, batch_id, events, at FROM orch.outbox WHERE tenant_id = $1 ORDER BY xid, seq', [T]);
    const events = (await expand(db.pool, rows)).map((p) => p.event);
    const ready = events.filter((e) => e.eventType === 'job.ready' && e.job?.id === ids.d);
    assert.equal(ready.length, 1, 'one job.ready event for d');
    assert.equal(ready[0]!.job!.status, 'queued');
    assert.equal(ready[0]!.correlationId, 'dia-1');
    assert.equal(ready[0]!.actor.subject, 'system:dependencies');
    const finished = await inlineEvents(T, 'workflow.finished');
    assert.deepEqual(finished.map((e) => [e.target, e.data.outcome]), [[id, 'succeeded']]);

    assert.deepEqual(await outcomes(T), { succeeded: 1 });
    const metrics = await (await fetch(`${plane.url}/metrics`)).text();
    assert.equal(sample(metrics, 'orchestrator_workflows_total', { tenant: T, outcome: 'succeeded' }), 1, 'orchestrator_workflows_total counts it');

    const list = await http('GET', '/workflows?state=succeeded');
    assert.deepEqual(list.body.workflows.map((x: { id: string }) => x.id), [id]);
  });

  test('edge policies when a parent dead-letters: cancel (down the graph), ignore, wait (until a replay succeeds)', async () => {
    const T = 'wf-policies';
    const [parent] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'pol-parent', payload: null, maxAttempts: 1 }]);
    const pid = parent!.id;
    const [cancelChild, ignoreChild, waitChild] = await plane.ledger.enqueue([
      { tenantId: T, jobType: 'pol-child', payload: { p: 'cancel' }, dependsOn: [{ jobId: pid }] },
      { tenantId: T, jobType: 'pol-child', payload: { p: 'ignore' }, dependsOn: [{ jobId: pid, onFailure: 'ignore' }] },
      { tenantId: T, jobType: 'pol-wait', payload: { p: 'wait' }, dependsOn: [{ jobId: pid, onFailure: 'wait' }] },
    ]);
    const [grandchild] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'pol-child', payload: { p: 'grand' }, dependsOn: [{ jobId: cancelChild!.id, onFailure: 'cancel' }] }]);
    for (const r of [cancelChild, ignoreChild, waitChild, grandchild]) assert.equal(r!.state, 'waiting');

    await deadLetter(await claimOne(T, 'pol-parent'));

    // cancel: the child and, through its own cancel edge, the grandchild
    const c = await job(T, cancelChild!.id);
    assert.equal(c.state, 'canceled');
    assert.ok(c.finishedAt);
    const hc = await plane.ledger.getHistory(T, c.id);
    assert.deepEqual(transitions(hc), ['->waiting:enqueued', 'waiting>canceled:dependency_failed']);
    assert.equal(hc[1]!.actor, 'system:dependencies');
    assert.equal(hc[1]!.reason, `parent ${pid} dead_lettered`);
    const g = await job(T, grandchild!.id);
    assert.equal(g.state, 'canceled', 'cancellation runs down the graph');
    const hg = await plane.ledger.getHistory(T, g.id);
    assert.deepEqual(transitions(hg), ['->waiting:enqueued', 'waiting>canceled:dependency_failed']);
    assert.equal(hg[1]!.reason, `parent ${c.id} canceled`);

    // ignore: queued, runs, sees the failed parent's (empty) result
    const hi = await plane.ledger.getHistory(T, ignoreChild!.id);
    assert.deepEqual(transitions(hi), ['->waiting:enqueued', 'waiting>queued:dependencies_met']);
    const li = await claimOne(T, 'pol-child');
    assert.equal(li.jobId, ignoreChild!.id);
    assert.deepEqual(li.parents, { [pid]: null });
    await complete(li);
    assert.equal((await job(T, ignoreChild!.id)).state, 'succeeded');

    // wait: still waiting, for the parent's replay
    const w = await job(T, waitChild!.id);
    assert.equal(w.state, 'waiting');
    assert.equal(w.pendingParents, 1);
    assert.deepEqual(await claim(T, 'pol-wait'), []);
    // a new dependent with policy cancel on the dead letter is refused; ignore is queued at once
    await assert.rejects(plane.ledger.enqueue([{ tenantId: T, jobType: 'pol-child', payload: null, dependsOn: [{ jobId: pid }] }]), (e: unknown) => {
      assert.ok(e instanceof LedgerError);
      assert.equal(e.code, 'unprocessable');
      assert.equal(e.field, 'dependsOn[0]');
      assert.match(e.message, /already ended dead_lettered/);
      return true;
    });
    const [late] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'pol-late', payload: null, dependsOn: [{ jobId: pid, onFailure: 'ignore' }] }]);
    assert.equal(late!.state, 'queued');

    const [outcome] = await plane.ledger.replay(T, [pid], { priority: null, actor: 'operator:wf-test', reason: 'try again' });
    assert.equal(outcome!.status, 'replayed');
    const replayId = outcome!.status === 'replayed' ? outcome!.replayJobId : '';
    assert.equal((await job(T, waitChild!.id)).state, 'waiting', 'the replay has not succeeded yet');
    const lr = await claimOne(T, 'pol-parent');
    assert.equal(lr.jobId, replayId);
    await complete(lr, { second: 'time' });
    const w2 = await job(T, waitChild!.id);
    assert.equal(w2.state, 'queued', 'released by the replay\'s success');
    assert.equal(w2.pendingParents, 0);
    const lw = await claimOne(T, 'pol-wait');
    assert.equal(lw.jobId, waitChild!.id);
    assert.deepEqual(lw.parents, { [replayId]: { second: 'time' } }, 'the edge now points at the replay');
    await complete(lw);
    // the canceled ones stay canceled
    assert.equal((await job(T, cancelChild!.id)).state, 'canceled');
    assert.equal((await job(T, grandchild!.id)).state, 'canceled');
  });

  test('retry from failure: the failed and canceled steps are replayed in order, the succeeded one is left alone', async () => {
    const T = 'wf-retry';
    const type = 'rt';
    const { workflow: w0, created } = await workflows.submit(T, {
      name: 'retry-me', idempotencyKey: 'retry-1',
      steps: [
        { name: 'fetch', jobType: type },
        { name: 'transform', jobType: type, maxAttempts: 1, dependsOn: ['fetch'] },
        { name: 'load', jobType: type, dependsOn: ['transform'] },
        { name: 'report', jobType: type, dependsOn: ['load'] },
      ],
    }, 'api');
    assert.equal(created, true);
    const again = await workflows.submit(T, { name: 'retry-me', idempotencyKey: 'retry-1', steps: [{ name: 'x', jobType: type }] }, 'api');
    assert.equal(again.created, false);
    assert.equal(again.workflow.id, w0.id, 'the idempotency key returns the first workflow');
    const id = w0.id;

    const lf = await claimOne(T, type);
    assert.equal(lf.jobId, stepJob(w0, 'fetch').id);
    await complete(lf, { rows: 10 });
    const lt = await claimOne(T, type);
    assert.equal(lt.jobId, stepJob(w0, 'transform').id);
    assert.deepEqual(lt.parents, { fetch: { rows: 10 } });
    await deadLetter(lt);

    const failed = await detail(T, id);
    assert.equal(failed.state, 'failed');
    assert.deepEqual(stepStates(failed), { fetch: 'succeeded', transform: 'dead_lettered', load: 'canceled', report: 'canceled' });
    assert.equal(failed.openSteps, 0);
    assert.equal(failed.failedSteps, 3);
    assert.deepEqual((await inlineEvents(T, 'workflow.finished')).map((e) => e.data.outcome), ['failed']);
    assert.deepEqual(await outcomes(T), { failed: 1 });

    const retried = await workflows.retry(T, id, OP('fixed the transformer'));
    assert.equal(retried.state, 'running');
    assert.equal(retried.openSteps, 3);
    assert.equal(retried.failedSteps, 0);
    assert.deepEqual(stepStates(retried), { fetch: 'succeeded', transform: 'queued', load: 'waiting', report: 'waiting' });
    assert.deepEqual(Object.fromEntries(retried.steps.map((s) => [s.name, s.runs])), { fetch: 1, transform: 2, load: 2, report: 2 });
    assert.equal(stepJob(retried, 'fetch').id, stepJob(w0, 'fetch').id, 'the succeeded step is not replayed');
    assert.equal(stepJob(retried, 'transform').replayOf, stepJob(w0, 'transform').id);
    await assert.rejects(workflows.retry(T, id, OP('again')), (e: unknown) => e instanceof LedgerError && e.code === 'conflict');

    // the replays run one after the other, each with its parent's (replayed or original) result
    const order: string[] = [];
    for (const [name, parent, parentResult] of [['transform', 'fetch', { rows: 10 }], ['load', 'transform', { t: 'transform' }], ['report', 'load', { t: 'load' }]] as const) {
      const l = await claimOne(T, type);
      assert.equal(l.jobId, stepJob(retried, name).id, `${name}'s replay runs next`);
      assert.deepEqual(l.parents, { [parent]: parentResult });
      order.push(name);
      await complete(l, { t: name });
    }
    assert.deepEqual(order, ['transform', 'load', 'report']);
    const done = await detail(T, id);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.openSteps, 0);
    assert.equal(done.failedSteps, 0);
    assert.deepEqual(done.result, { report: { t: 'report' } });
    assert.equal(done.steps.find((s) => s.name === 'fetch')!.runs, 1);
    assert.deepEqual((await job(T, stepJob(w0, 'fetch').id)).attempt, 1, 'fetch ran once');
    assert.deepEqual((await inlineEvents(T, 'workflow.finished')).map((e) => e.data.outcome), ['failed', 'succeeded']);
    assert.deepEqual(await outcomes(T), { failed: 1, succeeded: 1 });
    const { rows: audit } = await db.pool.query<{ action: string; target: string }>(
      `SELECT action, target FROM orch.audit_log WHERE target = $1`, [`workflow:${id}`]);
    assert.deepEqual(audit.map((a) => a.action), ['workflow.retry']);
  });

  test(`a cycle, an unknown step or a duplicate name is a 422 naming the steps; over ${MAX_STEPS} steps is a 400`, async () => {
    const T = 'wf-bad';
    const http = api(T);
    const submit = (steps: unknown[]) => http('POST', '/workflows', { body: { name: 'bad', steps } });

    const cycle = await submit([
      { name: 'a', jobType: 'bad', dependsOn: ['c'] },
      { name: 'b', jobType: 'bad', dependsOn: ['a'] },
      { name: 'c', jobType: 'bad', dependsOn: ['b'] },
      { name: 'free', jobType: 'bad' },
    ]);
    assert.equal(cycle.status, 422, JSON.stringify(cycle.body));
    assert.equal(cycle.body.error.code, 'unprocessable');
    assert.equal(cycle.body.error.field, 'steps');
    assert.match(cycle.body.error.message, /cycle: a -> c -> b -> a/);

    const self = await submit([{ name: 'solo', jobType: 'bad', dependsOn: ['solo'] }]);
    assert.equal(self.status, 422);
    assert.match(self.body.error.message, /cycle: solo -> solo/);

    const unknown = await submit([{ name: 'a', jobType: 'bad' }, { name: 'b', jobType: 'bad', dependsOn: ['a', { step: 'ghost', onFailure: 'ignore' }] }]);
    assert.equal(unknown.status, 422, JSON.stringify(unknown.body));
    assert.equal(unknown.body.error.field, 'steps[1].dependsOn[1]');
    assert.match(unknown.body.error.message, /step b depends on unknown step ghost/);

    const dup = await submit([{ name: 'x', jobType: 'bad' }, { name: 'y', jobType: 'bad' }, { name: 'x', jobType: 'bad' }]);
    assert.equal(dup.status, 422, JSON.stringify(dup.body));
    assert.equal(dup.body.error.field, 'steps');
    assert.match(dup.body.error.message, /duplicate step names: x/);

    const twice = await submit([{ name: 'x', jobType: 'bad' }, { name: 'y', jobType: 'bad', dependsOn: ['x', 'x'] }]);
    assert.equal(twice.status, 422);
    assert.equal(twice.body.error.field, 'steps[1].dependsOn[1]');

    const tooMany = Array.from({ length: MAX_STEPS + 1 }, (_, i) => ({ name: `s${i}`, jobType: 'bad' }));
    const huge = await submit(tooMany);
    assert.equal(huge.status, 400, JSON.stringify(huge.body).slice(0, 300));
    assert.equal(huge.body.error.code, 'invalid');
    assert.match(huge.body.error.field, /^steps/);
    // the in-process bound is the same
    await assert.rejects(workflows.submit(T, { name: 'huge', steps: tooMany }, 'api'),
      (e: unknown) => e instanceof LedgerError && e.code === 'invalid' && e.field === 'steps');

    // nothing of the refused ones was stored
    assert.equal(await jobCount(T), 0);
    assert.equal((await http('GET', '/workflows')).body.workflows.length, 0);
  });

  test('dependencies stay within a tenant: another tenant\'s job or a missing one is a 422, and nothing is enqueued', async () => {
    const A = 'wf-tenant-a';
    const B = 'wf-tenant-b';
    const a = await api(A)('POST', '/jobs', { body: { jobType: 'xt', payload: { secret: true } } });
    assert.equal(a.status, 201);
    const aId: string = a.body.id;

    const cross = await api(B)('POST', '/jobs', { body: { jobType: 'xt', payload: null, dependsOn: [aId] } });
    assert.equal(cross.status, 422, JSON.stringify(cross.body));
    assert.equal(cross.body.error.code, 'unprocessable');
    assert.equal(cross.body.error.field, 'dependsOn[0]');
    assert.match(cross.body.error.message, new RegExp(`job ${aId} does not exist in tenant ${B}`));

    const missing = await api(B)('POST', '/jobs', { body: { jobType: 'xt', payload: null, dependsOn: [{ jobId: '987654321', onFailure: 'wait' }] } });
    assert.equal(missing.status, 422, JSON.stringify(missing.body));
    assert.equal(missing.body.error.field, 'dependsOn[0]');

    const batch = await api(B)('POST', '/jobs/batch', { body: { jobs: [{ jobType: 'xt', payload: 1 }, { jobType: 'xt', payload: 2, dependsOn: [aId] }] } });
    assert.equal(batch.status, 422, JSON.stringify(batch.body));
    assert.equal(batch.body.error.field, 'jobs[1].dependsOn[0]');

    assert.equal(await jobCount(B), 0, 'nothing enqueued for tenant B');
    const parent = (await job(A, aId));
    assert.equal(parent.state, 'queued', 'A\'s job untouched');
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM orch.job_edges WHERE parent_id = $1 OR tenant_id = $2', [aId, B]);
    assert.equal(Number(rows[0]!.n), 0, 'no edge stored');

    // A's own dependent is fine
    const own = await api(A)('POST', '/jobs', { body: { jobType: 'xt', payload: null, dependsOn: [aId] } });
    assert.equal(own.status, 201, JSON.stringify(own.body));
    assert.equal(own.body.state, 'waiting');
  });

  test('cancel: waiting and queued steps are canceled, a running step keeps its lease and finishes; with includeRunning it is canceled too', async () => {
    const T = 'wf-cancel';
    const http = api(T);
    const spec = (name: string): WorkflowSpec => ({
      name,
      steps: [
        { name: 'long', jobType: 'cx-long' },
        { name: 'after-long', jobType: 'cx', dependsOn: ['long'] },
        { name: 'idle', jobType: 'cx' },
        { name: 'after-idle', jobType: 'cx', dependsOn: ['idle'] },
      ],
    });
    const w1 = (await http('POST', '/workflows', { body: spec('cancel-1') })).body as WorkflowDetail;
    const running = await claimOne(T, 'cx-long');
    assert.equal(running.jobId, stepJob(w1, 'long').id);

    const noReason = await http('POST', `/workflows/${w1.id}/cancel`);
    assert.equal(noReason.status, 400, 'an operator action needs a reason');
    const canceled = await http('POST', `/workflows/${w1.id}/cancel`, { reason: 'wrong input', ticket: 'OPS-7' });
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));
    const c1 = canceled.body as WorkflowDetail;
    assert.equal(c1.state, 'running', 'the running step still runs');
    assert.equal(c1.cancelRequested, true);
    assert.deepEqual(stepStates(c1), { long: 'leased', 'after-long': 'canceled', idle: 'canceled', 'after-idle': 'canceled' });
    const h = await plane.ledger.getHistory(T, stepJob(w1, 'after-long').id);
    assert.deepEqual(transitions(h), ['->waiting:enqueued', 'waiting>canceled:operator_canceled']);
    assert.match(h[1]!.reason ?? '', new RegExp(`workflow ${w1.id} canceled: wrong input`));

    // the running step keeps its lease: it heartbeats and completes
    const [hb] = await plane.ledger.heartbeat([{ tenantId: T, jobId: running.jobId, leaseId: running.leaseId }]);
    assert.equal(hb!.status, 'ok');
    await complete(running, { finished: true });
    const end1 = (await http('GET', `/workflows/${w1.id}`)).body as WorkflowDetail;
    assert.equal(end1.state, 'canceled');
    assert.equal(stepJob(end1, 'long').state, 'succeeded');
    assert.equal((await http('POST', `/workflows/${w1.id}/cancel`, { reason: 'again' })).status, 409);

    // includeRunning: the running step is canceled, its worker's ack refused, the workflow ends at once
    const w2 = (await http('POST', '/workflows', { body: spec('cancel-2') })).body as WorkflowDetail;
    const running2 = await claimOne(T, 'cx-long');
    assert.equal(running2.jobId, stepJob(w2, 'long').id);
    const c2 = (await http('POST', `/workflows/${w2.id}/cancel?includeRunning=true`, { reason: 'stop everything' })).body as WorkflowDetail;
    assert.equal(c2.state, 'canceled');
    assert.deepEqual(stepStates(c2), { long: 'canceled', 'after-long': 'canceled', idle: 'canceled', 'after-idle': 'canceled' });
    const [late] = await plane.ledger.complete([{ tenantId: T, jobId: running2.jobId, leaseId: running2.leaseId, result: null }], null);
    assert.equal(late!.status, 'refused');
    const [hb2] = await plane.ledger.heartbeat([{ tenantId: T, jobId: running2.jobId, leaseId: running2.leaseId }]);
    assert.equal(hb2!.status, 'refused');

    assert.deepEqual((await inlineEvents(T, 'workflow.finished')).map((e) => [e.target, e.data.outcome]), [[w1.id, 'canceled'], [w2.id, 'canceled']]);
    assert.deepEqual(await outcomes(T), { canceled: 2 });
    const audit = await http('GET', '/audit?action=workflow.cancel');
    assert.equal(audit.body.entries.length, 2);
    assert.ok(audit.body.entries.some((e: { ticket: string | null; reason: string }) => e.ticket === 'OPS-7' && e.reason === 'wrong input'));
  });

  test('fan-out/fan-in: 200 children completed concurrently release the join exactly once, after all of them', async () => {
    const T = 'wf-fan';
    const children = Array.from({ length: 200 }, (_, i) => `c${i}`);
    const { workflow: w0 } = await workflows.submit(T, {
      name: 'fan',
      steps: [
        { name: 'root', jobType: 'fan-root' },
        ...children.map((name) => ({ name, jobType: 'fan-child', payload: { name }, dependsOn: ['root'] })),
        { name: 'join', jobType: 'fan-join', dependsOn: children },
      ],
    }, 'api');
    const joinId = stepJob(w0, 'join').id;
    assert.equal(stepJob(w0, 'join').pendingParents, 200);
    await complete(await claimOne(T, 'fan-root'), { root: true });
    const leases = await claim(T, 'fan-child', 500);
    assert.equal(leases.length, 200, 'the root released all 200 children');

    /** One snapshot: the join waits for exactly the children not yet succeeded, and is queued only when none is left. */
    const invariant = async () => {
      const { rows: [r] } = await db.pool.query<{ state: string; pending_parents: number; open: string }>(
        `SELECT j.state::text, j.pending_parents,
                (SELECT count(*) FROM orch.jobs c WHERE c.tenant_id = j.tenant_id AND c.workflow_id = j.workflow_id AND c.job_type = 'fan-child' AND c.state <> 'succeeded') AS open
         FROM orch.jobs j WHERE j.tenant_id = $1 AND j.id = $2`, [T, joinId]);
      assert.equal(r!.pending_parents, Number(r!.open), 'pending parents = children not yet succeeded');
      assert.equal(r!.state, Number(r!.open) > 0 ? 'waiting' : 'queued');
    };
    // 8 concurrent lanes, each acking its share one lease at a time
    const lanes = Array.from({ length: 8 }, (_, k) => leases.filter((_l, i) => i % 8 === k));
    await Promise.all(lanes.map(async (lane) => {
      for (const l of lane) {
        await complete(l, { child: (l.payload as { name: string }).name });
        await invariant();
      }
    }));
    const join = await job(T, joinId);
    assert.equal(join.state, 'queued');
    assert.equal(join.pendingParents, 0);
    assert.equal(await causeCount(joinId, 'dependencies_met'), 1, 'the join released exactly once');
    const hj = await plane.ledger.getHistory(T, joinId);
    assert.deepEqual(transitions(hj), ['->waiting:enqueued', 'waiting>queued:dependencies_met']);
    assert.equal((await detail(T, w0.id)).openSteps, 1, 'only the join is open');

    const lj = await claimOne(T, 'fan-join');
    assert.equal(lj.jobId, joinId);
    assert.equal(Object.keys(lj.parents ?? {}).length, 200);
    assert.deepEqual(lj.parents!.c7, { child: 'c7' });
    const { rows: [last] } = await db.pool.query<{ at: Date }>(
      `SELECT max(finished_at) AS at FROM orch.jobs WHERE tenant_id = $1 AND job_type = 'fan-child'`, [T]);
    assert.ok(Date.parse((await job(T, joinId)).startedAt!) >= last!.at.getTime(), 'the join started after every child finished');
    await complete(lj, { joined: 200 });
    const w = await detail(T, w0.id);
    assert.equal(w.state, 'succeeded');
    assert.equal(w.openSteps, 0);
    assert.equal(w.failedSteps, 0);
    assert.deepEqual(w.result, { join: { joined: 200 } });
    assert.deepEqual(await outcomes(T), { succeeded: 1 });
    assert.equal((await inlineEvents(T, 'workflow.finished')).length, 1, 'the workflow finished once');
  });

  test('race: dependents enqueued while their parent completes are never left waiting', async (t) => {
    const T = 'wf-race';

    // First, the race made certain: an enqueue holds its parent's row (and has counted itself as a
    // dependent) while the parent's ack waits for it; the ack must see the new dependent and release it.
    const [p0] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'race-parent', payload: { round: -1 } }]);
    const l0 = await claimOne(T, 'race-parent');
    const client = await db.pool.connect();
    let c0Id = '';
    try {
      await client.query('BEGIN');
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const [c0] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'race-child-0', payload: null, dependsOn: [{ jobId: p0!.id }] }], { client });
      assert.equal(c0!.state, 'waiting');
      c0Id = c0!.id;
      const acking = complete(l0, { round: -1 });
      await eventually(async () => {
        const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid]);
        return rows[0]!.n > 0;
      }, 10_000, 'the ack to wait for the enqueue\'s lock on the parent');
      await client.query('COMMIT');
      await acking;
    } finally {
      await client.query('ROLLBACK').catch(() => undefined); // nothing to roll back once committed
      client.release();
    }
    assert.equal((await job(T, p0!.id)).state, 'succeeded');
    assert.deepEqual(transitions(await plane.ledger.getHistory(T, c0Id)), ['->waiting:enqueued', 'waiting>queued:dependencies_met']);
    const lc0 = await claimOne(T, 'race-child-0');
    assert.deepEqual(lc0.parents, { [p0!.id]: { round: -1 } });
    await complete(lc0);

    // Then many at once, the parent's ack among them.
    let released = 0;
    let direct = 0;
    let ackRetries = 0;
    /**
     * A worker's ack: the completing statement may meet orch.dependency_race more often than the
     * ledger retries it when dependents keep arriving; the worker then sends the same ack again.
     */
    const ack = async (l: Lease, result: unknown) => {
      for (let i = 0; ; i++) {
        try {
          return await complete(l, result);
        } catch (err) {
          if ((err as { code?: unknown }).code !== '40001' || i >= 20) throw err;
          ackRetries++;
        }
      }
    };
    for (let round = 0; round < 4; round++) {
      const [p] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'race-parent', payload: { round } }]);
      const lp = await claimOne(T, 'race-parent');
      assert.equal(lp.jobId, p!.id);
      // the parent's ack goes out once `trigger` of the 50 enqueues have returned, the others still in flight
      // (some before their parent lock, some holding it, some committing): a different mix each round
      const trigger = [0, 2, 10, 25][round]!;
      let returned = 0;
      let acked: Promise<void> | null = trigger === 0 ? ack(lp, { round }) : null;
      const enqueueOne = () => plane.ledger.enqueue([{ tenantId: T, jobType: 'race-child', payload: { round }, dependsOn: [{ jobId: p!.id }] }])
        .then((r) => {
          if (++returned === trigger) acked = ack(lp, { round });
          return r;
        });
      const results = await Promise.all(Array.from({ length: 50 }, enqueueOne));
      await acked;
      assert.ok(acked, 'the parent was acked');
      const childIds = results.flat().map((r) => r.id);
      assert.equal(childIds.length, 50);
      const { rows } = await db.pool.query<{ id: string; state: string; pending_parents: number }>(
        'SELECT id::text, state::text, pending_parents FROM orch.jobs WHERE tenant_id = $1 AND id = ANY($2::bigint[])', [T, childIds]);
      assert.equal((await job(T, p!.id)).state, 'succeeded');
      assert.deepEqual(rows.filter((r) => r.state !== 'queued'), [], `round ${round}: every child of the succeeded parent is queued`);
      assert.ok(rows.every((r) => r.pending_parents === 0));
      for (const r of results.flat()) {
        if (r.state === 'waiting') released++;
        else direct++;
      }
      const { rows: [tally] } = await db.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM orch.job_transitions t, unnest(t.job_ids) AS j(id) WHERE t.cause = 'dependencies_met' AND j.id = ANY($1::bigint[])`, [childIds]);
      assert.equal(Number(tally!.n), results.flat().filter((r) => r.state === 'waiting').length, 'each child that waited was released once');
      // and each runs: the parent's result comes with it
      const leases = await claim(T, 'race-child', 100);
      assert.equal(leases.length, 50);
      assert.ok(leases.every((l) => JSON.stringify(l.parents) === JSON.stringify({ [p!.id]: { round } })));
      await plane.ledger.complete(leases.map((l) => ({ tenantId: T, jobId: l.jobId, leaseId: l.leaseId })), null);
    }
    assert.equal(released + direct, 200);
    t.diagnostic(`race: ${released} released by the parent, ${direct} queued at once, ${ackRetries} acks re-sent`);
  });

  test('CLI: workflows submit, show (the graph drawn, children indented) and list', async () => {
    const T = 'wf-cli';
    const base = ['--api-url', plane.url, '--tenant', T];
    const dir = await mkdtemp(path.join(tmpdir(), 'orch-wf-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'wf.json');
    await writeFile(file, JSON.stringify({
      name: 'cli-diamond',
      steps: [
        { name: 'extract', jobType: 'cli-step' },
        { name: 'left', jobType: 'cli-step', dependsOn: ['extract'] },
        { name: 'right', jobType: 'cli-step', dependsOn: [{ step: 'extract', onFailure: 'ignore' }] },
        { name: 'merge', jobType: 'cli-step', dependsOn: ['left', 'right'] },
      ],
    }));
    const badFile = path.join(dir, 'cycle.json');
    await writeFile(badFile, JSON.stringify({ name: 'loop', steps: [{ name: 'p', jobType: 'cli-step', dependsOn: ['q'] }, { name: 'q', jobType: 'cli-step', dependsOn: ['p'] }] }));

    const [submitted, cyclic] = await Promise.all([
      runCli([...base, 'workflows', 'submit', '--file', file]),
      runCli([...base, 'workflows', 'submit', '--file', badFile]),
    ]);
    assert.equal(submitted.code, 0, submitted.stderr);
    const m = /^workflow ([0-9a-f-]{36}) "cli-diamond": running, 0\/4 steps ended, 0 failed$/m.exec(submitted.stdout);
    assert.ok(m, submitted.stdout);
    const id = m[1]!;
    assert.equal(cyclic.code, 1);
    assert.match(cyclic.stderr, /^orch: the steps form a cycle: .* \(field: steps\) \[HTTP 422 unprocessable\]\n$/);

    await complete(await claimOne(T, 'cli-step'), { extracted: true });
    const shown = await runCli([...base, 'workflows', 'show', id]);
    assert.equal(shown.code, 0, shown.stderr);
    const lines = shown.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, new RegExp(`^workflow ${id} "cli-diamond": running, 1/4 steps ended, 0 failed$`));
    assert.match(lines[1]!, /^STEP\s+STATE\s+JOB\s+RUNS\s+AFTER$/);
    assert.equal(lines.length, 6, shown.stdout);
    assert.match(lines[2]!, /^extract\s+✔ succeeded\s+\d+\s+1\s*$/);
    assert.match(lines[3]!, /^ {2}└─ left\s+• queued\s+\d+\s+1\s+extract$/);
    assert.match(lines[4]!, /^ {2}└─ right\s+• queued\s+\d+\s+1\s+extract \(ignore\)$/);
    assert.match(lines[5]!, /^ {4}└─ merge\s+… waiting\s+\d+\s+1\s+left, right$/);

    const listed = await runCli([...base, '--output', 'json', 'workflows', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as { workflows: { id: string }[] }).workflows.map((w) => w.id), [id]);
  });

  test('CLI: enqueue --depends-on ID prints the job waiting; a bad --depends-on is one line on stderr', async () => {
    const T = 'wf-cli-enqueue';
    const base = ['--api-url', plane.url, '--tenant', T];
    const [parent] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'cli-parent', payload: null }]);
    const [enq, bad, badPolicy] = await Promise.all([
      runCli([...base, 'enqueue', 'cli-child', '--depends-on', parent!.id]),
      runCli([...base, 'enqueue', 'cli-child', '--depends-on', 'abc']),
      runCli([...base, 'enqueue', 'cli-child', '--depends-on', `${parent!.id}:sometimes`]),
    ]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stdout, '');
    assert.equal(bad.stderr.trimEnd().split('\n').length, 1, bad.stderr);
    assert.equal(badPolicy.code, 1);
    assert.equal(await jobCount(T, 'cli-child'), enq.code === 0 ? 1 : 0, 'the bad commands enqueued nothing');
    assert.match(bad.stderr, /^orch: --depends-on: "abc" is not a job id\n$/);
    assert.match(badPolicy.stderr, /^orch: --depends-on: policy "sometimes" is not one of cancel, ignore, wait\n$/);

    assert.equal(enq.code, 0, enq.stderr);
    const [header, row] = enq.stdout.trim().split('\n');
    assert.match(header!, /^ID\s+JOBTYPE\s+STATE\s+CREATED$/);
    const [childId, childType, childState] = row!.trim().split(/\s+/);
    assert.equal(childType, 'cli-child');
    assert.equal(childState, 'waiting');
    const child = await job(T, childId!);
    assert.equal(child.state, 'waiting');
    assert.equal(child.pendingParents, 1);
    const two = await runCli([...base, 'enqueue', 'cli-child', '--depends-on', parent!.id, `${childId}:ignore`]);
    assert.equal(two.code, 0, two.stderr);
    const twoId = two.stdout.trim().split('\n')[1]!.trim().split(/\s+/)[0]!;
    assert.equal((await job(T, twoId)).pendingParents, 2, 'both parents taken');
  });
});

describe('metrics of dependents', () => {
  test('a dependent counts as enqueued once (not as an outcome "waiting"), its release is no outcome, and a cancel by its parent\'s failure counts as canceled', async () => {
    const T = 'wf-metrics';
    const [p] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'wfm_parent', payload: {}, maxAttempts: 1 }]);
    const [ok] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'wfm_parent', payload: {} }]);
    await plane.ledger.enqueue([
      { tenantId: T, jobType: 'wfm_child', payload: {}, dependsOn: [{ jobId: p!.id }] },
      { tenantId: T, jobType: 'wfm_child', payload: {}, dependsOn: [{ jobId: ok!.id }] },
    ]);
    const leases = await claim(T, 'wfm_parent');
    assert.equal(leases.length, 2);
    await deadLetter(leases.find((l) => l.jobId === p!.id)!);
    await complete(leases.find((l) => l.jobId === ok!.id)!);
    const text = await plane.metrics.scrape();
    const child = (outcome: string) => sample(text, 'orchestrator_jobs_total', { tenant: T, job_type: 'wfm_child', outcome });
    assert.equal(sample(text, 'orchestrator_jobs_enqueued_total', { tenant: T, job_type: 'wfm_child' }), 2);
    assert.equal(child('canceled'), 1, 'the dependent of the dead-lettered parent');
    assert.equal(child('waiting'), undefined);
    assert.equal(child('retried'), undefined, 'a release is no retry');
  });
});

describe('a parent that was replayed', () => {
  test('a dependent added later waits for the replay (it stands for the original), and its handler sees the replay\'s result', async () => {
    const T = 'wf-replayed';
    const [p] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'wfr', payload: {}, maxAttempts: 1 }]);
    await deadLetter(await claimOne(T, 'wfr'));
    const [outcome] = await plane.ledger.replay(T, [p!.id], { priority: null, actor: 'operator:test', reason: 'again' });
    assert.equal(outcome!.status, 'replayed');
    const replayId = (outcome as { replayJobId: string }).replayJobId;
    // depends on the dead original, policy wait: it waits for the replay, which is queued
    const [c] = await plane.ledger.enqueue([{ tenantId: T, jobType: 'wfr_child', payload: {}, dependsOn: [{ jobId: p!.id, onFailure: 'wait' }] }]);
    assert.equal(c!.state, 'waiting');
    const seen: unknown[] = [];
    const worker = await createWorker({
      connectionString: db.url, jobTypes: ['wfr', 'wfr_child'], handleSignals: false, log: createLogger('silent'),
      handler: (j) => {
        if (j.jobType === 'wfr_child') seen.push(j.parents);
        return { from: j.id };
      },
    });
    try {
      await eventually(async () => (await job(T, c!.id)).state === 'succeeded', 15_000, 'the dependent to run after the replay');
    } finally {
      await worker.stop();
    }
    assert.equal((await job(T, replayId)).state, 'succeeded');
    assert.deepEqual(seen, [{ [replayId]: { from: replayId } }]);
  });
});

describe('the server dies mid-workflow', () => {
  test('SIGKILL the server while a root + 100 children + join run, restart it: every step succeeds once, the join is released once', async () => {
    const db2 = await createTestDatabase();
    cleanups.push(() => db2.drop());
    const port = String(await freePort());
    const env = { ORCH_DATABASE_URL: db2.url, ORCH_HTTP_PORT: port, ORCH_LEASE_REAPER_INTERVAL_MS: '100' };
    const first = await spawnServer(env);
    cleanups.push(() => kill(first.child, 'SIGKILL'));
    const T = 'crash';
    const type = 'wf-crash';
    const client = new OrchClient({ apiUrl: first.url, tenant: T });
    await client.defineJobType(type, { leaseMs: 3000 }, { reason: 'test setup' });
    const children = Array.from({ length: 100 }, (_, i) => `child-${i}`);
    const w0 = await client.submitWorkflow({
      name: 'crash-fan',
      steps: [
        { name: 'root', jobType: type, payload: { name: 'root' } },
        ...children.map((name) => ({ name, jobType: type, payload: { name }, dependsOn: ['root'] })),
        { name: 'join', jobType: type, payload: { name: 'join' }, dependsOn: children },
      ],
    });
    assert.equal(w0.stepCount, 102);

    const completed = new Map<string, number>();
    let transportErrors = 0;
    const worker: Worker<{ name: string }> = await createWorker<{ name: string }>({
      apiUrl: first.url, tenant: T, jobTypes: [type], concurrency: 5, waitMs: 500, handleSignals: false, log: createLogger('silent'),
      handler: async (j) => {
        await delay(30);
        return { name: j.payload.name };
      },
    });
    cleanups.push(() => worker.stop());
    worker.on('completed', (lease: Lease) => completed.set(lease.jobId, (completed.get(lease.jobId) ?? 0) + 1));
    worker.on('transportError', () => transportErrors++);

    await eventually(async () => completed.size >= 25, 20_000, 'children flowing');
    await kill(first.child, 'SIGKILL');
    const doneAtKill = completed.size;
    assert.ok(doneAtKill < 102, `the server died mid-workflow (${doneAtKill} done)`);

    const second = await spawnServer(env);
    cleanups.push(() => kill(second.child, 'SIGKILL'));
    assert.equal(second.url, first.url);

    const workflowState = async () => (await db2.pool.query<{ state: string; open_steps: number }>('SELECT state, open_steps FROM orch.workflows WHERE id = $1', [w0.id])).rows[0]!;
    await eventually(async () => (await workflowState()).state === 'succeeded', 40_000, 'the workflow to succeed');
    await worker.stop();
    assert.ok(transportErrors > 0, 'the worker saw the outage');

    assert.deepEqual(await workflowState(), { state: 'succeeded', open_steps: 0 });
    const { rows: jobs } = await db2.pool.query<{ id: string; step_name: string; state: string; succeeded: string; started_at: Date }>(
      `SELECT j.id::text, j.step_name, j.state::text, j.started_at,
              (SELECT count(*) FROM orch.job_history h WHERE h.job_id = j.id AND h.to_state = 'succeeded') AS succeeded
       FROM orch.jobs j WHERE j.workflow_id = $1`, [w0.id]);
    assert.equal(jobs.length, 102, 'one job per step, no replays');
    assert.deepEqual(jobs.filter((j) => j.state !== 'succeeded' || j.succeeded !== '1').map((j) => `${j.step_name}:${j.state}:${j.succeeded}`), [],
      'every step succeeded exactly once');
    const join = jobs.find((j) => j.step_name === 'join')!;
    assert.equal(await (async () => {
      const { rows } = await db2.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM orch.job_transitions t, unnest(t.job_ids) AS j(id) WHERE t.cause = 'dependencies_met' AND j.id = $1`, [join.id]);
      return Number(rows[0]!.n);
    })(), 1, 'the join released once');
    const { rows: [lastChild] } = await db2.pool.query<{ at: Date }>(
      `SELECT max(finished_at) AS at FROM orch.jobs WHERE workflow_id = $1 AND step_name LIKE 'child-%'`, [w0.id]);
    assert.ok(join.started_at.getTime() >= lastChild!.at.getTime(), 'the join ran after every child');
    const { rows: outcomeRows } = await db2.pool.query<{ outcome: string; n: string }>('SELECT outcome, n FROM orch.workflow_outcomes WHERE tenant_id = $1', [T]);
    assert.deepEqual(outcomeRows.map((r) => [r.outcome, Number(r.n)]), [['succeeded', 1]]);
    const final = await new OrchClient({ apiUrl: second.url, tenant: T }).getWorkflow(w0.id);
    assert.equal(final.state, 'succeeded');
    assert.deepEqual(final.result, { join: { name: 'join' } });
  });
});
