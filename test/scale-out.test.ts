/**
 * The scale-out proof: three `orch serve` replicas on one PostgreSQL behind a
 * balancer, a three-node JetStream cluster holding the events stream at R3,
 * remote workers, and faults in turn while jobs run: kill -9 of the leader,
 * of one NATS node, of a replica that does not lead. Counted from the ledger
 * and the stream: no job lost, none completed twice, every event stored once,
 * each term held by one replica. SCALE_OUT_JOBS sets the job count (default
 * 4,000 on the 2-core CI machine; the 20,000 runs with it set).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger } from '../src/logging.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { createWorker } from '../src/sdk/worker.ts';
import { freePort } from '../src/ledger/embedded.ts';
import type { ServerProcess } from '../src/synthetic/server-process.ts';
import { Balancer } from './helpers/balancer.ts';
import { createTestDatabase } from './helpers/db.ts';
import { natsConnect, NatsProcess, skipUnlessNats, streamCount, subjectPrefixOf } from './helpers/nats.ts';
import { kill } from './helpers/processes.ts';
import { scope } from './helpers/scope.ts';
import { eventually, spawnServer } from './helpers/server.ts';

const JOBS = Number(process.env.SCALE_OUT_JOBS ?? 4000);
const RENEW_MS = 1000;
const natsSkip = await skipUnlessNats('the scale-out test (a three-node JetStream cluster)', { binary: true });

describe('three replicas, a three-node NATS cluster, faults in turn', { skip: natsSkip }, () => {
  test(`${JOBS} jobs through kill -9 of the leader, a NATS node and a follower: nothing lost, nothing twice`, async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const nats = end(await NatsProcess.cluster(3), (ns) => Promise.all(ns.map((n) => n.destroy())));
    const stream = 'SCALE_OUT';
    const replicas: (ServerProcess & { id: string })[] = [];
    for (const id of ['a', 'b', 'c']) {
      const s = await spawnServer({
        ORCH_DATABASE_URL: db.url, ORCH_HTTP_PORT: String(await freePort()), ORCH_REPLICA_ID: id, ORCH_LEADER_RENEW_MS: String(RENEW_MS),
        ORCH_NATS_URL: nats.map((n) => n.url).join(','), ORCH_EVENTS_STREAM: stream, ORCH_EVENTS_SUBJECT_PREFIX: subjectPrefixOf(stream),
        ORCH_EVENTS_REPLICAS: '3', ORCH_LOG_LEVEL: 'info', ORCH_WORKER_LOST_AFTER_MS: '15000',
      });
      end(s.child, (c) => kill(c, 'SIGKILL'));
      replicas.push({ id, ...s });
    }
    const lb = end(await Balancer.start(replicas.map((r) => r.url)), (b) => b.close());
    const api = new OrchClient({ apiUrl: lb.url, tenant: 'scale' });
    const status = () => api.clusterStatus();
    await api.defineJobType('scaled', { leaseMs: 5000, maxAttempts: 5, backoffBaseMs: 100, backoffMaxMs: 500 }, { reason: 'scale-out test' });
    const workers = [];
    for (let i = 0; i < 3; i++) {
      workers.push(end(await createWorker<{ n: number }>({
        apiUrl: lb.url, tenant: 'scale', jobTypes: ['scaled'], concurrency: 16, waitMs: 500, handleSignals: false, log: createLogger('silent'),
        handler: async (j) => ({ n: j.payload.n }),
      }), (w) => w.stop()));
    }
    const succeeded = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM orch.jobs WHERE tenant_id = 'scale' AND state = 'succeeded'")).rows[0]!.n;
    let ended = false;
    end(null, async () => (ended = true));
    const enqueueing = (async () => {
      for (let i = 0; i < JOBS && !ended; i += 200) {
        const batch = Array.from({ length: Math.min(200, JOBS - i) }, (_, k) => ({ jobType: 'scaled', payload: { n: i + k }, idempotencyKey: `job-${i + k}` }));
        for (let attempt = 1; !ended; attempt++) {
          try {
            await api.enqueueBatch(batch);
            break;
          } catch (err) {
            // a replica died under the request: the idempotency keys make the retry safe
            if (attempt === 50) throw err;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      }
    })();
    enqueueing.catch(() => undefined);
    const leaderId = async () => (await status().catch(() => null))?.leader;

    // 1. kill -9 the leader once a quarter of the jobs are done
    await eventually(async () => (await succeeded()) >= JOBS / 4, 120_000, 'a quarter done');
    const first = (await leaderId())!;
    const leader = replicas.find((r) => r.id === first.replicaId)!;
    await kill(leader.child, 'SIGKILL');
    const killedAt = Date.now();
    lb.remove(leader.url);
    const second = await eventually(async () => {
      const l = await leaderId();
      return l?.live && l.replicaId !== leader.id ? l : null;
    }, 10_000, 'a new leader');
    const takeoverMs = Date.now() - killedAt;

    // 2. kill -9 one NATS node at half
    await eventually(async () => (await succeeded()) >= JOBS / 2, 120_000, 'half done');
    await nats[0]!.stop('SIGKILL');

    // 3. kill -9 a replica that does not lead at three quarters
    await eventually(async () => (await succeeded()) >= (3 * JOBS) / 4, 120_000, 'three quarters done');
    const follower = replicas.find((r) => r !== leader && r.id !== second.replicaId)!;
    await kill(follower.child, 'SIGKILL');
    lb.remove(follower.url);

    await enqueueing;
    await eventually(async () => (await succeeded()) === JOBS, 180_000, `all ${JOBS} jobs done`);

    // The ledger: every job once, no job completed twice.
    const { rows: [counts] } = await db.pool.query<{ jobs: number; succeeded: number; twice: number }>(`
      SELECT (SELECT count(*)::int FROM orch.jobs WHERE tenant_id = 'scale') AS jobs,
             (SELECT count(*)::int FROM orch.jobs WHERE tenant_id = 'scale' AND state = 'succeeded') AS succeeded,
             (SELECT count(*)::int FROM (SELECT h.job_id FROM orch.job_history h WHERE h.tenant_id = 'scale' AND h.to_state = 'succeeded'
                                         GROUP BY h.job_id HAVING count(*) > 1) x) AS twice`);
    // The stream: as many events as history entries, each id once (JetStream's duplicate window drops re-publications).
    const history = (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM orch.job_history WHERE tenant_id = 'scale'")).rows[0]!.n;
    const live = nats.slice(1);
    const { jsm } = end(await natsConnect(live.map((n) => n.url).join(',')), (c) => c.nc.close());
    // the job events (the job type's definition is a control event on another subject)
    const jobEvents = async () => {
      const info = await jsm.streams.info(stream, { subjects_filter: `${subjectPrefixOf(stream)}.scale.scaled.>` });
      return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    };
    await eventually(async () => {
      const pending = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orch.outbox WHERE published_at IS NULL')).rows[0]!.n;
      // (the stream's requests may time out while the cluster elects a new meta leader: asked again)
      return pending === 0 && (await jobEvents().catch(() => -1)) >= history;
    }, 60_000, 'every event published');
    const stored = await jobEvents();
    assert.ok((await streamCount(jsm, stream)) >= stored);
    const { rows: terms } = await db.pool.query<{ term: string; replica_id: string; started_at: Date }>('SELECT term::text, replica_id, started_at FROM orch.leader_terms ORDER BY term');
    const newTerm = terms.find((r) => Number(r.term) === second.term)!;
    const leaderless = newTerm.started_at.getTime() - killedAt;
    for (const r of replicas) {
      for (const m of r.stderr().matchAll(/"term":(\d+),"replica":"(\w+)"[^\n]*this replica leads/g)) {
        assert.equal(terms.find((x) => x.term === m[1])?.replica_id, m[2], `term ${m[1]} ran leader-only services on ${m[2]} only`);
        assert.equal(m[2], r.id);
      }
    }
    const figures = {
      jobs: JOBS, lost: JOBS - counts!.succeeded, completedTwice: counts!.twice, historyEntries: history, eventsStored: stored,
      eventsLostOrDuplicated: stored - history, newLeaderAfterMs: takeoverMs, leaderlessMs: leaderless, terms: terms.length,
    };
    t.diagnostic(`scale-out figures: ${JSON.stringify(figures)}`);
    process.stderr.write(`scale-out figures: ${JSON.stringify(figures)}\n`);
    assert.equal(counts!.jobs, JOBS, 'no job enqueued twice (idempotency keys)');
    assert.equal(figures.lost, 0);
    assert.equal(figures.completedTwice, 0);
    assert.equal(stored, history, 'one event per history entry: none lost, none duplicated');
    assert.ok(takeoverMs <= 2 * RENEW_MS + 1000, `new leader ${takeoverMs} ms after the kill (renew ${RENEW_MS} ms; status polled through the balancer)`);
    for (const w of workers) await w.stop();
  });
});
