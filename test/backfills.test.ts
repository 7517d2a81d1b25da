import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import { freePort } from '../src/ledger/embedded.ts';
import type { Lease } from '../src/ledger/types.ts';
import { createLogger } from '../src/logging.ts';
import type { PeriodicService } from '../src/maintenance/service.ts';
import { sample } from '../src/metrics/exposition.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { httpClient } from './helpers/http.ts';
import { kill } from './helpers/processes.ts';
import { eventually, runCli, spawnServer, startTestServer } from './helpers/server.ts';

/**
 * Backfills: a range cut into windows, one job each, at most `concurrency`
 * in flight; dry run; reprocess policies; pause, resume, cancel, retry; the
 * watermark over completions in any order; bad input; kill -9.
 */

const TENANT = 'bf';
const HOUR = 3_600_000;
let db: TestDatabase;
let plane: ControlPlane;
const cleanups: (() => Promise<unknown>)[] = [];
const api = httpClient(() => plane.url, '/api/v1/orchestrator', { tenant: TENANT, reason: 'backfill test', ticket: 'OPS-1' });

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await plane?.stop();
  await db?.drop();
});

const runner = (): PeriodicService => plane.elector.leaderServices.find((s) => s.name === 'backfill-runner')!;
/** Waits for two complete runs of the backfill runner, so whatever it would do has been done. */
async function settled(): Promise<void> {
  for (let i = 0; i < 2; i++) await once(runner(), 'run');
}

const spec = (jobType: string, hours: number, extra: Record<string, unknown> = {}) => ({
  jobType, from: '2026-11-01T00:00:00Z', to: new Date(Date.parse('2026-11-01T00:00:00Z') + hours * HOUR).toISOString(), windowMs: HOUR, ...extra,
});

async function leases(jobType: string, limit = 100): Promise<Lease[]> {
  return plane.ledger.claim({ workerId: 'test', jobTypes: [jobType], limit, tenantIds: [TENANT] });
}

async function complete(l: Lease): Promise<void> {
  const [o] = await plane.ledger.complete([{ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId }], null);
  assert.equal(o!.status, 'ok');
}

async function windowsOf(id: string): Promise<{ seq: number; state: string; job_id: string | null; runs: number }[]> {
  return (await db.pool.query('SELECT seq, state, job_id, runs FROM orch.windows WHERE owner_id = $1 ORDER BY seq', [id])).rows;
}

