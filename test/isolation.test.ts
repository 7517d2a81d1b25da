/**
 * Tenant isolation holes (issue 14, items 4-8 and 10): the worker registry
 * per tenant, tenant ids that cannot be split, row-level security on every
 * table holding a tenant's data, clean worker stops, and who an ack was.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import type { ControlPlane } from '../src/control-plane.ts';
import { asTenantReader } from '../src/auth/tenant-scope.ts';
import { SCOPES } from '../src/auth/principal.ts';
import { ApiTokens } from '../src/auth/tokens.ts';
import { defaultConfig } from '../src/config/config.ts';
import { leaseSamples } from '../src/recovery/leases.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { HttpTransport } from '../src/sdk/transport.ts';
import type { AckOutcome } from '../src/ledger/types.ts';
import { createLogger } from '../src/logging.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, runCli, startTestServer } from './helpers/server.ts';
import { httpRequest, type HttpOptions } from './helpers/http.ts';

const BASE = '/api/v1/orchestrator';
const JWT_SECRET = 'isolation-test-secret-at-least-32-chars!!';

let db: TestDatabase;
let open: ControlPlane;
let secured: ControlPlane;
let admin: string;

before(async () => {
  db = await createTestDatabase();
  open = await startTestServer(db.url);
  secured = await startTestServer(db.url, { auth: { mode: 'required', failedPerMinute: 100_000, jwtSecret: JWT_SECRET } });
  admin = (await new ApiTokens(db.pool).create({ subject: 'root', tenants: ['*'], scopes: [...SCOPES] }, 'test:bootstrap')).token;
});

after(async () => {
  await secured?.stop();
  await open?.stop();
  await db?.drop();
});

const call = (base: string, method: string, path: string, o: HttpOptions = {}) => httpRequest(`${base}${BASE}${path}`, method, o);

const claim = (tenant: string, workerId: string, jobTypes: string[], extra: Record<string, unknown> = {}) =>
  call(open.url, 'POST', '/claim', { tenant, body: { workerId, jobTypes, limit: 1, ...extra } });

describe('the worker registry belongs to tenants', () => {
  test('GET /workers shows the caller\'s tenant\'s workers only', async () => {
    assert.equal((await claim('iso-a', 'wa', ['iso_t'])).status, 200);
    assert.equal((await claim('iso-b', 'wb', ['iso_t'])).status, 200);
    const a = await call(open.url, 'GET', '/workers', { tenant: 'iso-a' });
    assert.equal(a.status, 200);
    const ids = a.body.workers.map((w: { workerId: string; tenantId: string }) => `${w.tenantId}/${w.workerId}`);
    assert.ok(ids.includes('iso-a/wa'));
    assert.ok(!ids.some((i: string) => i.startsWith('iso-b/')), `tenant a sees b's workers: ${ids}`);
  });

  test('a claim with a worker id another tenant uses leaves that tenant\'s record alone', async () => {
    assert.equal((await claim('iso-c', 'shared', ['c_type'], { host: 'c-host', version: '1.0' })).status, 200);
    const before = (await call(open.url, 'GET', '/workers', { tenant: 'iso-c' })).body.workers.find((w: { workerId: string }) => w.workerId === 'shared');
    assert.equal((await claim('iso-d', 'shared', ['d_type'], { host: 'd-host', version: '9.9' })).status, 200);
    const after = (await call(open.url, 'GET', '/workers', { tenant: 'iso-c' })).body.workers.find((w: { workerId: string }) => w.workerId === 'shared');
    assert.deepEqual([after.tenantId, after.host, after.version, after.jobTypes], ['iso-c', 'c-host', '1.0', ['c_type']]);
    assert.equal(after.firstSeen, before.firstSeen);
    const d = (await call(open.url, 'GET', '/workers', { tenant: 'iso-d' })).body.workers.find((w: { workerId: string }) => w.workerId === 'shared');
    assert.deepEqual([d.tenantId, d.host, d.jobTypes], ['iso-d', 'd-host', ['d_type']]);
  });

  test('an SDK worker that stops cleanly is "stopped", not "lost", and the reaper never marks it lost', async () => {
    await open.ledger.enqueue([{ tenantId: 'iso-s', jobType: 'stop_t', payload: {} }]);
    let ran = 0;
    const w = await createWorker({
      apiUrl: open.url, tenant: 'iso-s', workerId: 'stopper', jobTypes: ['stop_t'], handleSignals: false, waitMs: 500,
      handler: async () => void ran++,
    });
    await eventually(async () => ran === 1, 10_000, 'the job to run');
    await w.stop();
    const rec = (await call(open.url, 'GET', '/workers', { tenant: 'iso-s' })).body.workers.find((x: { workerId: string }) => x.workerId === 'stopper');
    assert.equal(rec.status, 'stopped');
    assert.ok(rec.stoppedAt);
    assert.equal(rec.inFlight, 0);
    const gauge = (await leaseSamples(db.pool)).find((x) => x.jobType === 'stop_t');
    assert.equal(gauge?.workers ?? 0, 0, 'orchestrator_workers_active does not count a stopped worker');
    const lost = await open.ledger.workers.markLost(0);
    assert.ok(!lost.some((l) => l.workerId === 'stopper'), 'a stopped worker is never marked lost');
    // a worker that vanishes without a word is still lost
    assert.equal((await claim('iso-s', 'vanisher', ['stop_t'])).status, 200);
    const lostNow = await open.ledger.workers.markLost(0);
    assert.ok(lostNow.some((l) => l.workerId === 'vanisher' && l.tenantId === 'iso-s'));
    const v = (await call(open.url, 'GET', '/workers', { tenant: 'iso-s' })).body.workers.find((x: { workerId: string }) => x.workerId === 'vanisher');
    assert.equal(v.status, 'lost');
  });

  test('an in-process worker (claiming for every tenant) that stops cleanly is "stopped" too', async () => {
    await open.ledger.enqueue([{ tenantId: 'iso-ip', jobType: 'stop_ip', payload: {} }]);
    let ran = 0;
    const w = await createWorker({
      connectionString: db.url, workerId: 'stopper-ip', jobTypes: ['stop_ip'], handleSignals: false, waitMs: 500, log: createLogger('silent'),
      handler: async () => void ran++,
    });
    await eventually(async () => ran === 1, 10_000, 'the job to run');
    await w.stop();
    const rec = (await call(open.url, 'GET', '/workers', { tenant: 'iso-ip' })).body.workers.find((x: { workerId: string }) => x.workerId === 'stopper-ip');
    assert.deepEqual([rec.tenantId, rec.status, rec.inFlight], ['*', 'stopped', 0]);
  });

  test('a worker that stops with leases it could not hand back is not reported stopped: it goes lost and its leases are released', async () => {
    class NoHandBack extends HttpTransport {
      override async release(): Promise<AckOutcome[]> {
        throw new Error('the orchestrator did not answer');
      }
    }
    const [job] = await open.ledger.enqueue([{ tenantId: 'iso-left', jobType: 'left_t', payload: {} }]);
    let started = false;
    const w = await createWorker({
      transport: new NoHandBack({ apiUrl: open.url, tenant: 'iso-left' }), workerId: 'leaver', jobTypes: ['left_t'],
      handleSignals: false, waitMs: 500, shutdownTimeoutMs: 100, log: createLogger('silent'),
      handler: (j) => {
        started = true;
        return new Promise((_resolve, reject) => j.signal.addEventListener('abort', () => reject(new Error('aborted'))));
      },
    });
    await eventually(async () => started, 10_000, 'the job to start');
    await w.stop();
    const rec = (await call(open.url, 'GET', '/workers', { tenant: 'iso-left' })).body.workers.find((x: { workerId: string }) => x.workerId === 'leaver');
    assert.deepEqual([rec.status, rec.stoppedAt, rec.inFlight], ['active', null, 1]);
    const lost = await open.ledger.workers.markLost(0);
    assert.ok(lost.some((l) => l.workerId === 'leaver' && l.tenantId === 'iso-left'), 'it is marked lost, so the reaper releases its lease');
    assert.equal((await open.ledger.getJob('iso-left', job!.id))?.state, 'leased');
  });
});

describe('a worker id another tenant uses', () => {
  const record = async (tenantId: string, workerId: string) => (await db.pool.query<{ stopped: boolean; lost: boolean; last_seen: Date }>(
    `SELECT stopped_at IS NOT NULL AS stopped, lost_at IS NOT NULL AS lost, last_seen FROM orch.workers WHERE tenant_id = $1 AND worker_id = $2`,
    [tenantId, workerId])).rows[0];

  test('a stop marks only the stopping worker\'s own records: an all-tenant worker\'s stop leaves the tenant\'s twin running', async () => {
    // the same id claiming for every tenant (no X-Tenant-Id on an all-tenant principal) and for one tenant
    assert.equal((await call(open.url, 'POST', '/claim', { body: { workerId: 'twin-stop', jobTypes: ['twin_t'], limit: 1 } })).status, 200);
    assert.equal((await claim('iso-twin', 'twin-stop', ['twin_t'])).status, 200);
    const r = await call(open.url, 'POST', '/workers/twin-stop/stopped', {});
    assert.deepEqual([r.status, r.body], [200, { stopped: 1 }]);
    assert.equal((await record('*', 'twin-stop'))?.stopped, true);
    assert.equal((await record('iso-twin', 'twin-stop'))?.stopped, false, 'the tenant\'s worker is not stopped by another\'s stop');
    const listed = (await call(open.url, 'GET', '/workers', { tenant: 'iso-twin' })).body.workers
      .filter((w: { workerId: string }) => w.workerId === 'twin-stop').map((w: { tenantId: string; status: string }) => `${w.tenantId}:${w.status}`);
    assert.deepEqual(listed.sort(), ['*:stopped', 'iso-twin:active']);
  });

  test('a tenant\'s heartbeats refresh its own worker\'s record, not the stopped all-tenant worker of the same id', async () => {
    await open.ledger.enqueue([{ tenantId: 'iso-hb', jobType: 'twin_hb', payload: {} }]);
    assert.equal((await call(open.url, 'POST', '/claim', { body: { workerId: 'twin-hb', jobTypes: ['other_t'], limit: 1 } })).status, 200);
    assert.equal((await call(open.url, 'POST', '/workers/twin-hb/stopped', {})).status, 200);
    const lease = (await claim('iso-hb', 'twin-hb', ['twin_hb'])).body.leases[0];
    assert.ok(lease);
    // both records last written long enough ago for a heartbeat to refresh them
    await db.pool.query(`UPDATE orch.workers SET last_seen = now() - interval '1 minute' WHERE worker_id = 'twin-hb'`);
    const hb = await call(open.url, 'POST', `/jobs/${lease.jobId}/heartbeat`, { tenant: 'iso-hb', body: { leaseId: lease.leaseId } });
    assert.equal(hb.status, 200, JSON.stringify(hb.body));
    const own = await record('iso-hb', 'twin-hb');
    assert.ok(own && Date.now() - own.last_seen.getTime() < 30_000, 'the holder\'s record is refreshed');
    const all = await record('*', 'twin-hb');
    assert.equal(all?.stopped, true, 'the all-tenant worker stays stopped');
    assert.ok(Date.now() - all!.last_seen.getTime() >= 59_000, 'and is not refreshed');
  });

  test('the reaper releases a lost worker\'s silent leases only, never the live leases of a same-id worker in another tenant', async () => {
    const LOST_AFTER_MS = 15_000; // the smallest the config allows
    const db2 = await createTestDatabase();
    const cp = await startTestServer(db2.url, { workerLostAfterMs: LOST_AFTER_MS, maintenance: { ...defaultConfig.maintenance, leaseReaperIntervalMs: 100 } });
    try {
      // leases far longer than the test, so only the lost worker's release can take one back
      await cp.ledger.jobTypes.define('twin_r', { leaseMs: 600_000 });
      const [live, gone] = await cp.ledger.enqueue([
        { tenantId: 'iso-live', jobType: 'twin_r', payload: {} }, { tenantId: 'iso-gone', jobType: 'twin_r', payload: {} },
      ]);
      const held = (await call(cp.url, 'POST', '/claim', { tenant: 'iso-live', body: { workerId: 'twin-r', jobTypes: ['twin_r'], limit: 1 } })).body.leases[0];
      assert.equal(held?.jobId, live!.id);
      // the same id claiming for every tenant takes the other job, then goes silent
      const vanished = (await call(cp.url, 'POST', '/claim', { body: { workerId: 'twin-r', jobTypes: ['twin_r'], limit: 1 } })).body.leases[0];
      assert.equal(vanished?.jobId, gone!.id);
      const jobState = async (tenantId: string, id: string) => (await db2.pool.query<{ state: string; lease_id: string | null }>(
        `SELECT state, lease_id FROM orch.jobs WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0]!;
      // the tenant's worker keeps heartbeating its lease
      await eventually(async () => {
        const hb = await call(cp.url, 'POST', `/jobs/${held.jobId}/heartbeat`, { tenant: 'iso-live', body: { leaseId: held.leaseId } });
        assert.equal(hb.status, 200, `the live lease was taken: ${JSON.stringify(hb.body)}`);
        return (await jobState('iso-gone', gone!.id)).state === 'queued';
      }, LOST_AFTER_MS + 15_000, 'the vanished worker\'s lease released');
      assert.equal((await cp.ledger.getHistory('iso-gone', gone!.id)).at(-1)?.reason, 'worker_lost');
      assert.deepEqual(await jobState('iso-live', live!.id), { state: 'leased', lease_id: held.leaseId });
      const workers = (await call(cp.url, 'GET', '/workers', {})).body.workers
        .map((w: { tenantId: string; workerId: string; status: string }) => `${w.tenantId}/${w.workerId}:${w.status}`);
      assert.deepEqual(workers.sort(), ['*/twin-r:lost', 'iso-live/twin-r:active']);
    } finally {
      await cp.stop();
      await db2.drop();
    }
  });
});

