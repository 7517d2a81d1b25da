import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { defaultConfig } from '../src/config/config.ts';
import { OrchApiError, OrchClient, type ControlPlane } from '../src/index.ts';
import { ALERT_NAMES, type AlertHealth, type AlertReport } from '../src/metrics/alert-conditions.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, startTestServer } from './helpers/server.ts';

/**
 * GET /alerts and GET /stats/throughput: each alert condition of alerts.yaml
 * made true for a tenant with real jobs (failures, dead letters, an old
 * heartbeat, an old run_after, a quota with no room, a full backlog) and
 * seen firing with its labels and value, while it stays ok for the others.
 */

const MAX_QUEUED = 30;
const LONG_LEASE_MS = 600_000;

let db: TestDatabase;
let plane: ControlPlane;

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url, {
    maxQueuedPerTenant: MAX_QUEUED,
    // no worker is ever marked lost, so a backdated heartbeat stays a held lease
    workerLostAfterMs: 600_000,
    maintenance: { ...defaultConfig.maintenance, leaseGraceMs: 0 },
  });
});

after(async () => {
  await plane?.stop();
  await db?.drop();
});

const client = (tenant: string) => new OrchClient({ apiUrl: plane.url, tenant });
const alertOf = (r: AlertReport, name: string): AlertHealth => {
  const a = r.alerts.find((x) => x.alert === name);
  assert.ok(a, `${name} is reported`);
  return a;
};
const firingLabels = (r: AlertReport, name: string): Record<string, string>[] => alertOf(r, name).firing.map((f) => ({ severity: f.severity, ...f.labels }));

/**
 * Enqueues n jobs of `type`, claims them and fails each attempt with `errorClass` (one attempt
 * each: they dead-letter), in batches under the backlog limit.
 */
async function failJobs(tenant: string, type: string, n: number, errorClass: string): Promise<void> {
  await plane.ledger.jobTypes.define(type, { maxAttempts: 1, leaseMs: LONG_LEASE_MS });
  for (let done = 0; done < n; done += MAX_QUEUED) {
    const size = Math.min(MAX_QUEUED, n - done);
    await plane.ledger.enqueue(Array.from({ length: size }, (_, i) => ({ tenantId: tenant, jobType: type, payload: { i } })));
    const leases = await plane.ledger.claim({ workerId: `w-${type}`, jobTypes: [type], limit: size, tenantIds: [tenant] });
    assert.equal(leases.length, size);
    await plane.ledger.fail(leases.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId, error: { class: errorClass, message: 'bad payload' } })), 'test');
  }
}

/** Enqueues a job that became runnable `minutes` ago. */
async function waitingSince(tenant: string, type: string, minutes: number): Promise<void> {
  await plane.ledger.enqueue([{ tenantId: tenant, jobType: type, payload: {}, runAfter: new Date(Date.now() - minutes * 60_000) }]);
}

