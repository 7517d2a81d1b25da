/**
 * The server's database role owns nothing (migrations/0010_service_role.sql):
 * run as a member of orch_service, with migrations run by the owner
 * (ORCH_MIGRATION_DATABASE_URL), the product works, and the app's
 * credentials cannot make the audit log forget or stop recording.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { ControlPlane } from '../src/control-plane.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually, startTestServer } from './helpers/server.ts';

const BASE = '/api/v1/orchestrator';
const T = 'roles';
const APP_ROLE = `orch_app_${randomBytes(4).toString('hex')}`;

let db: TestDatabase;
let appUrl: string;
let plane: ControlPlane;
let app: pg.Client;

before(async () => {
  db = await createTestDatabase();
  // the machine's server trusts local connections: the login role needs no password here
  await db.pool.query(`CREATE ROLE ${APP_ROLE} LOGIN IN ROLE orch_service`);
  const u = new URL(db.url);
  u.username = APP_ROLE;
  appUrl = u.toString();
  plane = await startTestServer(appUrl, { migrationDatabaseUrl: db.url });
  app = new pg.Client({ connectionString: appUrl });
  await app.connect();
});

after(async () => {
  await app?.end();
  await plane?.stop();
  // roles are per cluster: drop it while the pool is still open (its sessions ended above)
  await db?.pool.query(`DROP ROLE IF EXISTS ${APP_ROLE}`);
  await db?.drop();
});

async function refused(sql: string): Promise<string> {
  try {
    await app.query(sql);
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail(`the app's role could run: ${sql}`);
}

describe('the server runs as a role that owns nothing', () => {
  test('enqueue, run, pause and audit work as orch_service', async () => {
    const r = await fetch(`${plane.url}${BASE}/jobs`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-tenant-id': T }, body: JSON.stringify({ jobType: 'role_t', payload: {} }),
    });
    assert.equal(r.status, 201);
    const { id } = (await r.json()) as { id: string };
    const w = await createWorker({ apiUrl: plane.url, tenant: T, jobTypes: ['role_t'], handleSignals: false, waitMs: 500, handler: async () => 'ok' });
    try {
      await eventually(async () => (await plane.ledger.getJob(T, id))?.state === 'succeeded', 15_000, 'the job to succeed');
    } finally {
      await w.stop();
    }
    const p = await fetch(`${plane.url}${BASE}/jobtypes/role_t/pause`, { method: 'POST', headers: { 'x-tenant-id': T, 'x-operator-reason': 'role test' } });
    assert.equal(p.status, 200);
    const a = await fetch(`${plane.url}${BASE}/audit?action=dispatch.pause`, { headers: { 'x-tenant-id': T } });
    assert.equal(((await a.json()) as { entries: unknown[] }).entries.length, 1);
    const { rows } = await app.query<{ current_user: string }>('SELECT current_user');
    assert.equal(rows[0]!.current_user, APP_ROLE);
  });

  test('with the app\'s credentials the audit log cannot be altered, emptied or switched off', async () => {
    assert.match(await refused('ALTER TABLE orch.audit_log DISABLE TRIGGER audit_log_append_only'), /owner|permission/);
    assert.match(await refused('DROP TRIGGER audit_log_append_only ON orch.audit_log'), /owner|permission/);
    assert.match(await refused('UPDATE orch.audit_log SET reason = \'rewritten\''), /permission/);
    assert.match(await refused('DELETE FROM orch.audit_log'), /permission/);
    assert.match(await refused('TRUNCATE orch.audit_log'), /permission/);
    assert.match(await refused('DROP TABLE orch.audit_log'), /owner|permission/);
    assert.match(await refused('SET session_replication_role = replica'), /permission/);
    assert.match(await refused('ALTER TABLE orch.jobs DISABLE ROW LEVEL SECURITY'), /owner|permission/);
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM orch.audit_log');
    assert.ok(Number(rows[0]!.n) >= 1, 'the entries are all still there');
  });

  test('the service cannot rewind the audit log\'s ids nor mark a migration applied; it still VACUUMs the tables it folds', async () => {
    assert.match(await refused(`SELECT setval(pg_get_serial_sequence('orch.audit_log', 'id'), 1)`), /permission/);
    assert.match(await refused(`INSERT INTO orch.schema_migrations (version, name) VALUES (9999, 'fake')`), /permission/);
    // VACUUM by a role that does not own the table is skipped with a warning, not an error
    const warnings: string[] = [];
    const onNotice = (n: { message?: string }) => warnings.push(n.message ?? '');
    app.on('notice', onNotice);
    try {
      for (const t of ['orch.queue_deltas', 'orch.dlq_cluster_deltas', 'orch.quota_releases']) await app.query(`VACUUM ${t}`);
    } finally {
      app.off('notice', onNotice);
    }
    assert.deepEqual(warnings, [], 'VACUUM ran on every table the service folds');
  });

  test('every table under row-level security lets the service in (a later migration that enables it must add the policy)', async () => {
    const { rows } = await db.pool.query<{ relname: string }>(`
      SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'orch' AND c.relrowsecurity AND NOT EXISTS (
        SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND 'orch_service'::regrole = ANY (p.polroles))`);
    assert.deepEqual(rows.map((r) => r.relname), []);
  });
});

describe('with a single superuser URL the server still acts as orch_service', () => {
  let single: ControlPlane;
  before(async () => {
    single = await startTestServer(db.url);
  });
  after(async () => {
    await single?.stop();
  });

  test('every connection of its pool is orch_service, even after RESET ROLE, and cannot touch the audit log', async () => {
    const client = await single.ledger.pool.connect();
    try {
      const who = async () => (await client.query<{ u: string; s: string }>('SELECT current_user AS u, session_user AS s')).rows[0]!;
      assert.deepEqual(await who(), { u: 'orch_service', s: 'postgres' });
      await client.query('RESET ROLE');
      assert.equal((await who()).u, 'orch_service', 'the role is set at connection start');
      for (const sql of [
        'ALTER TABLE orch.audit_log DISABLE TRIGGER audit_log_append_only',
        'DROP TRIGGER audit_log_append_only ON orch.audit_log',
        `UPDATE orch.audit_log SET reason = 'rewritten'`,
        'DELETE FROM orch.audit_log',
        'TRUNCATE orch.audit_log',
      ]) {
        await assert.rejects(client.query(sql), /owner|permission/, sql);
      }
    } finally {
      client.release();
    }
    // and the server works as it: an operator action and its entry
    const p = await fetch(`${single.url}${BASE}/jobtypes/single_t/pause`, { method: 'POST', headers: { 'x-tenant-id': T, 'x-operator-reason': 'single url' } });
    assert.equal(p.status, 200, await p.text());
    const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM orch.audit_log WHERE reason = 'single url'`);
    assert.equal(rows[0]!.n, 1);
  });
});

describe('the server\'s connections', () => {
  test('a burst opens several; they close once idle for ORCH_DB_POOL_IDLE_MS (here 1 s; default 10 s)', async () => {
    const open = async () => (await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'orch' AND usename = $1`, [APP_ROLE])).rows[0]!.n;
    // the pool opens a connection per request it cannot serve from an idle one
    await Promise.all(Array.from({ length: 12 }, () => fetch(`${plane.url}${BASE}/jobs?limit=1`, { headers: { 'x-tenant-id': T } })));
    const burst = await open();
    assert.ok(burst >= 4, `the burst opened several connections (${burst})`);
    await eventually(async () => (await open()) <= 2, 5000, `the burst's idle connections to close (${burst} open)`);
  });
});