describe('tenant ids cannot be split', () => {
  const jwt = (tenants: unknown) => new SignJWT({ tenants, scope: 'orch:read orch:write' }).setProtectedHeader({ alg: 'HS256' })
    .setSubject('mallory').setIssuedAt().setExpirationTime('5m').sign(new TextEncoder().encode(JWT_SECRET));

  test('a JWT whose tenant claim holds a comma is refused (401), and does not open the other tenant\'s audit log', async () => {
    // tenant B has an audit row to leak
    assert.equal((await call(secured.url, 'POST', '/jobtypes/leak_t/pause', { tenant: 'iso-b2', token: admin, headers: { 'x-operator-reason': 'leak check' } })).status, 200);
    const token = await jwt(['iso-a2,iso-b2']);
    for (const tenant of [undefined, 'iso-a2', 'iso-b2']) {
      const r = await call(secured.url, 'GET', '/audit', { token, tenant });
      assert.equal(r.status, 401, `tenant header ${tenant}: ${JSON.stringify(r.body)}`);
    }
    const single = await jwt('iso-a2,iso-b2');
    assert.equal((await call(secured.url, 'GET', '/audit', { token: single })).status, 401);
  });

  test('the header, token creation and the CLI refuse a tenant id outside the one pattern', async () => {
    const h = await call(open.url, 'GET', '/jobs', { tenant: 'iso-a,iso-b' });
    assert.equal(h.status, 400);
    assert.equal(h.body.error.field, 'X-Tenant-Id');
    const t = await call(secured.url, 'POST', '/tokens', { token: admin, body: { subject: 's', tenants: ['a,b'], scopes: ['orch:read'] } });
    assert.equal(t.status, 400);
    const cli = await runCli(['--api-url', open.url, '--tenant', 'a,b', 'jobs', 'list']);
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr.trim().split('\n').length, 1, cli.stderr);
    assert.match(cli.stderr, /tenant/);
  });

  test('the reader\'s scope cannot be split: a tenant list holding "a,b" sees neither a nor b', async () => {
    await open.ledger.enqueue([{ tenantId: 'split-a', jobType: 'sp', payload: {} }, { tenantId: 'split-b', jobType: 'sp', payload: {} }]);
    const seen = await asTenantReader(db.pool, ['split-a,split-b'], async (r) =>
      (await r.query<{ tenant_id: string }>(`SELECT DISTINCT tenant_id FROM orch.jobs WHERE tenant_id LIKE 'split-%'`)).rows);
    assert.deepEqual(seen, []);
    const own = await asTenantReader(db.pool, ['split-a'], async (r) =>
      (await r.query<{ tenant_id: string }>(`SELECT DISTINCT tenant_id FROM orch.jobs WHERE tenant_id LIKE 'split-%'`)).rows);
    assert.deepEqual(own.map((x) => x.tenant_id), ['split-a']);
  });
});