describe('GET /alerts', () => {
  test('every alert of alerts.yaml is reported, ok for a quiet tenant, with its rules', async () => {
    const yaml = parse(await readFile(new URL('../ops/devops/orchestrator/alerts.yaml', import.meta.url), 'utf8')) as { groups: { rules: { alert?: string }[] }[] };
    const inYaml = new Set(yaml.groups.flatMap((g) => g.rules).flatMap((r) => (r.alert ? [r.alert] : [])));
    assert.deepEqual([...ALERT_NAMES].sort(), [...inYaml].sort());
    // the test server leads once its election ran
    const r = await eventually(async () => {
      const got = await client('al-quiet').alerts();
      return got.cluster.leading ? got : null;
    }, 10_000, 'the server to lead');
    assert.equal(r.tenantId, 'al-quiet');
    assert.deepEqual(r.alerts.map((a) => a.alert), [...ALERT_NAMES]);
    assert.deepEqual(r.alerts.filter((a) => a.state !== 'ok').map((a) => a.alert), []);
    assert.deepEqual(alertOf(r, 'OrchestratorQueueDepthHigh').rules.map((x) => [x.severity, x.for]), [['warning', '5m'], ['critical', '5m']]);
    assert.deepEqual(alertOf(r, 'OrchestratorLeaseStall').labels, ['job_type']);
  });

  test('failures: FailuresHigh, the burn rate and the error cluster fire for the failing tenant and type only', async () => {
    await failJobs('al-fail', 'al_fail', 16, 'BadPayload');
    // 9 bad attempts: below FailuresHigh's 10, above the fast burn rate's 5
    await failJobs('al-few', 'al_few', 9, 'Timeoutish');
    const r = await client('al-fail').alerts();
    assert.deepEqual(firingLabels(r, 'OrchestratorFailuresHigh'), [{ severity: 'critical', tenant: 'al-fail', job_type: 'al_fail' }]);
    assert.equal(alertOf(r, 'OrchestratorFailuresHigh').firing[0]!.value, 1);
    assert.deepEqual(firingLabels(r, 'OrchestratorErrorCluster'), [{ severity: 'warning', job_type: 'al_fail', error_class: 'BadPayload' }]);
    assert.deepEqual(firingLabels(r, 'OrchestratorFailureBurnRateHigh'), [
      { severity: 'critical', job_type: 'al_fail', long_window: '1h', short_window: '5m' },
      { severity: 'warning', job_type: 'al_fail', long_window: '6h', short_window: '30m' },
    ]);
    // FailuresHigh mutes the burn rate, so one failing type is one critical: no dual critical
    assert.equal(alertOf(r, 'OrchestratorDualCritical').state, 'ok');
    assert.deepEqual(alertOf(r, 'OrchestratorCriticalPersistent').firing.map((f) => f.labels.critical_alert).sort(),
      ['OrchestratorFailureBurnRateHigh', 'OrchestratorFailuresHigh']);
    assert.deepEqual(r.jobTypes.find((g) => g.jobType === 'al_fail')?.deadLettered, 16);

    const few = await client('al-few').alerts();
    assert.equal(alertOf(few, 'OrchestratorFailuresHigh').state, 'ok', '9 bad attempts are under the 10 FailuresHigh needs');
    assert.equal(alertOf(few, 'OrchestratorErrorCluster').state, 'ok', '9 failures of a class are under one a minute over 15m');
    assert.deepEqual(firingLabels(few, 'OrchestratorFailureBurnRateHigh').map((f) => f.long_window), ['1h']);

    const quiet = await client('al-quiet').alerts();
    assert.deepEqual(quiet.alerts.filter((a) => a.state !== 'ok').map((a) => a.alert), [], 'another tenant\'s failures are not its');
  });

  test('DLQ depth over 100 fires DLQDepthHigh with the depth', async () => {
    await failJobs('al-dlq', 'al_dlq', 101, 'Gone');
    const r = await client('al-dlq').alerts();
    assert.deepEqual(alertOf(r, 'OrchestratorDLQDepthHigh').firing, [{ severity: 'warning', labels: { tenant: 'al-dlq', job_type: 'al_dlq' }, value: 101 }]);
  });

  test('a lease whose heartbeat is 400 s old fires LeaseStall for its job type', async () => {
    await plane.ledger.jobTypes.define('al_stall', { leaseMs: LONG_LEASE_MS });
    await plane.ledger.enqueue([{ tenantId: 'al-stall', jobType: 'al_stall', payload: {} }]);
    const [lease] = await plane.ledger.claim({ workerId: 'w-stall', jobTypes: ['al_stall'], limit: 1, tenantIds: ['al-stall'] });
    assert.ok(lease);
    let r = await client('al-stall').alerts();
    assert.equal(alertOf(r, 'OrchestratorLeaseStall').state, 'ok', 'a fresh lease');
    await db.pool.query(`UPDATE orch.jobs SET heartbeat_at = now() - interval '400 seconds', started_at = now() - interval '400 seconds' WHERE id = $1`, [lease.jobId]);
    r = await client('al-stall').alerts();
    const stall = alertOf(r, 'OrchestratorLeaseStall');
    assert.deepEqual(stall.firing.map((f) => f.labels), [{ job_type: 'al_stall' }]);
    assert.ok(stall.firing[0]!.value >= 400 && stall.firing[0]!.value < 500, `heartbeat age ${stall.firing[0]!.value}`);
    assert.deepEqual(r.jobTypes.find((g) => g.jobType === 'al_stall'), {
      jobType: 'al_stall', queued: 0, throttled: 0, paused: 0, leased: 1, waiting: 0, deadLettered: 0, oldestQueuedAgeSeconds: 0,
      leases: 1, oldestHeartbeatAgeSeconds: r.jobTypes.find((g) => g.jobType === 'al_stall')!.oldestHeartbeatAgeSeconds, workers: 1,
    });
  });

  test('an old runnable job fires QueueDepthHigh: warning over 15 min, critical over 1 h', async () => {
    await waitingSince('al-old', 'al_old_10m', 10);
    await waitingSince('al-old', 'al_old_20m', 20);
    await waitingSince('al-old', 'al_old_2h', 120);
    const r = await client('al-old').alerts();
    assert.deepEqual(firingLabels(r, 'OrchestratorQueueDepthHigh'), [
      { severity: 'warning', tenant: 'al-old', job_type: 'al_old_20m' },
      { severity: 'critical', tenant: 'al-old', job_type: 'al_old_2h' },
    ].sort((a, b) => a.job_type.localeCompare(b.job_type)));
    assert.ok(alertOf(r, 'OrchestratorQueueDepthHigh').firing.every((f) => f.value > 900));
  });

  test('a quota with no room holding an old job fires Backpressure (warning); a paused type does not', async () => {
    const why = { reason: 'alerts test', ticket: 'AL-1' };
    await waitingSince('al-bp', 'al_bp', 15);
    await waitingSince('al-bp', 'al_paused', 15);
    await client('al-bp').setQuota({ tenantId: 'al-bp', jobType: 'al_bp' }, { maxActive: 0 }, why);
    await client('al-bp').setDispatch('pause', { jobType: 'al_paused', tenantId: 'al-bp' }, why.reason, why.ticket);
    const r = await client('al-bp').alerts();
    assert.deepEqual(firingLabels(r, 'OrchestratorBackpressure'), [{ severity: 'warning', tenant: 'al-bp', job_type: 'al_bp' }]);
    assert.equal(alertOf(r, 'OrchestratorQueueDepthHigh').state, 'ok', 'throttled and paused work is not a stalled queue');
    assert.deepEqual(r.jobTypes.filter((g) => g.jobType.startsWith('al_')).map((g) => [g.jobType, g.throttled, g.paused]), [['al_bp', 1, 0], ['al_paused', 0, 1]]);
  });

  test('a tenant with ORCH_MAX_QUEUED_PER_TENANT jobs waiting fires Backpressure (critical, tenant only)', async () => {
    await plane.ledger.enqueue(Array.from({ length: MAX_QUEUED }, () => ({ tenantId: 'al-full', jobType: 'al_full', payload: {}, runAfter: new Date(Date.now() + 3_600_000) })));
    const r = await client('al-full').alerts();
    assert.deepEqual(alertOf(r, 'OrchestratorBackpressure').firing, [{ severity: 'critical', labels: { tenant: 'al-full' }, value: MAX_QUEUED }]);
  });
});