describe('a backfill', () => {
  test('the dry run shows the windows and what would be skipped, and enqueues nothing', async () => {
    const r = await api('POST', '/backfills/plan', { body: spec('bf-plan', 5.5), reason: undefined, ticket: undefined });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.windows, 6);
    assert.equal(r.body.run, 6);
    assert.deepEqual(r.body.items.at(-1), { index: 5, start: '2026-11-01T05:00:00.000Z', end: '2026-11-01T05:30:00.000Z', action: 'run', state: 'pending', reason: null });
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM orch.jobs WHERE job_type = 'bf-plan'`);
    assert.equal(rows[0].n, 0);
    assert.equal((await api('GET', '/backfills')).body.backfills.length, 0);
    const cli = await runCli(['--api-url', plane.url, '--tenant', TENANT, 'backfill', 'create', 'bf-plan', '--from', '2026-11-01T00:00:00Z', '--to', '2026-11-02T00:00:00Z', '--window', '6h', '--dry-run']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^4 windows: 4 would run, 0 would be skipped/);
  });

  test('runs each window as one job, at most `concurrency` at once, in order, to a watermark at its end', async () => {
    const created = await api('POST', '/backfills', { body: spec('bf-run', 6, { concurrency: 2, payload: { from: '{{windowStart}}', to: '{{windowEnd}}', n: '{{windowIndex}}', id: '{{backfillId}}' } }) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id: string = created.body.id;
    const seen: Lease[] = [];
    for (let round = 0; round < 3; round++) {
      const got = await eventually(async () => {
        const l = await leases('bf-run');
        return l.length > 0 && l;
      }, 10_000, `round ${round}`);
      await settled();
      const more = await leases('bf-run');
      assert.equal(got.length + more.length, 2, 'two windows in flight, no more');
      for (const l of [...got, ...more]) {
        seen.push(l);
        await complete(l);
      }
    }
    const done = await eventually(async () => {
      const b = (await api('GET', `/backfills/${id}`)).body;
      return b.state === 'done' && b;
    }, 10_000, 'done');
    assert.equal(done.watermark, '2026-11-01T06:00:00.000Z');
    assert.deepEqual({ ...done.progress, perMinute: 0, estimatedEndAt: null }, { pending: 0, running: 0, succeeded: 6, failed: 0, canceled: 0, skipped: 0, covered: 0, perMinute: 0, estimatedEndAt: null });
    const payloads = seen.map((l) => l.payload as { from: string; to: string; n: number; id: string }).sort((a, b) => a.n - b.n);
    assert.deepEqual(payloads.map((p) => p.n), [0, 1, 2, 3, 4, 5], 'each window once');
    assert.deepEqual(payloads[2], { from: '2026-11-01T02:00:00.000Z', to: '2026-11-01T03:00:00.000Z', n: 2, id });
    assert.deepEqual(seen.map((l) => l.idempotencyKey).sort(), [0, 1, 2, 3, 4, 5].map((n) => `backfill:${id}:${n}`).sort());
    const marks = (await api('GET', '/watermarks?jobType=bf-run')).body.watermarks;
    assert.deepEqual(marks.map((m: { watermark: string }) => m.watermark), ['2026-11-01T06:00:00.000Z']);
    // a schedule reads it: "process from the watermark to now"
    await api('POST', '/schedules', { body: { name: 'after-backfill', jobType: 'bf-run', cron: '0 0 1 1 *', payload: { from: '{{watermark}}', to: '{{now}}' } } });
    const { jobId } = (await api('POST', '/schedules/after-backfill/trigger')).body;
    const next = (await api('GET', `/jobs/${jobId}`)).body.job;
    assert.equal(next.payload.from, '2026-11-01T06:00:00.000Z');
    assert.ok(Date.parse(next.payload.to) > Date.parse(next.payload.from));
    assert.equal((await api('POST', `/jobs/${jobId}/cancel`)).status, 200);
    const { rows: events } = await db.pool.query(
      `SELECT e->>'type' AS type, e->'data' AS data FROM orch.outbox, jsonb_array_elements(events) e WHERE e->>'target' IN ($1, 'watermark:bf-run')`, [`backfill:${id}`]);
    assert.ok(events.some((e) => e.type === 'backfill.progress' && e.data.state === 'done' && e.data.succeeded === 6), 'a progress event for the end');
    assert.ok(events.some((e) => e.type === 'watermark.advanced' && e.data.watermark === '2026-11-01T06:00:00.000Z'));
    const audit = await api('GET', '/audit?action=backfill.create');
    assert.equal(audit.body.entries[0].ticket, 'OPS-1');
    const metrics = await (await fetch(`${plane.url}/metrics`)).text();
    assert.equal(sample(metrics, 'orchestrator_backfill_windows', { tenant: TENANT, backfill: id, state: 'succeeded' }), 6);
    assert.equal(sample(metrics, 'orchestrator_watermark_timestamp_seconds', { tenant: TENANT, job_type: 'bf-run' }), Date.parse('2026-11-01T06:00:00Z') / 1000);

    // the same request again never doubles work; reprocess all runs everything again as new jobs
    const again = await api('POST', '/backfills', { body: spec('bf-run', 6) });
    assert.equal(again.body.progress.skipped, 6);
    await eventually(async () => (await api('GET', `/backfills/${again.body.id}`)).body.state === 'done', 10_000, 'the repeat is done at once');
    assert.equal((await leases('bf-run')).length, 0, 'no job for a window that already ran');
    const plan = await api('POST', '/backfills/plan', { body: spec('bf-run', 7, { reprocess: 'all' }) });
    assert.deepEqual([plan.body.run, plan.body.skip], [7, 0]);
    const plan2 = await api('POST', '/backfills/plan', { body: spec('bf-run', 7) });
    assert.deepEqual([plan2.body.run, plan2.body.skip], [1, 6]);
    assert.match(plan2.body.items[0].reason, /^succeeded in /);
  });

  test('a second request while the first runs follows its running window and leaves its pending ones to it: no window runs twice', async () => {
    const first: string = (await api('POST', '/backfills', { body: spec('bf-dup', 3, { concurrency: 1 }) })).body.id;
    const [l0] = await eventually(async () => {
      const l = await leases('bf-dup');
      return l.length > 0 && l;
    }, 10_000, 'window 0 of the first');
    const plan = await api('POST', '/backfills/plan', { body: spec('bf-dup', 3) });
    assert.deepEqual(plan.body.items.map((i: { state: string }) => i.state), ['running', 'covered', 'covered']);
    const second = await api('POST', '/backfills', { body: spec('bf-dup', 3, { concurrency: 3 }) });
    assert.deepEqual([second.body.progress.running, second.body.progress.covered], [1, 2]);
    await complete(l0!);
    for (let n = 1; n < 3; n++) {
      const l = await eventually(async () => {
        const x = await leases('bf-dup');
        return x.length > 0 && x;
      }, 10_000, `window ${n} of the first`);
      assert.equal(l.length, 1, 'only the first backfill starts windows');
      await complete(l[0]!);
    }
    const [a, b] = await eventually(async () => {
      const both = await Promise.all([first, second.body.id].map(async (id) => (await api('GET', `/backfills/${id}`)).body));
      return both.every((x) => x.state === 'done') && both;
    }, 10_000, 'both done');
    assert.deepEqual([a.watermark, a.progress.succeeded], ['2026-11-01T03:00:00.000Z', 3]);
    assert.deepEqual([b.watermark, b.progress.succeeded, b.progress.covered], ['2026-11-01T01:00:00.000Z', 1, 2], 'the follower succeeded with the job it followed; covered windows are not its to count');
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM orch.jobs WHERE job_type = 'bf-dup'`);
    assert.equal(rows[0].n, 3, 'three windows, three jobs');
    assert.deepEqual((await api('GET', '/watermarks?jobType=bf-dup')).body.watermarks.map((m: { watermark: string }) => m.watermark), ['2026-11-01T03:00:00.000Z']);
  });

  test('canceling a backfill that follows another\'s job leaves that job alone', async () => {
    const first: string = (await api('POST', '/backfills', { body: spec('bf-follow', 1) })).body.id;
    await eventually(async () => (await windowsOf(first))[0]!.state === 'running', 10_000, 'the first starts its window');
    const second: string = (await api('POST', '/backfills', { body: spec('bf-follow', 1) })).body.id;
    const [w] = await windowsOf(second);
    assert.deepEqual([w!.state, w!.job_id, w!.runs], ['running', (await windowsOf(first))[0]!.job_id, 0], 'it follows the first one\'s job');
    assert.equal((await api('POST', `/backfills/${second}/cancel`)).body.state, 'canceled');
    assert.equal((await api('GET', `/jobs/${w!.job_id}`)).body.job.state, 'queued', 'the first backfill\'s job is not canceled');
    const [l] = await leases('bf-follow');
    await complete(l!);
    await eventually(async () => (await api('GET', `/backfills/${first}`)).body.state === 'done', 10_000, 'the first is done');
  });

  test('a window that failed before starts failed, holds the watermark, and runs on retry', async () => {
    const first: string = (await api('POST', '/backfills', { body: spec('bf-prior', 2, { concurrency: 2 }) })).body.id;
    const ls = await eventually(async () => {
      const l = await leases('bf-prior');
      return l.length === 2 && l;
    }, 10_000, 'two windows');
    const byKey = new Map(ls.map((l) => [l.idempotencyKey, l]));
    await complete(byKey.get(`backfill:${first}:1`)!);
    const l0 = byKey.get(`backfill:${first}:0`)!;
    await plane.ledger.fail([{ tenantId: TENANT, jobId: l0.jobId, leaseId: l0.leaseId, error: { class: 'Boom', message: 'no', retryable: false } }], null);
    await eventually(async () => (await api('GET', `/backfills/${first}`)).body.state === 'done', 10_000, 'first done');
    const again = (await api('POST', '/backfills', { body: spec('bf-prior', 2) })).body;
    assert.deepEqual([again.progress.failed, again.progress.skipped], [1, 1]);
    const done = await eventually(async () => {
      const x = (await api('GET', `/backfills/${again.id}`)).body;
      return x.state === 'done' && x;
    }, 10_000, 'the second is done at once');
    assert.equal(done.watermark, null, 'window 0 failed: no watermark, though window 1 was skipped');
    await api('POST', `/backfills/${again.id}/retry`);
    const [rerun] = await eventually(async () => {
      const l = await leases('bf-prior');
      return l.length > 0 && l;
    }, 10_000, 'window 0 runs');
    assert.equal(rerun!.idempotencyKey, `backfill:${again.id}:0`);
    await complete(rerun!);
    await eventually(async () => (await api('GET', `/backfills/${again.id}`)).body.watermark === '2026-11-01T02:00:00.000Z', 10_000, 'watermark at the end');
  });

  test('pause holds new windows back, resume goes on, cancel cancels what has not run, retry runs it again', async () => {
    const created = await api('POST', '/backfills', { body: spec('bf-steer', 4, { concurrency: 1 }) });
    const id: string = created.body.id;
    const first = await eventually(async () => {
      const l = await leases('bf-steer');
      return l.length > 0 && l;
    }, 10_000, 'window 0');
    assert.equal((await api('POST', `/backfills/${id}/pause`)).body.state, 'paused');
    await complete(first[0]!);
    await settled();
    assert.equal((await leases('bf-steer')).length, 0, 'nothing starts while paused');
    assert.equal((await api('POST', `/backfills/${id}/pause`)).status, 409, 'pausing twice is a conflict');
    const { rows: changes } = await db.pool.query(
      `SELECT e->'data'->>'action' AS action FROM orch.outbox, jsonb_array_elements(events) e WHERE e->>'type' = 'backfill.changed' AND e->>'target' = $1`, [`backfill:${id}`]);
    assert.deepEqual(changes.map((c) => c.action).sort(), ['backfill.create', 'backfill.pause'], 'each action is an event with its audit entry');
    assert.equal((await api('POST', `/backfills/${id}/resume`)).body.state, 'running');
    await eventually(async () => (await windowsOf(id))[1]!.state === 'running', 10_000, 'window 1 starts');
    const canceled = await api('POST', `/backfills/${id}/cancel`);
    assert.equal(canceled.body.state, 'canceled');
    const jobOf1 = (await windowsOf(id))[1]!.job_id!;
    assert.equal((await api('GET', `/jobs/${jobOf1}`)).body.job.state, 'canceled', 'the queued job of a started window is canceled');
    await eventually(async () => (await windowsOf(id)).map((w) => w.state).join() === 'succeeded,canceled,canceled,canceled', 10_000, 'windows canceled');
    const retried = await api('POST', `/backfills/${id}/retry`);
    assert.equal(retried.body.state, 'running');
    for (let n = 1; n < 4; n++) {
      const l = await eventually(async () => {
        const x = await leases('bf-steer');
        return x.length > 0 && x;
      }, 10_000, `window ${n} again`);
      assert.equal(l.length, 1, 'concurrency 1');
      await complete(l[0]!);
    }
    const b = await eventually(async () => {
      const x = (await api('GET', `/backfills/${id}`)).body;
      return x.state === 'done' && x;
    }, 10_000, 'done after retry');
    assert.equal(b.watermark, '2026-11-01T04:00:00.000Z');
    const w = await windowsOf(id);
    assert.deepEqual(w.map((x) => x.runs), [1, 2, 1, 1], 'window 1 ran a second job; the others were never started before the retry');
    const { rows } = await db.pool.query<{ k: string }>(`SELECT idempotency_key AS k FROM orch.jobs WHERE job_type = 'bf-steer' ORDER BY id`);
    assert.deepEqual(rows.map((r) => r.k), [`backfill:${id}:0`, `backfill:${id}:1`, `backfill:${id}:1:run2`, `backfill:${id}:2`, `backfill:${id}:3`]);
    assert.equal((await api('POST', `/backfills/${id}/retry`)).status, 409, 'nothing left to retry');
  });

  test('the watermark follows the contiguous completed windows whatever order they finish in, and never goes back', async () => {
    const id: string = (await api('POST', '/backfills', { body: spec('bf-mark', 4, { concurrency: 4 }) })).body.id;
    const byWindow = new Map<number, Lease>();
    await eventually(async () => {
      for (const l of await leases('bf-mark')) byWindow.set(Number(l.idempotencyKey.split(':')[2]), l);
      return byWindow.size === 4;
    }, 10_000, 'four windows leased');
    const mark = async () => {
      await settled();
      return (await api('GET', `/backfills/${id}`)).body.watermark;
    };
    await complete(byWindow.get(2)!);
    await complete(byWindow.get(3)!);
    assert.equal(await mark(), null, 'windows 2 and 3 done, 0 not: no watermark');
    await complete(byWindow.get(0)!);
    assert.equal(await mark(), '2026-11-01T01:00:00.000Z');
    const l1 = byWindow.get(1)!;
    await plane.ledger.fail([{ tenantId: TENANT, jobId: l1.jobId, leaseId: l1.leaseId, error: { class: 'Boom', message: 'no', retryable: false } }], null);
    assert.equal(await mark(), '2026-11-01T01:00:00.000Z', 'a failed window holds the watermark');
    assert.equal((await api('GET', `/backfills/${id}`)).body.state, 'done');
    await api('POST', `/backfills/${id}/retry`);
    const rerun = await eventually(async () => {
      const x = await leases('bf-mark');
      return x.length > 0 && x;
    }, 10_000, 'window 1 again');
    assert.equal(rerun[0]!.idempotencyKey, `backfill:${id}:1:run2`);
    await complete(rerun[0]!);
    assert.equal(await mark(), '2026-11-01T04:00:00.000Z', 'window 1 done: the watermark jumps over 2 and 3');
    // a later backfill over the same range, with windows not yet done, leaves the tenant's watermark where it was
    const again = (await api('POST', '/backfills', { body: spec('bf-mark', 2, { reprocess: 'all' }) })).body.id;
    await eventually(async () => (await windowsOf(again))[0]!.state === 'running', 10_000, 'the rerun starts');
    await settled();
    assert.equal((await api('GET', '/watermarks?jobType=bf-mark')).body.watermarks[0].watermark, '2026-11-01T04:00:00.000Z');
    await api('POST', `/backfills/${again}/cancel`);
  });
});