describe('row-level security covers every table holding a tenant\'s data', () => {
  test('each table with a tenant column has RLS and a reader policy; tenant A\'s reader sees none of B\'s rows in any of them', async () => {
    // B's data in every kind of table: jobs and history, a pause, a quota and its release, a worker, a dead letter
    const B = 'rls-b';
    const A = 'rls-a';
    await open.ledger.enqueue([{ tenantId: A, jobType: 'rls_t', payload: {} }]);
    await open.ledger.jobTypes.define('rls_dead', { maxAttempts: 1 });
    const op = { 'x-operator-reason': 'rls test', 'x-operator-ticket': 'T-1' };
    const [dead] = await open.ledger.enqueue([{ tenantId: B, jobType: 'rls_dead', payload: {} }]);
    // a quota covering the lease: its end leaves a slot-release row behind
    const q = await call(open.url, 'PUT', `/quotas/${B}/rls_dead`, { body: { maxActive: 5 }, headers: op });
    assert.equal(q.status, 200, JSON.stringify(q.body));
    const [lease] = await open.ledger.claim({ workerId: 'rls-w', jobTypes: ['rls_dead'], tenantIds: [B], limit: 1 });
    assert.equal(lease?.jobId, dead!.id);
    await open.ledger.fail([{ tenantId: B, jobId: lease!.jobId, leaseId: lease!.leaseId, error: { class: 'Boom', message: 'no' } }], null);
    assert.equal((await call(open.url, 'POST', `/tenants/${B}/pause`, { headers: op, body: {} })).status, 200);

    // Every relation with a tenant column, whatever its name: the tenant reader either cannot read it
    // at all, or row-level security filters it by orch.visible_tenant (a view only through
    // security_invoker, else it reads its tables as their owner and bypasses their policies).
    const { rows: relations } = await db.pool.query<{
      table: string; kind: string; column: string; readable: boolean; rls: boolean; invoker: boolean; quals: string[];
    }>(`
      SELECT c.relname AS table, c.relkind AS kind, a.attname AS column,
        has_table_privilege('orch_tenant_reader', c.oid, 'SELECT') AS readable, c.relrowsecurity AS rls,
        coalesce('security_invoker=true' = ANY (c.reloptions), false) AS invoker,
        array(SELECT pg_get_expr(p.polqual, p.polrelid) FROM pg_policy p
              WHERE p.polrelid = c.oid AND 'orch_tenant_reader'::regrole = ANY (p.polroles)) AS quals
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
      WHERE n.nspname = 'orch' AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%tenant%'
      ORDER BY 1`);
    const tables = relations.filter((t) => t.readable && t.column === 'tenant_id' && t.kind === 'r').map((t) => t.table);
    assert.ok(tables.length >= 15, `tables with a tenant column: ${tables}`);
    for (const t of relations.filter((r) => r.readable)) {
      if (t.kind === 'v') {
        assert.ok(t.invoker, `${t.table}: a view the tenant reader can read must be security_invoker`);
        continue;
      }
      assert.ok(t.kind !== 'm', `${t.table}: row-level security does not apply to a materialized view the tenant reader can read`);
      assert.ok(t.rls && t.quals.length > 0, `${t.table}: row-level security for the tenant reader`);
      for (const q of t.quals) assert.match(q, new RegExp(`^orch\\.visible_tenant\\(${t.column}\\)$`), `${t.table}: the reader's policy`);
    }
    for (const t of tables) {
      const { rows: [own] } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM orch.${t} WHERE tenant_id = $1`, [B]);
      const leaked = await asTenantReader(db.pool, [A], async (r) =>
        Number((await r.query<{ n: string }>(`SELECT count(*) AS n FROM orch.${t} WHERE tenant_id = $1`, [B])).rows[0]!.n));
      assert.equal(leaked, 0, `${t}: A's reader sees ${leaked} of B's ${own!.n} rows`);
    }
    // the tables the data above must have reached, so the loop tested something (a delta the
    // rollup service has folded meanwhile is in its totals table instead, and a slot release the
    // quota keeper folded is in the quota's active count: the policy check above still covers its table)
    const withB: string[] = [];
    for (const t of tables) {
      const { rows } = await db.pool.query(`SELECT 1 FROM orch.${t} WHERE tenant_id = $1 LIMIT 1`, [B]);
      if (rows.length) withB.push(t);
    }
    for (const t of ['jobs', 'job_transitions', 'outbox', 'dispatch_pauses', 'quotas', 'quota_releases|quotas', 'tenants', 'workers', 'dlq_cluster_deltas|dlq_clusters', 'audit_log']) {
      assert.ok(t.split('|').some((x) => withB.includes(x)), `${t} holds a row of B (${withB})`);
    }
  });
});

describe('who acknowledged', () => {
  test('an ack over HTTP without authentication records the lease holder, not "anonymous"', async () => {
    const [job] = await open.ledger.enqueue([{ tenantId: 'iso-ack', jobType: 'ack_t', payload: {} }]);
    const c = await claim('iso-ack', 'acker-7', ['ack_t']);
    const lease = c.body.leases[0];
    assert.equal(lease.jobId, job!.id);
    const done = await call(open.url, 'POST', `/jobs/${job!.id}/complete`, { tenant: 'iso-ack', body: { leaseId: lease.leaseId } });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    const shown = await call(open.url, 'GET', `/jobs/${job!.id}`, { tenant: 'iso-ack' });
    const last = shown.body.history.at(-1);
    assert.deepEqual([last.to, last.actor], ['succeeded', 'worker:acker-7']);
  });
});