describe('GET /stats/throughput', () => {
  test('per job type and minute: outcomes from the history, waiting walked back from the counts', async () => {
    await plane.ledger.jobTypes.define('al_tp', { maxAttempts: 2, leaseMs: LONG_LEASE_MS });
    await plane.ledger.enqueue(Array.from({ length: 5 }, () => ({ tenantId: 'al-tp', jobType: 'al_tp', payload: {} })));
    const leases = await plane.ledger.claim({ workerId: 'w-tp', jobTypes: ['al_tp'], limit: 3, tenantIds: ['al-tp'] });
    await plane.ledger.complete(leases.slice(0, 2).map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId })), 'test');
    await plane.ledger.fail([{ tenantId: 'al-tp', jobId: leases[2]!.jobId, leaseId: leases[2]!.leaseId, error: { class: 'Flaky', message: 'once' } }], 'test');
    const r = await client('al-tp').throughput(5);
    assert.equal(r.times.length, 5);
    assert.deepEqual(r.jobTypes.map((t) => t.jobType), ['al_tp']);
    const s = r.jobTypes[0]!;
    const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    assert.deepEqual([total(s.succeeded), total(s.failed), total(s.deadLettered)], [2, 1, 0]);
    // 2 never claimed + 1 waiting for its retry, now; nothing before the jobs were enqueued
    assert.equal(s.waiting.at(-1), 3);
    assert.equal(s.waiting[0], 0, 'four minutes ago, before the jobs were enqueued');
  });

  test('bad minutes are a 400 naming the field', async () => {
    for (const minutes of [0, 361]) {
      const err = await client('al-tp').throughput(minutes).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof OrchApiError, String(err));
      assert.equal(err.status, 400);
      assert.match(err.field ?? '', /minutes/);
    }
  });
});