describe('bad input', () => {
  test('each is a 400 naming its field; state conflicts are 409; another tenant sees nothing', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [spec('bf-bad', 2, { windowMs: 0 }), 'windowMs'],
      [spec('bf-bad', 2, { to: '2026-10-01T00:00:00Z' }), 'to'],
      [spec('bf-bad', 2, { from: '2026-11-01T00:00:00Z', to: '2027-11-01T00:00:00Z', windowMs: 60_000 }), 'windowMs'],
      [spec('bf-bad', 2, { payload: { at: '{{tick}}' } }), 'payload'],
      [spec('bf-bad', 2, { payload: { at: 'from {{windowStrat}}' } }), 'payload'],
      [spec('bf-bad', 2, { concurrency: 0 }), 'concurrency'],
      [spec('bf-bad', 2, { reprocess: 'some' }), 'reprocess'],
      [spec('bf-bad', 2, { from: 'last tuesday' }), 'from'],
    ];
    for (const [body, field] of cases) {
      for (const path of ['/backfills', '/backfills/plan']) {
        const r = await api('POST', path, { body });
        assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.field, field, `${JSON.stringify(body)}: ${r.body.error.message}`);
      }
    }
    const noTicket = await api('POST', '/backfills', { body: spec('bf-bad', 2), ticket: '' });
    assert.deepEqual([noTicket.status, noTicket.body.error.code], [400, 'ticket_required']);
    assert.equal((await api('GET', '/backfills?state=running')).body.backfills.filter((b: { jobType: string }) => b.jobType === 'bf-bad').length, 0, 'nothing stored');
    assert.equal((await api('GET', '/backfills/not-a-uuid')).status, 400);
    assert.equal((await api('GET', '/backfills/00000000-0000-4000-8000-000000000000')).status, 404);
    const mine = (await api('POST', '/backfills', { body: spec('bf-private', 1) })).body.id;
    assert.equal((await api('GET', `/backfills/${mine}`, { tenant: 'other-tenant' })).status, 404);
    assert.equal((await api('POST', `/backfills/${mine}/cancel`, { tenant: 'other-tenant' })).status, 404);
    assert.deepEqual((await api('GET', '/backfills', { tenant: 'other-tenant' })).body.backfills, []);
    assert.deepEqual((await api('GET', '/watermarks', { tenant: 'other-tenant' })).body.watermarks, []);
    const cli = await runCli(['--api-url', plane.url, '--tenant', TENANT, 'backfill', 'create', 'bf-bad', '--from', '2026-11-01T00:00:00Z', '--to', '2026-11-02T00:00:00Z', '--window', '1h', '--reason', 'no ticket']);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /--ticket/);
  });
});

