import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../src/config/config.ts';
import { createPool } from '../src/ledger/db.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import type { Lease } from '../src/ledger/types.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';

/**
 * Our connections keep one generic plan per prepared transition, made at its
 * first run. A ledger that starts empty has those plans made on a table of a
 * few rows, where reading the whole table looks cheapest; the plans stay
 * while the table grows into millions (until an ANALYZE invalidates them,
 * and autovacuum may be off). The transitions must reach job rows through
 * their indexes whatever the statistics said when they were planned.
 */

let db: TestDatabase;
let admin: pg.Client;

before(async () => {
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  // no ANALYZE may come along and replan: the plans stay those made on the nearly empty table
  await admin.query('ALTER TABLE orch.jobs SET (autovacuum_enabled = false)');
});

after(async () => {
  await admin?.end();
  await db?.drop();
});

const refs = (leases: Lease[]) => leases.map((l) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId }));

test('transitions planned on a nearly empty ledger never read the whole job table once it has grown', async () => {
  // one connection: every statement below reuses the plan it made in the first round
  const pool = createPool(db.url, 1);
  const ledger = new Ledger(pool, loadConfig({}));
  const req = { workerId: 'w', jobTypes: ['pl_grow'], limit: 50 };
  const round = async () => {
    const leases = await ledger.claim(req);
    const [done, failed, released, beating] = [leases.slice(0, 20), leases.slice(20, 30), leases.slice(30, 40), leases.slice(40)];
    await ledger.heartbeat(refs(beating));
    await ledger.complete(refs(done), 'worker:w');
    await ledger.fail(refs(failed).map((r) => ({ ...r, error: { class: 'Boom', message: 'again' } })), 'worker:w');
    await ledger.release(refs(released), 'worker:w');
    await ledger.complete(refs(beating), 'worker:w');
    return leases.length;
  };
  const seqRead = async () => {
    // flush this connection's pending table statistics (PostgreSQL reports them when it goes idle)
    await pool.query('SELECT pg_stat_force_next_flush()');
    await pool.query('SELECT 1');
    await admin.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await admin.query<{ n: string }>(
      `SELECT seq_tup_read AS n FROM pg_stat_user_tables WHERE schemaname = 'orch' AND relname = 'jobs'`);
    return Number(rows[0]!.n);
  };
  try {
    await ledger.enqueue(Array.from({ length: 50 }, (_, i) => ({ tenantId: 'pl', jobType: 'pl_grow', payload: i })));
    assert.equal(await round(), 50, 'every statement planned while the table holds 50 jobs');
    const before = await seqRead();
    for (let i = 0; i < 4; i++) {
      await ledger.enqueue(Array.from({ length: 1000 }, (_, k) => ({ tenantId: 'pl', jobType: 'pl_grow', payload: k })));
    }
    for (let i = 0; i < 5; i++) assert.equal(await round(), 50);
    assert.equal(await seqRead() - before, 0, 'rows of orch.jobs read by sequential scans after the table grew');
  } finally {
    await pool.end();
  }
});

test('a claim of one queue without quota or pause runs the single-queue statement alone; sharing or a control takes the fair one', async () => {
  const pool = createPool(db.url, 1);
  const ledger = new Ledger(pool, loadConfig({}));
  // the statements this connection has prepared so far: each claim form is prepared on its first run
  const prepared = async () => (await pool.query<{ name: string }>(
    `SELECT name FROM pg_prepared_statements WHERE name LIKE 'orch_claim%' ORDER BY name`)).rows.map((r) => r.name);
  try {
    await ledger.enqueue([{ tenantId: 'one', jobType: 'pl_single', payload: 1 }, { tenantId: 'one', jobType: 'pl_single', payload: 2 }]);
    const solo = await ledger.claimRound({ workerId: 'w', jobTypes: ['pl_single'], limit: 5 });
    assert.deepEqual([solo.leases.map((l) => l.payload), solo.drained], [[1, 2], true]);
    assert.deepEqual(await prepared(), ['orch_claim_single'], 'one queue: the fair claim never ran');

    await ledger.enqueue([{ tenantId: 'one', jobType: 'pl_shared', payload: 'a' }, { tenantId: 'two', jobType: 'pl_shared', payload: 'b' }]);
    const shared = await ledger.claimRound({ workerId: 'w', jobTypes: ['pl_shared'], limit: 5 });
    assert.deepEqual(shared.leases.map((l) => l.payload).sort(), ['a', 'b']);
    assert.deepEqual(await prepared(), ['orch_claim', 'orch_claim_single'], 'two tenants: the fair claim shared the limit');
  } finally {
    await pool.end();
  }
});
