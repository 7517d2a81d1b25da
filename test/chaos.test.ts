/**
 * Fault injection under load (issue 14, "done when"): a real `orch serve`,
 * remote SDK workers in processes of their own, a private NATS, and the
 * database behind a TCP proxy. While two tenants' jobs run: kill -9 of a
 * worker, every server connection terminated by PostgreSQL (57P01, as a
 * restart does) and then the database unreachable for seconds, NATS killed
 * and restarted, and kill -9 of the server with a restart. Then, counting
 * from the ledger, the workers' run logs and the JetStream stream: no job
 * lost, no completion recorded twice, no job run twice unless its first run
 * lost its lease, every server alive or restarted, every transition's event
 * on the bus exactly once.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/ledger/embedded.ts';
import type { ServerProcess } from '../src/synthetic/server-process.ts';
import { createTestDatabase } from './helpers/db.ts';
import { NatsProcess, natsConnect, skipUnlessNats, streamCount } from './helpers/nats.ts';
import { alive, kill } from './helpers/processes.ts';
import { eventually, REPO_ROOT, spawnServer } from './helpers/server.ts';
import { TcpProxy } from './helpers/tcp-proxy.ts';

const BASE = '/api/v1/orchestrator';
const TENANTS = ['chaos-a', 'chaos-b'];
/** Jobs per tenant and round of the producer (a round every 150 ms until the faults are over). */
const BATCH = 20;
/** Every 25th job takes this long: twice its 2 s lease, so it lives on heartbeats across the faults. */
const LONG_MS = 4000;
const WORKER = fileURLToPath(new URL('./fixtures/chaos-worker.ts', import.meta.url));
const skip = await skipUnlessNats('the fault-injection suite (it restarts a NATS of its own)', { binary: true });

function scope(t: TestContext) {
  const list: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const c of list.reverse()) await c().catch(() => undefined);
  });
  return <V>(v: V, cleanup: (v: V) => Promise<unknown>): V => {
    list.push(() => cleanup(v));
    return v;
  };
}