test('kill -9 of the server mid-backfill: after a restart every window ran exactly once and the watermark reached the end', async () => {
  const own = await createTestDatabase();
  cleanups.push(() => own.drop());
  const env = { ORCH_DATABASE_URL: own.url, ORCH_HTTP_PORT: String(await freePort()), ORCH_BACKFILL_RUNNER_INTERVAL_MS: '20', ORCH_LEASE_REAPER_INTERVAL_MS: '200' };
  const first = await spawnServer(env);
  cleanups.push(() => kill(first.child, 'SIGKILL'));
  const client = httpClient(() => first.url, '/api/v1/orchestrator', { tenant: TENANT, reason: 'kill -9', ticket: 'OPS-9' });
  const windows = 60;
  const id: string = (await client('POST', '/backfills', { body: spec('bf-kill', windows, { concurrency: 4 }) })).body.id;
  const ran = new Map<string, number>();
  const worker = await createWorker({
    apiUrl: first.url, tenant: TENANT, jobTypes: ['bf-kill'], concurrency: 4, waitMs: 500, handleSignals: false, log: createLogger('silent'),
    handler: async (j) => {
      ran.set(j.idempotencyKey, (ran.get(j.idempotencyKey) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 20));
      return { ok: true };
    },
  });
  cleanups.push(() => worker.stop());
  const marks: (string | null)[] = [];
  const watch = setInterval(() => {
    void own.pool.query<{ watermark: Date | null }>('SELECT watermark FROM orch.backfills WHERE id = $1', [id])
      .then((r) => marks.push(r.rows[0]?.watermark?.toISOString() ?? null), () => undefined);
  }, 50);
  cleanups.push(async () => clearInterval(watch));
  await eventually(async () => ran.size >= 15, 30_000, 'windows running before the kill');
  await kill(first.child, 'SIGKILL');
  assert.ok(ran.size < windows, 'the server died mid-backfill');
  const second = await spawnServer(env);
  cleanups.push(() => kill(second.child, 'SIGKILL'));
  await eventually(async () => (await own.pool.query(`SELECT state FROM orch.backfills WHERE id = $1`, [id])).rows[0].state === 'done', 90_000, 'done after the restart');
  clearInterval(watch);
  await worker.stop();
  const { rows } = await own.pool.query<{ seq: number; state: string; runs: number }>('SELECT seq, state, runs FROM orch.windows WHERE owner_id = $1 ORDER BY seq', [id]);
  assert.equal(rows.length, windows);
  assert.ok(rows.every((w) => w.state === 'succeeded' && w.runs === 1), 'every window succeeded with one job');
  const { rows: jobs } = await own.pool.query<{ n: number; keys: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT idempotency_key)::int AS keys FROM orch.jobs WHERE job_type = 'bf-kill'`);
  assert.deepEqual(jobs[0], { n: windows, keys: windows }, 'one job per window, none lost or doubled');
  assert.equal(ran.size, windows);
  const nonNull = marks.filter((m): m is string => m !== null);
  assert.ok(nonNull.every((m, i) => i === 0 || m >= nonNull[i - 1]!), 'the watermark never went back');
  const final = (await own.pool.query<{ watermark: Date }>('SELECT watermark FROM orch.backfills WHERE id = $1', [id])).rows[0]!.watermark.toISOString();
  assert.ok(nonNull.every((m) => m <= final), 'no sample past the final watermark');
  assert.equal(final, new Date(Date.parse('2026-11-01T00:00:00Z') + windows * HOUR).toISOString());
  await kill(second.child, 'SIGTERM');
});
