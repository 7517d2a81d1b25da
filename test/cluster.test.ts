/**
 * Several replicas on one database: one leader runs the leader-only
 * services, under a term the database fences; a leader killed with -9 or cut
 * from the database is replaced within two renew intervals; `orch cluster
 * status`, GET /cluster and the metrics show who leads.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { defaultConfig } from '../src/config/config.ts';
import { createPool, SERVICE_ROLE } from '../src/ledger/db.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { sample } from '../src/metrics/exposition.ts';
import { OrchClient } from '../src/sdk/client.ts';
import type { ClusterStatus } from '../src/cluster/status.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import type { ServerProcess } from '../src/synthetic/server-process.ts';
import { createTestDatabase } from './helpers/db.ts';
import { kill } from './helpers/processes.ts';
import { scope } from './helpers/scope.ts';
import { eventually, runCli, spawnServer, startTestServer } from './helpers/server.ts';
import { TcpProxy } from './helpers/tcp-proxy.ts';

const RENEW_MS = 1000;
const cluster = { ...defaultConfig.cluster, leaderRenewMs: RENEW_MS };
const status = (url: string) => new OrchClient({ apiUrl: url }).clusterStatus();
const leaderOf = (c: ClusterStatus) => (c.leader?.live ? c.leader : null);

describe('one leader among replicas', () => {
  test('three replicas: one leads and runs the leader-only services, the others none; status, CLI and metrics agree', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const planes: ControlPlane[] = [];
    for (let i = 0; i < 3; i++) planes.push(end(await startTestServer(db.url, { cluster: { ...cluster, replicaId: `r${i}` } }), (p) => p.stop()));
    // (in one process a starting server blocks the others' event loops, renewals included: leadership may move while they start)
    const leader = await eventually(async () => {
      const leading = planes.filter((p) => p.elector.term !== null);
      assert.ok(leading.length <= 1, 'never two leaders');
      return leading[0];
    }, 5000, 'one replica to lead');
    for (const p of planes) {
      const names = p.services.map((s) => s.name);
      assert.deepEqual(names.includes('lease-reaper'), p === leader, `${names.join(',')}: leader-only services on the leader only`);
      assert.ok(names.includes('leader-elector'));
    }
    const c = await eventually(async () => {
      const s = await status(planes[2]!.url);
      // a replica reports its services each renew interval: one that just lost its term on a loaded machine
      // still shows the leader's until its next report, so wait for reports that agree with one leader
      const settled = s.replicas.filter((r) => !r.leader).every((r) => r.services.length === 1);
      return s.replicas.length === 3 && s.replicas.every((r) => r.services.length > 0) && settled ? s : null;
    }, 10_000, 'every replica reported, the followers with the elector only');
    assert.equal(leaderOf(c)?.replicaId, c.replicas.find((r) => r.leader)?.id);
    assert.deepEqual(c.replicas.map((r) => [r.id, r.state, r.notify]), [['r0', 'up', 'listen'], ['r1', 'up', 'listen'], ['r2', 'up', 'listen']]);
    assert.ok(c.replicas.find((r) => r.leader)!.services.includes('outbox-pruner'));
    assert.deepEqual(c.replicas.filter((r) => !r.leader).map((r) => r.services), [['leader-elector'], ['leader-elector']]);

    const cli = await runCli(['cluster', 'status'], { ORCH_API_URL: planes[1]!.url });
    assert.equal(cli.code, 0, cli.stderr);
    // the leader the status showed before the CLI ran, or after (on a loaded machine a renewal can be late and a new term begin)
    const later = await status(planes[2]!.url);
    const lines = [c, later].map((x) => `leader: ${leaderOf(x)?.replicaId} (term ${leaderOf(x)?.term}, since `);
    assert.ok(lines.some((l) => cli.stdout.startsWith(l)), `${cli.stdout} starts with one of ${lines.join(' | ')}`);
    assert.match(cli.stdout, /ID\s+STATE\s+LEADER/);

    for (const p of planes) {
      const text = await p.metrics.scrape();
      assert.equal(sample(text, 'orchestrator_leader'), p === leader ? 1 : 0);
      assert.equal(sample(text, 'orchestrator_replicas'), 3);
    }

    // A clean stop resigns: another replica leads at once, under the next term, and the stopped one shows as stopped.
    const before = leaderOf(c)!.term;
    await leader.stop();
    const next = await eventually(async () => planes.find((p) => p !== leader && p.elector.term !== null), 2 * RENEW_MS, 'a new leader right after the resignation');
    assert.ok(next.elector.term! > before);
    const after = await eventually(async () => {
      const s = await status(next.url);
      return s.replicas.some((r) => r.state === 'stopped') ? s : null;
    }, 5000, 'the stopped replica reported');
    assert.equal(after.replicas.find((r) => r.id === c.replicas.find((x) => x.leader)!.id)?.state, 'stopped');
  });

  test('kill -9 of the leader: another replica leads within two renew intervals, and each term had one holder', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const servers: (ServerProcess & { id: string })[] = [];
    for (const id of ['k0', 'k1', 'k2']) {
      const s = await spawnServer({
        ORCH_DATABASE_URL: db.url, ORCH_HTTP_PORT: String(await freePort()), ORCH_REPLICA_ID: id, ORCH_LEADER_RENEW_MS: String(RENEW_MS), ORCH_LOG_LEVEL: 'info',
      });
      end(s.child, (c) => kill(c, 'SIGKILL'));
      servers.push({ id, ...s });
    }
    const first = await eventually(async () => leaderOf(await status(servers[0]!.url)), 5000, 'a leader');
    const victim = servers.find((s) => s.id === first.replicaId)!;
    await kill(victim.child, 'SIGKILL');
    const killedAt = Date.now();
    const survivor = servers.find((s) => s !== victim)!;
    const next = await eventually(async () => {
      const l = leaderOf(await status(survivor.url));
      return l && l.replicaId !== victim.id ? l : null;
    }, 10 * RENEW_MS, 'a new leader after the kill');
    const takeoverMs = Date.now() - killedAt;
    t.diagnostic(`new leader ${next.replicaId} (term ${next.term}) ${takeoverMs} ms after kill -9 of ${victim.id} (renew ${RENEW_MS} ms)`);
    assert.ok(takeoverMs <= 2 * RENEW_MS + 300, `took over in ${takeoverMs} ms; two renew intervals are ${2 * RENEW_MS} ms (+ polling)`);
    assert.ok(next.term > first.term);
    const { rows } = await db.pool.query<{ term: string; replica_id: string }>('SELECT term::text, replica_id FROM orch.leader_terms ORDER BY term');
    assert.deepEqual(rows.map((r) => Number(r.term)), rows.map((_, i) => i + 1), 'terms count up by one, each held once (the primary key)');
    // Every leader-only start a server logged names its own replica and a term that replica held.
    for (const s of servers) {
      const terms = [...s.stderr().matchAll(/"term":(\d+)[^\n]*this replica leads/g)].map((m) => m[1]);
      for (const term of terms) assert.equal(rows.find((r) => r.term === term)?.replica_id, s.id, `term ${term} logged by ${s.id}`);
    }
    await eventually(async () => (await status(survivor.url)).replicas.find((r) => r.id === victim.id)?.state === 'lost', 5 * RENEW_MS, 'the killed replica shown as lost');
  });

  test('a leader cut off from the database stops its leader-only services before its lease expires; another leads', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const { proxy, url: viaProxy } = await TcpProxy.inFrontOf(db.url);
    end(proxy, (p) => p.close());
    const cut = end(await startTestServer(viaProxy, { cluster: { ...cluster, replicaId: 'cut' }, databaseWaitMs: 1000 }), (p) => p.stop());
    // (a process of its own: a second server starting in this process would block the first one's event loop, renewals included)
    const other = await spawnServer({ ORCH_DATABASE_URL: db.url, ORCH_HTTP_PORT: String(await freePort()), ORCH_REPLICA_ID: 'other', ORCH_LEADER_RENEW_MS: String(RENEW_MS) });
    end(other.child, (c) => kill(c, 'SIGKILL'));
    assert.notEqual(cut.elector.term, null, 'the first replica leads');
    assert.equal(leaderOf(await status(other.url))?.replicaId, 'cut');
    const steppedDown = new Promise<number>((resolve) => cut.elector.once('follower', () => resolve(Date.now())));
    await proxy.cut();
    const cutAt = Date.now();
    const downAt = await steppedDown;
    assert.ok(downAt - cutAt < 1.5 * RENEW_MS, `stepped down ${downAt - cutAt} ms after the cut, within its lease (${1.5 * RENEW_MS} ms)`);
    assert.deepEqual(cut.services.map((s) => s.name), ['leader-elector']);
    // an operator sees it: the step-down counted under its cause (read from the counter: a scrape would ask the unreachable database for the gauges)
    const { values } = await cut.metrics.leaderStepDowns.get();
    const stepDowns = Object.fromEntries(values.map((v) => [v.labels.cause, v.value]));
    assert.deepEqual(stepDowns, { renewal_late: 1, superseded: 0, shutdown: 0 }, 'orchestrator_leader_stepdowns_total');
    await eventually(async () => leaderOf(await status(other.url))?.replicaId === 'other', 4 * RENEW_MS, 'the other replica to lead');
    await proxy.restore();
    // Back on the database, the cut replica follows: it does not take the lease back.
    await new Promise((r) => cut.elector.once('run', r));
    await new Promise((r) => cut.elector.once('run', r));
    const terms = (await db.pool.query('SELECT term, replica_id, started_at FROM orch.leader_terms ORDER BY term')).rows;
    assert.equal(cut.elector.term, null, `terms: ${JSON.stringify(terms)}`);
    assert.equal(leaderOf(await status(other.url))?.replicaId, 'other');
  });
});

describe('the lease reaper under a new leader', () => {
  test('a replica that takes over long after it started reaps lapsed leases at once: the start-up grace counts from its own start', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const GRACE = 4000;
    const maintenance = { ...defaultConfig.maintenance, leaseGraceMs: GRACE, leaseReaperIntervalMs: 100 };
    const first = end(await startTestServer(db.url, { cluster: { ...cluster, replicaId: 'g0' }, maintenance }), (p) => p.stop());
    const second = end(await startTestServer(db.url, { cluster: { ...cluster, replicaId: 'g1' }, maintenance }), (p) => p.stop());
    await new Promise((r) => setTimeout(r, GRACE + 200)); // both past their start-up grace
    await first.ledger.jobTypes.define('graced', { leaseMs: 1000, maxAttempts: 5 });
    const [job] = await first.ledger.enqueue([{ tenantId: 'g', jobType: 'graced', payload: {} }]);
    await first.ledger.claim({ workerId: 'silent', jobTypes: ['graced'], limit: 1 });
    await first.stop(); // resigns: the second replica leads at its next run
    const led = await eventually(async () => second.elector.term !== null && Date.now(), 2 * RENEW_MS, 'the second replica to lead');
    // the lease lapses a second after the claim; a reaper holding a grace from its term's start would wait 4 s
    await eventually(async () => (await second.ledger.getJob('g', job!.id))?.state === 'queued', GRACE - 1000, 'the lapsed lease reaped well within the grace period');
    t.diagnostic(`reaped ${Date.now() - led} ms after the new term began`);
  });
});

describe('the lease reaper after a database outage', () => {
  test('the leader re-elected after an outage gives workers the grace period to heartbeat before reaping', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const { proxy, url: viaProxy } = await TcpProxy.inFrontOf(db.url);
    end(proxy, (p) => p.close());
    const GRACE = 3000;
    const maintenance = { ...defaultConfig.maintenance, leaseGraceMs: GRACE, leaseReaperIntervalMs: 100 };
    const plane = end(await startTestServer(viaProxy, { cluster: { ...cluster, replicaId: 'o0' }, maintenance }), (p) => p.stop());
    const worker = new Ledger(db.pool, defaultConfig); // the worker's side reaches the database directly
    await new Promise((r) => setTimeout(r, GRACE + 200)); // past the start-up grace
    await worker.jobTypes.define('outaged', { leaseMs: 1000, maxAttempts: 5 });
    const [job] = await worker.enqueue([{ tenantId: 'o', jobType: 'outaged', payload: {} }]);
    const [lease] = await worker.claim({ workerId: 'cut-off', jobTypes: ['outaged'], limit: 1 });
    await proxy.cut();
    await new Promise((r) => setTimeout(r, 2500)); // the lease lapses; the leader steps down
    assert.equal(plane.elector.term, null, 'the leader stepped down during the outage');
    await proxy.restore();
    await eventually(async () => plane.elector.term !== null, 5000, 'the leader back');
    await new Promise((r) => setTimeout(r, 1000)); // ten reaper runs
    const [beat] = await worker.heartbeat([{ tenantId: 'o', jobId: job!.id, leaseId: lease!.leaseId }]);
    assert.equal(beat?.status, 'ok', `the holder keeps its job after the outage: ${JSON.stringify(beat)}`);
    assert.equal((await worker.getJob('o', job!.id))?.state, 'leased');
  });
});

describe('the fence', () => {
  test('a statement carrying a term that is over is refused by the database (OT001); the current term writes', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const plane = end(await startTestServer(db.url, { cluster: { ...cluster, replicaId: 'f0' } }), (p) => p.stop());
    const term = plane.elector.term!;
    const write = async (asTerm: number) => {
      const pool = createPool(db.url, 1, { role: SERVICE_ROLE, settings: { 'orch.leader_term': String(asTerm) } });
      try {
        await pool.query("UPDATE orch.workers SET last_seen = last_seen WHERE worker_id = 'nobody'");
        return 'ok';
      } catch (err) {
        return (err as { code?: string }).code;
      } finally {
        await pool.end();
      }
    };
    assert.equal(await write(term), 'ok');
    assert.equal(await write(term - 1), 'OT001');
    assert.equal(await write(term + 1), 'OT001');
    await plane.stop();
    assert.equal(await write(term), 'OT001', 'after the leader resigned its term writes nothing');
  });

  test('every ledger table carries the fence trigger (a table a later migration adds must too)', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const { rows } = await db.pool.query<{ relname: string }>(`
      SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'orch' AND c.relkind = 'r'
        AND c.relname NOT IN ('replicas', 'cluster_leader', 'leader_terms', 'schema_migrations')
        AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'leader_term_fence')
      ORDER BY 1`);
    assert.deepEqual(rows.map((r) => r.relname), []);
  });
});

describe('ORCH_NOTIFY', () => {
  test('poll: no LISTEN connection, work is still found within the poll interval, and cluster status says so', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const plane = end(await startTestServer(db.url, { cluster: { ...cluster, notify: 'poll', pollMs: 50, replicaId: 'poller' } }), (p) => p.stop());
    const { rows } = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'orch-notifier'");
    assert.equal(rows[0]!.n, 0, 'no LISTEN connection in poll mode');
    const client = new OrchClient({ apiUrl: plane.url, tenant: 'p' });
    const waiting = fetch(`${plane.url}/api/v1/orchestrator/claim`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-tenant-id': 'p' },
      body: JSON.stringify({ workerId: 'w', jobTypes: ['polled'], limit: 1, waitMs: 20_000 }),
    });
    await new Promise((r) => setTimeout(r, 200));
    const { id } = await client.enqueue({ jobType: 'polled', payload: {} });
    const enqueuedAt = Date.now();
    const claimed = (await (await waiting).json()) as { leases: { jobId: string }[] };
    assert.deepEqual(claimed.leases.map((l) => l.jobId), [id]);
    assert.ok(Date.now() - enqueuedAt < 1000, `claimed ${Date.now() - enqueuedAt} ms after the enqueue`);
    const c = await status(plane.url);
    assert.equal(c.replicas[0]?.notify, 'poll');
  });

  test('auto: the self-probe finds LISTEN/NOTIFY working on a direct connection', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const plane = end(await startTestServer(db.url, { cluster: { ...cluster, notify: 'auto', replicaId: 'auto' } }), (p) => p.stop());
    const c = await eventually(async () => (await status(plane.url)).replicas[0], 5000, 'the replica reported');
    assert.equal(c.notify, 'listen');
  });

  test('a bad ORCH_NOTIFY stops the server at start with the variable named', async () => {
    const r = await runCli(['serve'], { ORCH_NOTIFY: 'sometimes', ORCH_HTTP_PORT: String(await freePort()) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ORCH_NOTIFY must be "auto", "listen" or "poll", got "sometimes"/);
  });
});
