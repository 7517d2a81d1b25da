/**
 * The incidents the runbook is for, against a real `orch serve` process:
 * the database cut away under load and back (through a TCP proxy, so the
 * machine's PostgreSQL that other tests use keeps running), Ctrl-C with
 * queries in flight, and a restart longer than a worker's lease.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { freePort } from '../src/ledger/embedded.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { alive } from './helpers/processes.ts';
import { eventually, spawnServer } from './helpers/server.ts';
import { TcpProxy } from './helpers/tcp-proxy.ts';
import { scope } from './helpers/scope.ts';

const BASE = '/api/v1/orchestrator';
const T = 'outage';


async function enqueue(url: string, payload: unknown): Promise<Response> {
  return fetch(`${url}${BASE}/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-tenant-id': T }, body: JSON.stringify({ jobType: 'ot', payload }),
  });
}

async function counts(db: TestDatabase): Promise<{ states: Record<string, number>; doubleSuccesses: number }> {
  const { rows } = await db.pool.query<{ state: string; n: string }>('SELECT state::text, count(*) AS n FROM orch.jobs GROUP BY state');
  const { rows: d } = await db.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM (
       SELECT e.job_id FROM orch.job_transitions t CROSS JOIN LATERAL unnest(t.job_ids, t.to_states) AS e(job_id, to_state)
       WHERE e.to_state = 'succeeded' GROUP BY e.job_id HAVING count(*) > 1) x`);
  return { states: Object.fromEntries(rows.map((r) => [r.state, Number(r.n)])), doubleSuccesses: Number(d[0]!.n) };
}

describe('the database goes away and comes back', () => {
  test('under load: 503 with Retry-After (never a 500), readyz not ready, no crash; back within seconds, no job lost or run twice', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const { proxy, url: viaProxy } = await TcpProxy.inFrontOf(db.url);
    end(proxy, (p) => p.close());
    const server = end(await spawnServer({ ORCH_DATABASE_URL: viaProxy, ORCH_LEASE_GRACE_MS: '2000' }), (s) => s.stop());
    // A claim cut off mid-flight leaves a lease nobody holds: a short lease brings its job back soon.
    await fetch(`${server.url}${BASE}/jobtypes/ot`, {
      method: 'PUT', headers: { 'content-type': 'application/json', 'x-operator-reason': 'test' }, body: JSON.stringify({ leaseMs: 3000 }),
    }).then((r) => r.body?.cancel());
    const ran = new Map<string, number>();
    end(await createWorker({
      apiUrl: server.url, tenant: T, jobTypes: ['ot'], concurrency: 4, waitMs: 1000, handleSignals: false, shutdownTimeoutMs: 2000,
      log: { debug() {}, info() {}, warn() {}, error() {} } as never,
      handler: async (job) => {
        ran.set(job.id, (ran.get(job.id) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 20));
      },
    }), (w) => w.stop());

    const accepted = new Set<string>();
    const statuses = new Map<number, number>();
    let retryAfter: string | null = null;
    let loading = true;
    const load = (async () => {
      for (let n = 0; loading; n++) {
        const res = await enqueue(server.url, { n }).catch(() => null);
        if (!res) continue;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 201) accepted.add(((await res.json()) as { id: string }).id);
        else {
          if (res.status === 503) retryAfter = res.headers.get('retry-after');
          await res.body?.cancel();
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    })();

    await eventually(async () => accepted.size >= 100, 30_000, 'load before the outage');
    await proxy.cut();
    await eventually(async () => (await fetch(`${server.url}/readyz`)).status === 503, 15_000, 'readyz to turn not-ready');
    await eventually(async () => (statuses.get(503) ?? 0) >= 3, 15_000, 'enqueues answered 503');
    await new Promise((r) => setTimeout(r, 3000)); // the outage lasts: services back off, requests keep failing cleanly
    assert.ok(alive(server.child), 'the server survives the outage');
    await proxy.restore();
    const back = Date.now();
    await eventually(async () => (await fetch(`${server.url}/readyz`)).ok, 15_000, 'readyz to be ready again');
    const recoveredMs = Date.now() - back;
    const before = accepted.size;
    await eventually(async () => accepted.size >= before + 100, 30_000, 'enqueues accepted again');
    loading = false;
    await load;

    // An enqueue cut off mid-flight may have committed without the client hearing 201: such jobs run
    // too, so wait for every job in the table, then check the ones the client was told about.
    await eventually(async () => Object.keys((await counts(db)).states).join() === 'succeeded', 60_000, 'every job to succeed');
    const c = await counts(db);
    const { rows: ok } = await db.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM orch.jobs WHERE id = ANY($1::bigint[]) AND state = 'succeeded'`, [[...accepted]]);
    assert.equal(Number(ok[0]!.n), accepted.size, 'every accepted job succeeded');
    assert.equal(c.doubleSuccesses, 0, 'no completion recorded twice');
    assert.equal(statuses.get(500) ?? 0, 0, `no 500s (statuses: ${JSON.stringify([...statuses])})`);
    assert.equal(retryAfter, '2', '503s carry Retry-After');
    assert.ok(recoveredMs < 10_000, `ready ${recoveredMs} ms after the database came back`);
    assert.ok(alive(server.child));
    const logs = server.stderr();
    assert.doesNotMatch(logs, /Unhandled|uncaught/i);
    // each background service says once that the database is gone, not once per run
    const outageLines = logs.split('\n').filter((l) => l.includes('the database is unavailable; retrying'));
    const services = new Set(outageLines.map((l) => (JSON.parse(l) as { service: string }).service));
    assert.equal(outageLines.length, services.size, `one outage line per service: ${outageLines.join('\n')}`);
    process.stderr.write(`# outage: ${accepted.size} jobs, ${statuses.get(503) ?? 0} answered 503 during the cut, ready ${recoveredMs} ms after the database returned\n`);
  });
});

describe('stopping and restarting', () => {
  test('Ctrl-C with claims, acks and enqueues in flight exits 0 without an error, four times in a row', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    for (let round = 0; round < 4; round++) {
      const server = await spawnServer({ ORCH_DATABASE_URL: db.url, ORCH_LOG_LEVEL: 'info' });
      const worker = await createWorker({
        apiUrl: server.url, tenant: T, jobTypes: ['ot'], concurrency: 8, waitMs: 5000, handleSignals: false, shutdownTimeoutMs: 1000,
        log: { debug() {}, info() {}, warn() {}, error() {} } as never,
        handler: async () => undefined,
      });
      await Promise.all(Array.from({ length: 20 }, (_, n) => enqueue(server.url, { n }).then((r) => r.body?.cancel())));
      const exited = once(server.child, 'exit');
      server.child.kill('SIGINT');
      const [code] = await exited as [number | null];
      await worker.stop().catch(() => undefined);
      const logs = server.stderr();
      assert.equal(code, 0, `round ${round}: exit code; logs:\n${logs.slice(-3000)}`);
      assert.doesNotMatch(logs, /57P01|Unhandled|uncaught|"level":50/, `round ${round}: an error printed while stopping`);
    }
  });

  test('a restart longer than the lease: the worker heartbeats to the new server and keeps its job; nothing runs twice', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const port = String(await freePort());
    const env = { ORCH_DATABASE_URL: db.url, ORCH_HTTP_PORT: port, ORCH_LEASE_GRACE_MS: '5000' };
    let server = await spawnServer(env);
    end(null, async () => server.stop());
    await fetch(`${server.url}${BASE}/jobtypes/long`, {
      method: 'PUT', headers: { 'content-type': 'application/json', 'x-operator-reason': 'test' }, body: JSON.stringify({ leaseMs: 1500 }),
    }).then((r) => r.body?.cancel());
    const runs: string[] = [];
    let release!: () => void;
    const finish = new Promise<void>((r) => (release = r));
    end(await createWorker({
      apiUrl: server.url, tenant: T, jobTypes: ['long'], concurrency: 1, waitMs: 1000, handleSignals: false, shutdownTimeoutMs: 1000,
      log: { debug() {}, info() {}, warn() {}, error() {} } as never,
      handler: async (job) => {
        runs.push(job.leaseId);
        await finish;
      },
    }), (w) => w.stop());
    await fetch(`${server.url}${BASE}/jobs`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-tenant-id': T }, body: JSON.stringify({ jobType: 'long', payload: {} }),
    }).then((r) => r.body?.cancel());
    await eventually(async () => runs.length === 1, 15_000, 'the job to start');
    server.child.kill('SIGKILL');
    await once(server.child, 'exit');
    await new Promise((r) => setTimeout(r, 3000)); // twice the lease: it lapses while nobody can renew it
    server = await spawnServer(env);
    await new Promise((r) => setTimeout(r, 2000)); // the worker's heartbeats reach the new server
    release();
    const { rows } = await eventually(async () => {
      const r = await db.pool.query<{ state: string }>(`SELECT state::text FROM orch.jobs WHERE job_type = 'long'`);
      return r.rows[0]?.state === 'succeeded' ? r : null;
    }, 15_000, 'the job to succeed');
    assert.equal(rows.length, 1);
    assert.equal(runs.length, 1, 'the job ran once: its lease was never taken from the worker that kept heartbeating');
    const reaped = await db.pool.query(`SELECT 1 FROM orch.job_transitions WHERE reason = 'lease_expired'`);
    assert.equal(reaped.rowCount, 0, 'no lease was reaped');
  });
});
