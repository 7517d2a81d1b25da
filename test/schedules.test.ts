import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config/config.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { nextTick, type Recurrence } from '../src/schedules/cron.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { createLogger } from '../src/logging.ts';
import { sample } from '../src/metrics/exposition.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { httpClient } from './helpers/http.ts';
import { alive, kill } from './helpers/processes.ts';
import { TcpProxy } from './helpers/tcp-proxy.ts';
import { eventually, REPO_ROOT, runCli, spawnServer, startTestServer } from './helpers/server.ts';

/**
 * Schedules: one job per tick, exactly once across replicas, restarts and
 * kill -9; the catch-up policies; daylight-saving days in real zones; bad
 * definitions refused with the field named.
 */

const TENANT = 'sched';
const GRACE_MS = 2000;
let db: TestDatabase;
let plane: ControlPlane;
const cleanups: (() => Promise<unknown>)[] = [];
const api = httpClient(() => plane.url, '/api/v1/orchestrator', { tenant: TENANT, reason: 'schedule test' });

before(async () => {
  db = await createTestDatabase();
  const base = loadConfig({ ORCH_LEASE_GRACE_MS: '0' });
  plane = await startTestServer(db.url, { maintenance: { ...base.maintenance, scheduleGraceMs: GRACE_MS } });
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await plane?.stop();
  await db?.drop();
});

/** The tick time each job of the schedule was made for (from its idempotency key), oldest first; the pool may be any database's. */
async function tickJobs(pool: TestDatabase['pool'], scheduleId: string): Promise<{ tick: number; id: string; payload: Record<string, unknown> }[]> {
  const { rows } = await pool.query<{ id: string; idempotency_key: string; payload: Record<string, unknown> }>(
    `SELECT id::text, idempotency_key, payload FROM orch.jobs WHERE idempotency_key LIKE $1 ORDER BY id`, [`schedule:${scheduleId}:2%`]);
  return rows.map((r) => ({ id: r.id, payload: r.payload, tick: Date.parse(r.idempotency_key.slice(`schedule:${scheduleId}:`.length)) }));
}

/** Every tick of a 1-second schedule from the first to the last has exactly one job: none doubled, none lost. */
function assertContiguous(ticks: number[], everyMs: number): void {
  assert.ok(ticks.length >= 2, `at least two ticks (got ${ticks.length})`);
  assert.equal(new Set(ticks).size, ticks.length, 'no tick has two jobs');
  const sorted = [...ticks].sort((a, b) => a - b);
  sorted.forEach((t, i) => {
    if (i > 0) assert.equal(t - sorted[i - 1]!, everyMs, `no tick lost between ${new Date(sorted[i - 1]!).toISOString()} and ${new Date(t).toISOString()}`);
  });
}

async function tickedEvents(pool: TestDatabase['pool'], scheduleId: string): Promise<{ tick: string; lagMs: number; jobId: string }[]> {
  const { rows } = await pool.query<{ e: { jobId: string; data: { tick: string; lagMs: number; scheduleId: string } } }>(
    `SELECT e FROM orch.outbox, jsonb_array_elements(events) AS e WHERE events IS NOT NULL AND e->>'type' = 'schedule.ticked' AND e->'data'->>'scheduleId' = $1`, [scheduleId]);
  return rows.map((r) => ({ tick: r.e.data.tick, lagMs: r.e.data.lagMs, jobId: r.e.jobId }));
}

