/**
 * Fault injection under load (issue 14, "Done when"): a real `orch serve`, SDK
 * workers in processes of their own, a PostgreSQL cluster and a nats-server of
 * the test's own (the machine's servers, which other tests use, are never
 * touched). While a producer enqueues a few thousand jobs for two tenants, one
 * job in twenty running for seconds with heartbeats, the test SIGKILLs the
 * server (and restarts it), SIGKILLs a worker (and starts another), stops
 * PostgreSQL (fast shutdown) and starts it again, and SIGKILLs NATS and starts
 * it again. Then it counts, from the database, the workers' run log and the
 * stream: no job lost, no completion recorded twice, no job run twice while its
 * worker kept its lease, the server alive after every fault, and every event on
 * the bus once. The figures it measured are reported (`chaos:` diagnostics) and
 * quoted in docs/recovery.md.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import pg from 'pg';
import { createPool } from '../src/ledger/db.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { OrchApiError, OrchClient } from '../src/sdk/index.ts';
import type { ServerProcess } from '../src/synthetic/server-process.ts';
import { natsConnect, NatsProcess, readStream, skipUnlessNats, streamCount } from './helpers/nats.ts';
import { PgCluster, skipUnlessPostgresBinaries } from './helpers/pg-cluster.ts';
import { alive, kill, spawnFixture } from './helpers/processes.ts';
import { illegalOverlaps, keptLeasesLost, readRuns, type LeaseTaken, type Run } from './helpers/run-log.ts';
import { eventually, spawnServer } from './helpers/server.ts';
import { scope } from './helpers/scope.ts';

const CHAOS_WORKER = fileURLToPath(new URL('./fixtures/chaos-worker.ts', import.meta.url));
const TENANTS = ['chaos-a', 'chaos-b'] as const;
const TYPE = 'chaos_work';
const TOTAL = 3000;
const BATCH = 50;
/** The producer's pace: one batch per this many ms while the server takes it (a fault stalls it). */
const PACE_MS = 300;
/** One job in LONG_EVERY runs 2.5-5 s, longer than its 2 s lease: only heartbeats keep it. */
const LONG_EVERY = 20;
const LEASE_MS = 2000;
/** How long each outage lasts: longer than a lease, so every lease in flight lapses during it. */
const OUTAGE_MS = 3000;
/** "Within a few seconds": the bound on /readyz turning ready after the database or NATS is back. */
const READY_WITHIN_MS = 10_000;
const STREAM = 'ORCH_CHAOS';


interface Readiness { code: number; status: string; bus: boolean | undefined }
async function readyz(url: string): Promise<Readiness | null> {
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
    const body = (await res.json()) as { status: string; checks: { bus?: { ok: boolean } } };
    return { code: res.status, status: body.status, bus: body.checks.bus?.ok };
  } catch {
    return null;
  }
}

/** Polls until cond holds and returns how long that took. */
async function timeUntil(what: string, timeoutMs: number, cond: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  await eventually(async () => cond(), timeoutMs, what);
  return Date.now() - t0;
}

/**
 * Enqueues TOTAL jobs in batches, tenants alternating, each with an idempotency
 * key: a batch whose answer was lost (server killed, database down) is sent
 * again until it is accepted, and the keys make the retry create nothing twice.
 */
class Producer {
  readonly accepted = new Map<string, string>();
  retriedBatches = 0;
  private readonly clients: Record<string, OrchClient>;
  readonly done: Promise<void>;

  constructor(url: string) {
    this.clients = Object.fromEntries(TENANTS.map((t) => [t, new OrchClient({ apiUrl: url, tenant: t })]));
    this.done = this.run();
  }

  private async run(): Promise<void> {
    for (let first = 0; first < TOTAL; first += BATCH) {
      const tenant = TENANTS[(first / BATCH) % TENANTS.length]!;
      const jobs = Array.from({ length: BATCH }, (_, i) => {
        const n = first + i;
        return { jobType: TYPE, idempotencyKey: `chaos-${n}`, payload: { n, ms: n % LONG_EVERY === 0 ? 2500 + (n % 7) * 400 : 5 + (n % 20) } };
      });
      for (;;) {
        const res = await this.clients[tenant]!.enqueueBatch(jobs).catch((err: unknown) => {
          // an outage answers 503 (or no answer at all); any other refusal is a bug, not a fault to ride out
          if (err instanceof OrchApiError && err.status !== 503) throw err;
          return null;
        });
        if (res) {
          res.forEach((r, i) => this.accepted.set(jobs[i]!.idempotencyKey, r.id));
          break;
        }
        this.retriedBatches++;
        await delay(200);
      }
      await delay(PACE_MS);
    }
  }
}

interface Figure { fault: string; atJobs: number; detail: string }