async function spawnWorker(apiUrl: string, tenant: string, id: string, log: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, apiUrl, tenant, id, log], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker ${id} exited with ${code}: ${err}`)));
  });
  return child;
}

async function post(url: string, p: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}${BASE}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

describe('fault injection under load', { skip }, () => {
  test('kill -9 of a worker and of the server, a database restart and cut, a NATS outage: nothing lost, nothing twice', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const u = new URL(db.url);
    const proxy = end(await TcpProxy.start({ host: u.hostname, port: Number(u.port || 5432) }), (p) => p.close());
    u.hostname = '127.0.0.1';
    u.port = String(proxy.port);
    const nats = end(await NatsProcess.create(), (n) => n.destroy());
    await nats.start();
    const stream = `CHAOS_${process.pid}`;
    const env = {
      ORCH_DATABASE_URL: u.toString(), ORCH_NATS_URL: nats.url, ORCH_EVENTS_STREAM: stream, ORCH_HTTP_PORT: String(await freePort()),
      ORCH_LEASE_GRACE_MS: '3000', ORCH_LEASE_REAPER_INTERVAL_MS: '200', ORCH_WORKER_LOST_AFTER_MS: '15000',
    };
    let server: ServerProcess = await spawnServer(env);
    end(null, async () => server.stop());
    const timeline: string[] = [];
    const mark = (what: string) => timeline.push(`${(performance.now() / 1000).toFixed(1)}s ${what}`);

    const put = await fetch(`${server.url}${BASE}/jobtypes/chaos`, {
      method: 'PUT', headers: { 'content-type': 'application/json', 'x-operator-reason': 'chaos test' }, body: JSON.stringify({ leaseMs: 2000, maxAttempts: 10, backoffBaseMs: 100, backoffMaxMs: 500 }),
    });
    assert.equal(put.status, 200);

    const logDir = await mkdtemp(path.join(tmpdir(), 'orch-chaos-'));
    const logs: string[] = [];
    const killed = new Set<number>();
    const workers: ChildProcess[] = [];
    const startWorker = async (tenant: string, n: number) => {
      const log = path.join(logDir, `${tenant}-${n}.log`);
      logs.push(log);
      const w = await spawnWorker(server.url, tenant, `${tenant}-w${n}`, log);
      workers.push(w);
      return w;
    };
    end(null, async () => Promise.all(workers.map((w) => kill(w, 'SIGKILL'))));
    for (const tenant of TENANTS) for (const n of [1, 2]) await startWorker(tenant, n);

    // enqueue with idempotency keys, retried through the faults (every key must become exactly one job),
    // until the last fault is over: every fault hits work in flight, every 25th job longer than its lease
    const keys: { tenant: string; key: string }[] = [];
    let enqueued = 0;
    let faultsOver = false;
    const submit = async (tenant: string, batch: { key: string; ms?: number }[]) => {
      for (;;) {
        const r = await post(server.url, '/jobs/batch', {
          jobs: batch.map((b) => ({ jobType: 'chaos', idempotencyKey: b.key, payload: b.ms ? { ms: b.ms } : {} })),
        }, { 'x-tenant-id': tenant }).catch(() => null);
        if (r?.ok) {
          await r.body?.cancel();
          enqueued += batch.length;
          return;
        }
        await r?.body?.cancel();
        await new Promise((res) => setTimeout(res, 250));
      }
    };
    const producing = (async () => {
      for (let i = 0; !faultsOver; i += BATCH) {
        for (const tenant of TENANTS) {
          const batch = Array.from({ length: BATCH }, (_, j) => ({ key: `k-${i + j}`, ms: (i + j) % 25 === 0 ? LONG_MS : undefined }));
          keys.push(...batch.map((b) => ({ tenant, key: b.key })));
          await submit(tenant, batch);
        }
        await new Promise((res) => setTimeout(res, 150));
      }
    })();

    const serverAlive = () => assert.ok(alive(server.child), `the server died: ${server.stderr().slice(-2000)}`);
    const ready = async (what: string) => {
      const t0 = Date.now();
      await eventually(async () => (await fetch(`${server.url}/readyz`).catch(() => null))?.status === 200, 30_000, `ready after ${what}`);
      mark(`ready ${Date.now() - t0} ms after ${what}`);
    };

    await eventually(async () => enqueued >= 200, 30_000, 'load');
    // 1. a worker dies mid-run; a new one takes its place
    const victim = workers[0]!;
    killed.add(victim.pid!);
    await kill(victim, 'SIGKILL');
    mark('worker killed');
    await startWorker(TENANTS[0]!, 3);

    // 2. PostgreSQL ends every server connection (57P01), then is unreachable for 3 s
    await new Promise((r) => setTimeout(r, 1000));
    await db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'orch' AND pid <> pg_backend_pid()`, [u.pathname.slice(1)]);
    mark('server connections terminated');
    await proxy.cut();
    await new Promise((r) => setTimeout(r, 3000));
    serverAlive();
    await proxy.restore();
    mark('database back');
    await ready('the database outage');

    // 3. NATS killed, down for 3 s, restarted (its store kept)
    await nats.stop('SIGKILL');
    mark('NATS killed');
    await new Promise((r) => setTimeout(r, 3000));
    serverAlive();
    await nats.start();
    mark('NATS back');

    // 4. the server killed mid-flight and restarted on the same port; the workers ride it out
    await new Promise((r) => setTimeout(r, 1000));
    await kill(server.child, 'SIGKILL');
    mark('server killed');
    server = await spawnServer(env);
    await ready('the server restart');
    faultsOver = true;
    await producing;

    // everything ends: every key one job, succeeded once
    const { rows: states } = await eventually(async () => {
      const r = await db.pool.query<{ state: string; n: string }>(`SELECT state::text, count(*) AS n FROM orch.jobs GROUP BY 1`);
      return r.rows.length === 1 && r.rows[0]!.state === 'succeeded' && Number(r.rows[0]!.n) === keys.length ? r : null;
    }, 90_000, 'every job to succeed');
    mark('all jobs succeeded');
    assert.deepEqual(states.map((s) => [s.state, Number(s.n)]), [['succeeded', keys.length]]);
    const { rows: perKey } = await db.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM orch.jobs GROUP BY tenant_id, idempotency_key HAVING count(*) > 1`);
    assert.equal(perKey.length, 0, 'no idempotency key became two jobs');
    const { rows: twice } = await db.pool.query<{ job_id: string }>(
      `SELECT e.job_id FROM orch.job_transitions t CROSS JOIN LATERAL unnest(t.job_ids, t.to_states) AS e(job_id, to_state)
       WHERE e.to_state = 'succeeded' GROUP BY e.job_id HAVING count(*) > 1`);
    assert.deepEqual(twice, [], 'no completion recorded twice');

    // runs from the workers' logs: a second run of a job only when the first lost its lease
    const runs = new Map<string, { leaseId: string; pid: number }[]>();
    for (const log of logs) {
      for (const line of (await readFile(log, 'utf8').catch(() => '')).split('\n')) {
        const [what, jobId, leaseId, pid] = line.split(' ');
        if (what !== 'start') continue;
        runs.set(jobId!, [...(runs.get(jobId!) ?? []), { leaseId: leaseId!, pid: Number(pid) }]);
      }
    }
    const { rows: lostLeases } = await db.pool.query<{ lease_id: string }>(
      `SELECT e.lease_id::text FROM orch.job_transitions t CROSS JOIN LATERAL unnest(t.lease_ids, t.from_states, t.to_states) AS e(lease_id, from_state, to_state)
       WHERE e.from_state = 'leased' AND e.to_state <> 'succeeded'`);
    const lost = new Set(lostLeases.map((r) => r.lease_id));
    const unexplained: string[] = [];
    let reruns = 0;
    for (const [jobId, rs] of runs) {
      if (rs.length < 2) continue;
      reruns += rs.length - 1;
      for (const r of rs.slice(0, -1)) {
        if (!killed.has(r.pid) && !lost.has(r.leaseId)) unexplained.push(`job ${jobId}: lease ${r.leaseId} of pid ${r.pid} ran again though it kept its lease`);
      }
    }
    assert.deepEqual(unexplained, []);
    const { rows: longRuns } = await db.pool.query<{ id: string }>(`SELECT id::text FROM orch.jobs WHERE payload ? 'ms'`);
    const longTwice = longRuns.filter((r) => (runs.get(r.id)?.length ?? 0) > 1 && !runs.get(r.id)!.some((x) => killed.has(x.pid)));
    assert.deepEqual(longTwice.map((r) => r.id), [], 'long jobs whose worker kept heartbeating ran once, across every fault');

    // every transition's event reached the stream exactly once (JetStream drops re-published ids)
    const { rows: [hist] } = await db.pool.query<{ n: string }>('SELECT coalesce(sum(cardinality(job_ids)), 0) AS n FROM orch.job_transitions');
    const { nc, jsm } = await natsConnect(nats.url);
    end(nc, (c) => c.close());
    await eventually(async () => (await streamCount(jsm, stream)) >= Number(hist!.n), 60_000, 'every event on the stream').catch(async (err: Error) => {
      const { rows: [o] } = await db.pool.query<{ pending: string; rows: string }>(
        'SELECT count(*) FILTER (WHERE published_at IS NULL) AS pending, count(*) AS rows FROM orch.outbox');
      throw new Error(`${err.message}: ${await streamCount(jsm, stream)} of ${hist!.n} events on the stream; outbox ${o!.rows} rows, ${o!.pending} unpublished; `
        + `server log: ${server.stderr().slice(-3000)}`);
    });
    const control = 0; // no operator control changed during the run: only transition events (and no progress reports)
    assert.equal(await streamCount(jsm, stream), Number(hist!.n) + control, 'one event per transition, none twice');
    serverAlive();
    mark('events complete');
    process.stderr.write(`# chaos: ${keys.length} jobs (${longRuns.length} longer than their lease), ${reruns} re-runs after lost leases, `
      + `${hist!.n} transitions and events\n# ${timeline.join('\n# ')}\n`);
  });
});