describe('ticks', () => {
  test('each tick enqueues one job within a second of its time, with its window, its history cause and its event', async () => {
    const created = await api('POST', '/schedules', {
      body: { name: 'every-second', jobType: 'report', everyMs: 1000, payload: { from: '{{windowStart}}', to: '{{windowEnd}}', label: 'tick {{windowIndex}} of {{scheduleName}}' } },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id: string = created.body.id;
    const s = await eventually(async () => {
      const r = await api('GET', '/schedules/every-second');
      return r.body.ticks >= 4 && r.body;
    }, 20_000, 'four ticks');
    const jobs = await tickJobs(db.pool, id);
    assert.ok(jobs.length >= s.ticks);
    assertContiguous(jobs.map((j) => j.tick), 1000);
    // each job covers the span since the previous tick: the windows chain without a gap
    for (let i = 1; i < jobs.length; i++) {
      assert.equal(jobs[i]!.payload.from, jobs[i - 1]!.payload.to);
      assert.equal(Date.parse(jobs[i]!.payload.to as string), jobs[i]!.tick);
    }
    assert.match(jobs[1]!.payload.label as string, /^tick 1 of every-second$/);
    const { rows: causes } = await db.pool.query<{ cause: string; actor: string }>(
      `SELECT DISTINCT t.cause, t.actor FROM orch.job_transitions t WHERE t.tenant_id = $1 AND t.job_ids && $2::bigint[] AND t.from_states[1] IS NULL`,
      [TENANT, jobs.map((j) => j.id)]);
    assert.deepEqual(causes, [{ cause: 'scheduled', actor: 'system:scheduler' }]);
    const events = await eventually(async () => {
      const e = await tickedEvents(db.pool, id);
      return e.length >= jobs.length && e;
    }, 10_000, 'tick events');
    assert.deepEqual(new Set(events.map((e) => e.jobId)).size, events.length, 'one event per tick');
    const lags = events.map((e) => e.lagMs).sort((a, b) => a - b);
    assert.ok(lags[Math.floor(lags.length / 2)]! < 1000, `ticks fire within a second of their time (lags ${lags.join(', ')} ms)`);
    const metrics = await (await fetch(`${plane.url}/metrics`)).text();
    assert.ok((sample(metrics, 'orchestrator_schedule_tick_lag_seconds_count', { tenant: TENANT, schedule: 'every-second' }) ?? 0) >= 4);
    assert.equal(sample(metrics, 'orchestrator_schedule_missed_ticks_total', { tenant: TENANT, schedule: 'every-second' }), 0);
    assert.equal((await api('POST', '/schedules/every-second/pause')).status, 200);
  });

  test('pause stops the ticks, resume starts from the next tick after now, trigger runs once, delete removes it', async () => {
    await api('POST', '/schedules', { body: { name: 'steered', jobType: 'report', everyMs: 1000 } });
    const paused = await api('POST', '/schedules/steered/pause');
    assert.equal(paused.body.enabled, false);
    const ticksAtPause: number = paused.body.ticks;
    await new Promise((r) => setTimeout(r, 1500));
    const later = await api('GET', '/schedules/steered');
    assert.equal(later.body.ticks, ticksAtPause, 'no tick while paused');
    assert.equal(later.body.missedTicks, 0, 'ticks passed while paused are not missed');
    const triggered = await api('POST', '/schedules/steered/trigger');
    assert.equal(triggered.status, 200);
    const job = await api('GET', `/jobs/${triggered.body.jobId}`);
    assert.equal(job.body.job.jobType, 'report');
    const resumed = await api('POST', '/schedules/steered/resume');
    assert.ok(Date.parse(resumed.body.nextTickAt) > Date.parse(later.body.updatedAt));
    await eventually(async () => (await api('GET', '/schedules/steered')).body.ticks > ticksAtPause, 10_000, 'ticks again');
    // enabling a paused schedule through an update is a resume: the ticks that passed are not fired late nor missed
    await api('POST', '/schedules/steered/pause');
    await new Promise((r) => setTimeout(r, 1200));
    const enabled = await api('PATCH', '/schedules/steered', { body: { enabled: true } });
    assert.ok(Date.parse(enabled.body.nextTickAt) > Date.parse(enabled.body.updatedAt), 'next tick after now');
    assert.equal(enabled.body.missedTicks, 0);
    assert.equal((await api('DELETE', '/schedules/steered')).status, 200);
    const { rows: changes } = await db.pool.query(
      `SELECT e->'data'->>'action' AS action FROM orch.outbox, jsonb_array_elements(events) e WHERE e->>'type' = 'schedule.changed' AND e->>'target' = 'schedule:steered'`);
    assert.deepEqual(new Set(changes.map((c) => c.action)), new Set(['schedule.create', 'schedule.pause', 'schedule.trigger', 'schedule.resume', 'schedule.update', 'schedule.delete']));
    assert.equal((await api('GET', '/schedules/steered')).status, 404);
    const audit = await api('GET', '/audit?action=schedule.trigger');
    assert.equal(audit.body.entries[0].target, 'schedule:steered');
  });
});

test('the scheduler wakes up for the next tick: with a one-minute scan interval, a one-second schedule still ticks every second', async () => {
  const own = await createTestDatabase();
  cleanups.push(() => own.drop());
  const base = loadConfig({ ORCH_LEASE_GRACE_MS: '0' });
  const slow = await startTestServer(own.url, { maintenance: { ...base.maintenance, schedulerIntervalMs: 60_000 } });
  cleanups.push(() => slow.stop());
  const client = httpClient(() => slow.url, '/api/v1/orchestrator', { tenant: TENANT, reason: 'wake-up' });
  const r = await client('POST', '/schedules', { body: { name: 'wakes', jobType: 'report', everyMs: 1000 } });
  assert.equal(r.status, 201);
  // the create nudges the scheduler, whose run finds nothing due yet: only its wake-up for each next tick fires these
  await eventually(async () => (await tickJobs(own.pool, r.body.id)).length >= 3, 15_000, 'three ticks well within the scan interval');
  assertContiguous((await tickJobs(own.pool, r.body.id)).map((j) => j.tick), 1000);
  await slow.stop();
});

describe('catch-up after ticks were missed', () => {
  test('skip fires none of the late ticks, latest one, all at most catchUpMax; the rest are counted missed', async () => {
    const startsAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000).toISOString();
    for (const [name, catchUp] of [['cu-skip', 'skip'], ['cu-latest', 'latest'], ['cu-all', 'all']] as const) {
      const r = await api('POST', '/schedules', { body: { name, jobType: 'catchup', everyMs: 1000, startsAt, catchUp, catchUpMax: 3, enabled: false } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    // as if no server had run for 20 s: the next tick is 20 s in the past
    const { rows } = await db.pool.query<{ id: string; name: string; t0: Date }>(
      `UPDATE orch.schedules SET enabled = true, next_tick_at = date_trunc('second', now()) - interval '20 seconds'
       WHERE tenant_id = $1 AND name LIKE 'cu-%' RETURNING id, name, next_tick_at AS t0`, [TENANT]);
    const expectLate = { 'cu-skip': 0, 'cu-latest': 1, 'cu-all': 3 } as Record<string, number>;
    for (const r of rows) {
      const events = await eventually(async () => {
        const e = await tickedEvents(db.pool, r.id);
        return e.length >= 1 && e;
      }, 15_000, `${r.name} ticks`);
      const late = events.filter((e) => e.lagMs > GRACE_MS);
      assert.equal(late.length, expectLate[r.name], `${r.name}: late ticks fired`);
      const { rows: [s] } = await db.pool.query<{ ticks: string; missed_ticks: string; next_tick_at: Date }>(
        'SELECT ticks, missed_ticks, next_tick_at FROM orch.schedules WHERE id = $1', [r.id]);
      // every tick from the first due one up to the next is either fired or counted missed
      assert.equal(Number(s!.ticks) + Number(s!.missed_ticks), (s!.next_tick_at.getTime() - r.t0.getTime()) / 1000, `${r.name}: fired + missed = ticks passed`);
      assert.ok(Number(s!.missed_ticks) >= 20 - GRACE_MS / 1000 - expectLate[r.name]! - 1, `${r.name}: missed ${s!.missed_ticks}`);
      assertContiguous((await tickJobs(db.pool, r.id)).filter((j) => !late.some((l) => Date.parse(l.tick) === j.tick)).map((j) => j.tick), 1000);
    }
    const metrics = await (await fetch(`${plane.url}/metrics`)).text();
    assert.ok(sample(metrics, 'orchestrator_schedule_missed_ticks_total', { tenant: TENANT, schedule: 'cu-skip' })! >= 16);
    await db.pool.query(`UPDATE orch.schedules SET enabled = false WHERE tenant_id = $1 AND name LIKE 'cu-%'`, [TENANT]);
  });
});

describe('time zones', () => {
  const daily = (cron: string, timeZone: string): Recurrence => ({ cron, everyMs: null, timeZone, anchor: new Date(0), endsAt: null });
  const ticks = (r: Recurrence, from: string, n: number) => {
    const out: string[] = [];
    for (let t = Date.parse(from), i = 0; i < n; i++) out.push(new Date((t = nextTick(r, t)!)).toISOString());
    return out;
  };

  test('a wall time the spring-forward gap skips fires once, at the end of the gap', () => {
    // Europe/Berlin jumps from 02:00 to 03:00 CEST on 2026-03-29: 02:30 fires at 03:00 CEST (01:00Z)
    assert.deepEqual(ticks(daily('30 2 * * *', 'Europe/Berlin'), '2026-03-27T12:00:00Z', 3),
      ['2026-03-28T01:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z']);
    // New York jumps on 2026-03-08: 02:30 EST does not exist; 03:00 EDT is 07:00Z
    assert.deepEqual(ticks(daily('30 2 * * *', 'America/New_York'), '2026-03-07T12:00:00Z', 2), ['2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z']);
    // hourly: the hour that does not exist fires once, nothing fires twice
    assert.deepEqual(ticks(daily('0 * * * *', 'Europe/Berlin'), '2026-03-28T23:30:00Z', 3),
      ['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z']);
  });

  test('a wall time the fall-back hour repeats fires once, the first time', () => {
    // Europe/Berlin: 02:00-03:00 happens twice on 2026-10-25 (CEST, then CET)
    assert.deepEqual(ticks(daily('30 2 * * *', 'Europe/Berlin'), '2026-10-24T12:00:00Z', 2), ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
    assert.deepEqual(ticks(daily('*/30 * * * *', 'Europe/Berlin'), '2026-10-24T23:45:00Z', 4),
      ['2026-10-25T00:00:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T02:30:00.000Z']);
  });

  test('a schedule in a zone reports its next tick by those rules, from the database clock', async () => {
    const r = await api('POST', '/schedules', {
      body: { name: 'berlin-0230', jobType: 'report', cron: '30 2 * * *', timeZone: 'Europe/Berlin', startsAt: '2027-03-27T12:00:00Z' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    // 2027-03-28 is Berlin's spring-forward day: 02:30 does not exist and fires at 03:00 CEST
    assert.equal(r.body.nextTickAt, '2027-03-28T01:00:00.000Z');
    const six = await api('POST', '/schedules', { body: { name: 'six-fields', jobType: 'report', cron: '*/15 * * * * *', enabled: false } });
    assert.equal(six.status, 201, 'a seconds field is accepted');
    assert.equal(Date.parse(six.body.nextTickAt) % 15_000, 0);
  });
});

describe('bad definitions', () => {
  test('each is a 400 naming its field, a duplicate name a 409, and none is stored', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ cron: '61 * * * *' }, 'cron'],
      [{ cron: '* * *' }, 'cron'],
      [{ cron: '0 0 31 2 *' }, 'cron'],
      [{ cron: '* * * * *', timeZone: 'Mars/Olympus' }, 'timeZone'],
      [{ cron: '* * * * *', everyMs: 1000 }, 'cron'],
      [{}, 'cron'],
      [{ everyMs: 10 }, 'everyMs'],
      [{ cron: '* * * * *', startsAt: '2027-01-02T00:00:00Z', endsAt: '2027-01-01T00:00:00Z' }, 'endsAt'],
      [{ cron: '* * * * *', payload: { at: '{{windowStrat}}' } }, 'payload'],
      [{ cron: '* * * * *', payload: { at: '{{backfillId}}' } }, 'payload'],
      [{ cron: '* * * * *', catchUp: 'sometimes' }, 'catchUp'],
      [{ cron: '* * * * *', startsAt: 'yesterday' }, 'startsAt'],
    ];
    for (const [body, field] of cases) {
      const r = await api('POST', '/schedules', { body: { name: 'bad', jobType: 'report', ...body } });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.field, field, `${JSON.stringify(body)}: ${r.body.error.message}`);
    }
    assert.equal((await api('GET', '/schedules/bad')).status, 404);
    assert.equal((await api('POST', '/schedules', { body: { name: 'twice', jobType: 'report', cron: '0 0 * * *' } })).status, 201);
    assert.equal((await api('POST', '/schedules', { body: { name: 'twice', jobType: 'report', cron: '0 1 * * *' } })).status, 409);
    assert.equal((await api('POST', '/schedules', { body: { name: 'noreason', jobType: 'report', cron: '0 0 * * *' }, reason: '' })).status, 400);
    // another tenant sees none of them
    const other = await api('GET', '/schedules', { tenant: 'someone-else' });
    assert.deepEqual(other.body.schedules, []);
    assert.equal((await api('GET', '/schedules/twice', { tenant: 'someone-else' })).status, 404);
  });

  test('the CLI creates and lists a schedule, and says what is wrong in one line', async () => {
    const orch = (...args: string[]) => runCli(['--api-url', plane.url, '--tenant', TENANT, ...args]);
    const ok = await orch('schedules', 'create', 'cli-daily', 'report', '--cron', '0 6 * * *', '--tz', 'Europe/Paris', '--catch-up', 'skip', '--reason', 'cli test', '--paused');
    assert.equal(ok.code, 0, ok.stderr);
    const list = await orch('--output', 'json', 'schedules', 'list');
    const found = (JSON.parse(list.stdout) as { name: string; timeZone: string; catchUp: string }[]).find((s) => s.name === 'cli-daily');
    assert.deepEqual([found?.timeZone, found?.catchUp], ['Europe/Paris', 'skip']);
    const bad = await orch('schedules', 'create', 'cli-bad', 'report', '--cron', '0 25 * * *', '--reason', 'cli test');
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /cron/);
  });
});

describe('exactly once across replicas and restarts', () => {
  test('two replicas, the leader stops, a third starts: every tick has exactly one job', async () => {
    const own = await createTestDatabase();
    cleanups.push(() => own.drop());
    const planes = [await startTestServer(own.url), await startTestServer(own.url)];
    cleanups.push(() => Promise.all(planes.map((p) => p.stop())));
    const client = httpClient(() => planes[1]!.url, '/api/v1/orchestrator', { tenant: TENANT, reason: 'replicas' });
    const r = await client('POST', '/schedules', { body: { name: 'replicated', jobType: 'report', everyMs: 1000 } });
    assert.equal(r.status, 201);
    const ticksAfter = async (n: number) => eventually(async () => (await tickJobs(own.pool, r.body.id)).length >= n, 30_000, `${n} ticks`);
    await ticksAfter(3);
    const leader = planes.find((p) => p.elector.term !== null)!;
    await leader.stop();
    const before = (await tickJobs(own.pool, r.body.id)).length;
    await ticksAfter(before + 3);
    planes.push(await startTestServer(own.url));
    const next = await eventually(async () => planes.find((p) => p !== leader && p.elector.term !== null), 10_000, 'a new leader');
    await next.stop();
    const before2 = (await tickJobs(own.pool, r.body.id)).length;
    await ticksAfter(before2 + 3);
    assertContiguous((await tickJobs(own.pool, r.body.id)).map((j) => j.tick), 1000);
  });

  test('kill -9 of the server while it ticks: after a restart no tick is lost or doubled', async () => {
    const own = await createTestDatabase();
    cleanups.push(() => own.drop());
    const env = { ORCH_DATABASE_URL: own.url, ORCH_HTTP_PORT: String(await freePort()), ORCH_SCHEDULER_INTERVAL_MS: '20' };
    const first = await spawnServer(env);
    cleanups.push(() => kill(first.child, 'SIGKILL'));
    const client = httpClient(() => first.url, '/api/v1/orchestrator', { tenant: TENANT, reason: 'kill -9' });
    const r = await client('POST', '/schedules', { body: { name: 'killed', jobType: 'report', everyMs: 1000 } });
    assert.equal(r.status, 201);
    await eventually(async () => (await tickJobs(own.pool, r.body.id)).length >= 2, 30_000, 'ticks before the kill');
    await kill(first.child, 'SIGKILL');
    // the ticks due while no server runs are within the grace (60 s): the next server fires them late
    await new Promise((res) => setTimeout(res, 2500));
    const second = await spawnServer(env);
    cleanups.push(() => kill(second.child, 'SIGKILL'));
    const before = (await tickJobs(own.pool, r.body.id)).length;
    await eventually(async () => (await tickJobs(own.pool, r.body.id)).length >= before + 4, 30_000, 'ticks after the restart');
    assertContiguous((await tickJobs(own.pool, r.body.id)).map((j) => j.tick), 1000);
    const { rows } = await own.pool.query<{ ticks: string; missed_ticks: string }>('SELECT ticks, missed_ticks FROM orch.schedules WHERE id = $1', [r.body.id]);
    assert.equal(rows[0]!.missed_ticks, '0');
    await kill(second.child, 'SIGTERM');
  });
});

test('a database outage: schedule routes answer 503, the server survives, and after it every tick has exactly one job', async () => {
  const own = await createTestDatabase();
  cleanups.push(() => own.drop());
  const { proxy, url: viaProxy } = await TcpProxy.inFrontOf(own.url);
  cleanups.push(() => proxy.close());
  const server = await spawnServer({ ORCH_DATABASE_URL: viaProxy, ORCH_HTTP_PORT: String(await freePort()) });
  cleanups.push(() => kill(server.child, 'SIGKILL'));
  const client = httpClient(() => server.url, '/api/v1/orchestrator', { tenant: TENANT, reason: 'outage' });
  const r = await client('POST', '/schedules', { body: { name: 'through-outage', jobType: 'report', everyMs: 1000 } });
  assert.equal(r.status, 201);
  await eventually(async () => (await tickJobs(own.pool, r.body.id)).length >= 2, 30_000, 'ticks before the outage');
  await proxy.cut();
  const during = await eventually(async () => {
    const x = await client('GET', '/schedules/through-outage');
    return x.status === 503 && x;
  }, 15_000, 'a 503 while the database is away');
  assert.equal(during.headers.get('retry-after'), '2');
  await new Promise((res) => setTimeout(res, 3000));
  assert.ok(alive(server.child), 'the server survives the outage');
  await proxy.restore();
  const before = (await tickJobs(own.pool, r.body.id)).length;
  await eventually(async () => (await tickJobs(own.pool, r.body.id)).length >= before + 5, 30_000, 'ticks after the outage');
  assertContiguous((await tickJobs(own.pool, r.body.id)).map((j) => j.tick), 1000);
  assert.equal((await client('GET', '/schedules/through-outage')).body.missedTicks, 0, 'the ticks due during the outage fired late, within the grace');
  await kill(server.child, 'SIGTERM');
});

test('a scheduled job runs on a worker like any other', async () => {
  await api('POST', '/schedules', { body: { name: 'worked', jobType: 'scheduled-work', everyMs: 1000, payload: { to: '{{windowEnd}}' } } });
  const seen: string[] = [];
  const worker = await createWorker<{ to: string }>({
    apiUrl: plane.url, tenant: TENANT, jobTypes: ['scheduled-work'], concurrency: 2, waitMs: 500, handleSignals: false, log: createLogger('silent'),
    handler: async (j) => {
      seen.push(j.payload.to);
      return { ok: true };
    },
  });
  cleanups.push(() => worker.stop());
  await eventually(async () => seen.length >= 2, 15_000, 'two scheduled jobs run');
  await worker.stop();
  const s = await eventually(async () => {
    const r = await api('GET', '/schedules/worked');
    return r.body.watermark && r.body;
  }, 10_000, 'the schedule\'s watermark');
  assert.ok(seen.includes(s.watermark), 'the watermark is the end of a window that succeeded');
  await api('POST', '/schedules/worked/pause');
});

test('the shipped example (examples/probe-schedule): the daily probe schedule runs the probe worker, which writes status.txt', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'orch-probe-schedule-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'status.txt');
  const created = await api('POST', '/schedules', { body: { name: 'daily-probe', jobType: 'orch-probe', cron: '0 6 * * *', timeZone: 'UTC', payload: { tick: '{{tick}}' } } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.nextTickAt, /T06:00:00\.000Z$/);
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/probe-schedule/worker.ts', '--out', out, '--timeout', '3s'], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ORCH_API_URL: plane.url, ORCH_TENANT: TENANT, ORCH_DATABASE_URL: '', ORCH_MONGO_URL: '', ORCH_NATS_URL: '' },
  });
  cleanups.push(() => kill(child, 'SIGKILL'));
  const { jobId } = (await api('POST', '/schedules/daily-probe/trigger')).body;
  const job = await eventually(async () => {
    const r = await api('GET', `/jobs/${jobId}`);
    return r.body.job.state === 'succeeded' && r.body.job;
  }, 30_000, 'the probe job succeeded');
  assert.equal(job.result.ok, true, JSON.stringify(job.result));
  assert.equal(job.result.tick, job.payload.tick);
  assert.match(await readFile(out, 'utf8'), /^orchestrator\s+ok\b/m);
  await kill(child, 'SIGTERM');
});