describe('fault injection under load', () => {
  test(`${TOTAL} jobs, 2 tenants, SDK worker processes: kill -9 the server and a worker, restart PostgreSQL, lose NATS — nothing lost, nothing twice`, async (t) => {
    const skip = (await skipUnlessPostgresBinaries('the fault-injection suite')) || (await skipUnlessNats('the fault-injection suite', { binary: true }));
    if (skip) return t.skip(skip);
    const end = scope(t);
    const began = Date.now();

    const cluster = end(await PgCluster.create(), (c) => c.destroy());
    await cluster.start();
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE orch_chaos');
    await admin.end();
    const dbUrl = cluster.url.replace(/\/postgres$/, '/orch_chaos');
    const nats = end(await NatsProcess.create(), (n) => n.destroy());
    await nats.start();
    const dir = end(await mkdtemp(path.join(tmpdir(), 'orch-chaos-')), (d) => rm(d, { recursive: true, force: true }));
    const runLog = path.join(dir, 'runs.ndjson');

    const env = {
      ORCH_DATABASE_URL: dbUrl, ORCH_NATS_URL: nats.url, ORCH_EVENTS_STREAM: STREAM, ORCH_HTTP_PORT: String(await freePort()),
      ORCH_LEASE_REAPER_INTERVAL_MS: '200', ORCH_LEASE_GRACE_MS: '3000', ORCH_WORKER_LOST_AFTER_MS: '15000',
    };
    const servers: ServerProcess[] = [];
    const startServer = async () => {
      const s = await spawnServer(env);
      servers.push(s);
      end(s.child, (c) => kill(c, 'SIGKILL'));
      return s;
    };
    let server = await startServer();
    const url = server.url;
    const serverAlive = (what: string) => assert.ok(alive(server.child), `${what}: the server exited; its log: ${server.stderr().slice(-3000)}`);
    // The test's own reads; the pool survives the restart (idle clients that die are discarded).
    const db = end(createPool(dbUrl, 4), (p) => p.end());

    const admin0 = new OrchClient({ apiUrl: url, tenant: TENANTS[0] });
    await admin0.defineJobType(TYPE, { leaseMs: LEASE_MS, maxAttempts: 10, backoffBaseMs: 100, backoffMaxMs: 1000 }, { reason: 'chaos test setup' });

    const workers = new Map<string, ChildProcess>();
    const killedAt = new Map<string, number>();
    const startWorker = async (id: string, tenant: string) => {
      const child = await spawnFixture(CHAOS_WORKER, [url, tenant, TYPE, id, runLog]);
      end(child, (c) => kill(c, 'SIGKILL'));
      workers.set(id, child);
    };
    await Promise.all([startWorker('a1', TENANTS[0]), startWorker('a2', TENANTS[0]), startWorker('b1', TENANTS[1]), startWorker('b2', TENANTS[1])]);

    const producer = new Producer(url);
    const figures: Figure[] = [];
    const succeeded = async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM orch.jobs WHERE state = 'succeeded'`)).rows[0]!.n);
    const longRunning = async (worker?: string): Promise<Run[]> => {
      const now = Date.now();
      return [...(await readRuns(runLog)).values()].filter((r) => r.long && r.end === null && now - r.start > 300 && (!worker || r.worker === worker));
    };
    const underLoad = async (acceptedAtLeast: number, worker?: string) => {
      await eventually(async () => producer.accepted.size >= acceptedAtLeast && (await longRunning(worker)).length > 0, 60_000,
        `${acceptedAtLeast} jobs accepted and a long job running${worker ? ` on ${worker}` : ''}`);
      return succeeded();
    };

    // 1. kill -9 of the server with long jobs in flight; a new one on the same port.
    {
      const atJobs = await underLoad(500);
      const inFlight = (await longRunning()).length;
      await kill(server.child, 'SIGKILL');
      const t0 = Date.now();
      server = await startServer();
      const readyMs = Date.now() - t0;
      serverAlive('the restarted server runs');
      figures.push({ fault: 'kill -9 of `orch serve`, restarted on the same port', atJobs, detail: `ready ${readyMs} ms after the kill; ${inFlight} long runs in flight` });
    }

    // 2. kill -9 of a worker holding long jobs; another worker takes its place.
    {
      const atJobs = await underLoad(1100, 'a1');
      const orphaned = new Set((await longRunning('a1')).map((r) => r.job));
      const { rows: held } = await db.query<{ id: string }>(`SELECT id::text FROM orch.jobs WHERE state = 'leased' AND worker_id = 'a1'`);
      for (const r of held) orphaned.add(r.id);
      await kill(workers.get('a1')!, 'SIGKILL');
      const t0 = Date.now();
      killedAt.set('a1', t0);
      await startWorker('a3', TENANTS[0]);
      const doneMs = await timeUntil('the killed worker\'s jobs to succeed elsewhere', 60_000, async () => {
        const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM orch.jobs WHERE id = ANY($1::bigint[]) AND state = 'succeeded'`, [[...orphaned]]);
        return Number(rows[0]!.n) === orphaned.size;
      });
      serverAlive('the server survives a worker\'s death');
      figures.push({ fault: 'kill -9 of a worker process', atJobs, detail: `its ${orphaned.size} leased jobs all succeeded on other workers ${doneMs} ms after the kill` });
    }

    // 3. PostgreSQL stopped (fast shutdown) under load, started again after OUTAGE_MS.
    {
      const atJobs = await underLoad(1700);
      await cluster.stop();
      const t0 = Date.now();
      const notReadyMs = await timeUntil('readyz to turn not-ready', 10_000, async () => (await readyz(url))?.code === 503);
      await delay(Math.max(0, t0 + OUTAGE_MS - Date.now()));
      serverAlive('the server survives the database outage');
      await cluster.start();
      const readyMs = await timeUntil('readyz ready after the database returned', READY_WITHIN_MS, async () => (await readyz(url))?.code === 200);
      serverAlive('the server runs after the database returned');
      figures.push({ fault: `PostgreSQL fast shutdown, started again after ${OUTAGE_MS / 1000} s`, atJobs, detail: `/readyz 503 after ${notReadyMs} ms; ready ${readyMs} ms after PostgreSQL was back` });
    }

    // 4. NATS killed under load, started again after OUTAGE_MS.
    {
      const atJobs = await underLoad(2300);
      await nats.stop('SIGKILL');
      const t0 = Date.now();
      const seenMs = await timeUntil('readyz to see the bus gone', 10_000, async () => (await readyz(url))?.bus === false);
      await delay(Math.max(0, t0 + OUTAGE_MS - Date.now()));
      const during = await readyz(url);
      assert.deepEqual([during?.code, during?.status], [200, 'degraded'], 'without NATS the server stays ready, degraded');
      serverAlive('the server survives the NATS outage');
      await nats.start();
      const readyMs = await timeUntil('readyz ready (bus connected) after NATS returned', READY_WITHIN_MS, async () => (await readyz(url))?.status === 'ready');
      figures.push({ fault: `nats-server kill -9, started again after ${OUTAGE_MS / 1000} s`, atJobs, detail: `bus seen down after ${seenMs} ms; ready ${readyMs} ms after NATS was back` });
    }

    // Drain: every job succeeds; the workers stop gracefully (their runs all end); the outbox empties onto the stream.
    await producer.done;
    const drainMs = await timeUntil(`all ${TOTAL} jobs to succeed`, 90_000, async () => (await succeeded()) === TOTAL);
    for (const [id, child] of workers) if (!killedAt.has(id)) await kill(child, 'SIGTERM');
    const { nc, jsm } = await natsConnect(nats.url);
    end(nc, (c) => c.close());
    const expected = await expectedEvents(db);
    await eventually(async () => (await pendingOutboxRows(db)) === 0 && (await streamCount(jsm, STREAM)) >= expected.total, 60_000,
      `the outbox published and ${expected.total} events on the stream`).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${await streamCount(jsm, STREAM)} on the stream, ${await pendingOutboxRows(db)} outbox rows unpublished; ` +
        `server log: ${server.stderr().slice(-3000)}`);
    });
    serverAlive('the server is alive at the end');

    // No job lost: every key the producer sent is one job, and every job in the table succeeded.
    assert.equal(producer.accepted.size, TOTAL);
    const { rows: states } = await db.query<{ state: string; n: string }>('SELECT state::text, count(*) AS n FROM orch.jobs GROUP BY state');
    assert.deepEqual(Object.fromEntries(states.map((r) => [r.state, Number(r.n)])), { succeeded: TOTAL }, 'every job succeeded, none extra');
    const { rows: matched } = await db.query<{ n: string }>(
      `SELECT count(*) AS n FROM orch.jobs WHERE id = ANY($1::bigint[]) AND state = 'succeeded' AND result = jsonb_build_object('n', payload->'n')`,
      [[...producer.accepted.values()]]);
    assert.equal(Number(matched[0]!.n), TOTAL, 'every accepted job succeeded with its own result');

    // No completion recorded twice.
    const { rows: successes } = await db.query<{ job_id: string; lease_id: string; n: string }>(
      `SELECT job_id::text, min(lease_id::text) AS lease_id, count(*) AS n FROM orch.job_history WHERE to_state = 'succeeded' GROUP BY job_id`);
    assert.equal(successes.length, TOTAL);
    assert.deepEqual(successes.filter((r) => r.n !== '1').map((r) => r.job_id), [], 'no job has two succeeded transitions');

    // No job run twice while its worker kept its lease; every recorded success is a run that really finished.
    const runs = await readRuns(runLog);
    const unfinished = [...runs.values()].filter((r) => r.end === null && !killedAt.has(r.worker));
    assert.deepEqual(unfinished.map((r) => `${r.job}/${r.worker}`), [], 'every run of a worker stopped gracefully has ended');
    const { rows: takenRows } = await db.query<{ lease_id: string; actor: string; reason: string | null }>(
      `SELECT lease_id::text, actor, reason FROM orch.job_history WHERE from_state = 'leased' AND to_state IN ('queued', 'dead_lettered') AND lease_id IS NOT NULL`);
    const taken = new Map<string, LeaseTaken>(takenRows.map((r) => [r.lease_id, { actor: r.actor, reason: r.reason }]));
    assert.deepEqual(illegalOverlaps(runs.values(), taken, killedAt), [], 'two runs of one job overlap only when the first lease was taken from its holder');
    assert.deepEqual(keptLeasesLost(runs.values(), taken, new Set(killedAt.keys())).slice(0, 10), [],
      'a worker that kept heartbeating keeps its leases through every fault: no job runs twice on live workers');
    const finished = new Map([...runs.values()].filter((r) => r.end !== null && !r.aborted).map((r) => [r.lease, r]));
    assert.deepEqual(successes.filter((s) => finished.get(s.lease_id)?.job !== s.job_id).map((s) => s.job_id), [],
      'each success was acked by the run of its lease, which finished');
    const reruns = [...runs.values()].length - TOTAL;

    // Every event reaches the bus, once, in its tenant.
    const msgs = await readStream<{ eventId: string; eventType: string; tenantId: string; job: { id: string } | null }>(nc, STREAM);
    assert.equal(msgs.length, expected.total, `one message per history entry and inline event (${expected.total})`);
    assert.equal(new Set(msgs.map((m) => m.body.eventId)).size, msgs.length, 'no event id twice');
    const leaked = msgs.filter((m) => m.subject.split('.')[2] !== m.body.tenantId);
    assert.deepEqual(leaked.slice(0, 5).map((m) => `${m.subject} ${m.body.tenantId}`), [], 'every event on its own tenant\'s subject');
    for (const tenant of TENANTS) {
      assert.equal(msgs.filter((m) => m.body.tenantId === tenant).length, expected.byTenant.get(tenant) ?? 0, `events of ${tenant}`);
    }
    const succeededEvents = new Map<string, number>();
    for (const m of msgs) if (m.body.eventType === 'job.succeeded') succeededEvents.set(m.body.job!.id, (succeededEvents.get(m.body.job!.id) ?? 0) + 1);
    assert.equal(succeededEvents.size, TOTAL, 'a job.succeeded event for every job');
    assert.deepEqual([...succeededEvents].filter(([, n]) => n !== 1), [], 'one job.succeeded event per job');

    const logs = servers.map((s) => s.stderr()).join('\n');
    assert.doesNotMatch(logs, /Unhandled|uncaught/i, 'no unhandled error in the servers\' logs');

    const report = [
      `chaos: ${TOTAL} jobs (${TOTAL / LONG_EVERY} of them 2.5-5 s runs on a ${LEASE_MS / 1000} s lease), ${TENANTS.length} tenants, 5 worker processes; ` +
        `${runs.size} runs (${reruns} re-runs after a lost lease), ${msgs.length} events, ${producer.retriedBatches} enqueue batches retried; ` +
        `drained ${drainMs} ms after the last fault; whole run ${Math.round((Date.now() - began) / 1000)} s`,
      ...figures.map((f) => `chaos: ${f.fault} (at ${f.atJobs} jobs done): ${f.detail}`),
    ];
    for (const line of report) t.diagnostic(line);
  });
});

/** Outbox rows JetStream has not acknowledged yet. */
async function pendingOutboxRows(db: pg.Pool): Promise<number> {
  return Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM orch.outbox WHERE published_at IS NULL')).rows[0]!.n);
}

/** The events the ledger owes the bus: one per history entry, plus those written inline (progress, controls), by tenant. */
async function expectedEvents(db: pg.Pool): Promise<{ total: number; byTenant: Map<string, number> }> {
  const { rows } = await db.query<{ tenant_id: string; n: string }>(
    `SELECT tenant_id, sum(n) AS n FROM (
       SELECT tenant_id, cardinality(job_ids) AS n FROM orch.job_transitions
       UNION ALL SELECT tenant_id, jsonb_array_length(events) FROM orch.outbox WHERE events IS NOT NULL) x
     GROUP BY tenant_id`);
  const byTenant = new Map(rows.map((r) => [r.tenant_id, Number(r.n)]));
  return { total: [...byTenant.values()].reduce((a, b) => a + b, 0), byTenant };
}
