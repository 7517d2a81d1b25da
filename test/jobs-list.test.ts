import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import { listJobs } from '../src/ledger/queries.ts';
import type { Job, JobSort, JobState } from '../src/ledger/types.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { runCli, startTestServer } from './helpers/server.ts';

/**
 * `GET /jobs?sort=` / `orch jobs list --sort oldest|newest|priority`: the
 * runbook's QueueDepthHigh step needs the oldest waiting work first, which a
 * newest-first list hides behind every job enqueued since.
 */

const TENANT = 'lister';
let db: TestDatabase;
let plane: ControlPlane;
let client: OrchClient;
/** Queued jobs in enqueue order: ids ascending. */
let queued: { id: string; jobType: string; priority: number }[] = [];

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
  client = new OrchClient({ apiUrl: plane.url, tenant: TENANT });
  // Two types, three priority levels interleaved, so no single order (id, priority) explains another.
  const jobs = Array.from({ length: 23 }, (_, i) => ({ jobType: i % 2 ? 'thumb' : 'render', payload: { i }, priority: [0, 5, 1][i % 3]! }));
  const refs = await client.enqueueBatch(jobs);
  queued = refs.map((r, i) => ({ id: r.id, jobType: r.jobType, priority: jobs[i]!.priority }));
  // noise in other states and another tenant, which no queued listing may show
  await new OrchClient({ apiUrl: plane.url, tenant: 'other' }).enqueue({ jobType: 'render', payload: {}, priority: 9 });
});

after(async () => {
  await plane?.stop();
  await db?.drop();
});

async function all(filter: { state?: JobState; jobType?: string; sort?: JobSort }, limit: number): Promise<Job[]> {
  const jobs: Job[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listJobs({ ...filter, limit, cursor });
    assert.ok(page.jobs.length <= limit);
    jobs.push(...page.jobs);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return jobs;
}

const byId = (a: { id: string }, b: { id: string }) => Number(a.id) - Number(b.id);

test('sort=oldest lists the first enqueued first and pages through every job exactly once', async () => {
  const ids = (await all({ state: 'queued', sort: 'oldest' }, 4)).map((j) => j.id);
  assert.deepEqual(ids, queued.map((q) => q.id));
  const first = await client.listJobs({ state: 'queued', jobType: 'thumb', sort: 'oldest', limit: 1 });
  assert.equal(first.jobs[0]?.id, queued.find((q) => q.jobType === 'thumb')!.id, 'with --type: that type\'s oldest');
});

test('newest stays the default and is the reverse', async () => {
  const ids = (await all({ state: 'queued' }, 5)).map((j) => j.id);
  assert.deepEqual(ids, queued.map((q) => q.id).reverse());
  assert.deepEqual((await all({ state: 'queued', sort: 'newest' }, 7)).map((j) => j.id), ids);
});

test('sort=priority lists waiting jobs in claim order (priority, then run_after, then id) across types and pages', async () => {
  const claimOrder = (jobs: Job[]) => [...jobs].sort((a, b) => b.priority - a.priority || Date.parse(a.runAfter) - Date.parse(b.runAfter) || byId(a, b));
  for (const limit of [1, 3, 50]) {
    const listed = await all({ state: 'queued', sort: 'priority' }, limit);
    assert.equal(listed.length, queued.length, `page size ${limit}: every queued job once`);
    assert.deepEqual(listed.map((j) => j.id), claimOrder(listed).map((j) => j.id), `page size ${limit}`);
    assert.deepEqual(new Set(listed.map((j) => j.id)), new Set(queued.map((q) => q.id)));
  }
  const thumbs = await all({ state: 'queued', jobType: 'thumb', sort: 'priority' }, 2);
  assert.deepEqual(thumbs.map((j) => j.id), claimOrder(thumbs).map((j) => j.id));
  assert.deepEqual(thumbs.map((j) => j.priority).slice(0, 1), [5]);
  assert.ok(thumbs.every((j) => j.jobType === 'thumb') && thumbs.length === queued.filter((q) => q.jobType === 'thumb').length);
});

test('a bad sort, or priority outside waiting work, is a 400 naming the field', async () => {
  for (const query of ['sort=oldest-first', 'sort=priority', 'sort=priority&state=succeeded']) {
    const res = await fetch(`${plane.url}/api/v1/orchestrator/jobs?${query}`, { headers: { 'x-tenant-id': TENANT } });
    assert.equal(res.status, 400, query);
    const body = await res.json() as { error: { field: string } };
    assert.equal(body.error.field, 'sort', query);
  }
});

test('orch jobs list --sort oldest prints the oldest first; a bad --sort is one line on stderr, exit 1', async () => {
  const r = await runCli(['--api-url', plane.url, '--tenant', TENANT, 'jobs', 'list', '--state', 'queued', '--type', 'render', '--sort', 'oldest', '--limit', '2', '--output', 'json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as { jobs: Job[] }).jobs.map((j) => j.id), queued.filter((q) => q.jobType === 'render').slice(0, 2).map((q) => q.id));
  const bad = await runCli(['--api-url', plane.url, '--tenant', TENANT, 'jobs', 'list', '--sort', 'age']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /--sort/);
});

test('each sort reads an index range: no sequential scan of the job table, even when the planner knows it is large', async () => {
  // Many ended jobs beside the queued ones, so a scan would be the expensive plan it is in production.
  const c = await db.pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(`INSERT INTO orch.jobs (tenant_id, job_type, state, payload, max_attempts, finished_at)
                   SELECT 'bulk-' || (g % 50), 'render', 'succeeded', '{}', 1, now() FROM generate_series(1, 50000) g`);
    await c.query('ANALYZE orch.jobs');
    for (const sort of ['newest', 'oldest', 'priority'] as const) {
      for (const jobType of [undefined, 'render']) {
        const plans: string[] = [];
        const explaining = {
          async query(text: string, values?: unknown[]) {
            const { rows } = await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text}`, values);
            plans.push(rows.map((r) => r['QUERY PLAN']).join('\n'));
            return { rows: [] } as never;
          },
        };
        await listJobs(explaining, { tenantId: TENANT, state: 'queued', jobType, sort, cursor: queued[5]!.id, limit: 20 });
        const plan = plans.join('\n');
        assert.doesNotMatch(plan, /Seq Scan on jobs/, `${sort} ${jobType ?? '(all types)'}:\n${plan}`);
        assert.match(plan, sort === 'priority' ? /Index Scan using jobs_claim_idx on jobs/ : /Index Scan (Backward )?using \w+ on jobs/, `${sort}:\n${plan}`);
      }
    }
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
});

/**
 * Filters beyond state and type, the state counts, and bulk actions on
 * everything a filter matches (the console's Jobs page): one transaction
 * each, with history, audit and events; a dry run changes nothing.
 */
const F = 'filters';
const why = { reason: 'bulk test', ticket: 'T-1' };
const api = (path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) => fetch(`${plane.url}/api/v1/orchestrator${path}`, {
  method: init.method ?? 'GET',
  headers: { 'x-tenant-id': F, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
  body: init.body === undefined ? undefined : JSON.stringify(init.body),
});

/** Claims every queued job of `jobType` for tenant F and fails it with `errorClass`; retryable jobs wait for their backoff. */
async function failAll(jobType: string, errorClass: string, retryable: boolean): Promise<void> {
  const leases = await plane.ledger.claim({ workerId: 'filter-worker', jobTypes: [jobType], limit: 100, tenantIds: [F] });
  await plane.ledger.fail(leases.map((l) => ({ tenantId: F, jobId: l.jobId, leaseId: l.leaseId, error: { class: errorClass, message: 'boom', retryable } })), null);
}

const fClient = () => new OrchClient({ apiUrl: plane.url, tenant: F });
const stateOf = async (ids: string[]) => (await db.pool.query<{ id: string; state: string; run_after: Date }>(
  'SELECT id, state, run_after FROM orch.jobs WHERE tenant_id = $1 AND id = ANY($2::bigint[]) ORDER BY id', [F, ids])).rows;
const auditOf = async (action: string) => (await db.pool.query<{ reason: string; ticket: string; details: { matched: number; applied: number; jobIds: string[] } }>(
  'SELECT reason, ticket, details FROM orch.audit_log WHERE tenant_id = $1 AND action = $2 ORDER BY at', [F, action])).rows;

test('filters: error class, created time range, payload containment and correlation id, across keyset pages', async () => {
  const c = fClient();
  await c.defineJobType('f_slow', { backoffBaseMs: 3_600_000, backoffMaxMs: 3_600_000 }, why);
  const early = await c.enqueueBatch([
    { jobType: 'f_a', payload: { customer: 'c-1', tier: 'gold', n: 1 }, correlationId: 'order-7' },
    { jobType: 'f_a', payload: { customer: 'c-2', tier: 'gold', n: 2 } },
    { jobType: 'f_dead', payload: { customer: 'c-1' } },
  ]);
  await new Promise((r) => setTimeout(r, 20));
  const late = await c.enqueueBatch([
    { jobType: 'f_a', payload: { customer: 'c-1', tier: 'silver', n: 3 }, correlationId: 'order-7' },
    { jobType: 'f_dead', payload: { customer: 'c-3' } },
    { jobType: 'f_slow', payload: { customer: 'c-1' } },
  ]);
  await failAll('f_dead', 'Upstream', false);
  await failAll('f_slow', 'RateLimited', true);
  const firstLate = (await c.getJob(late[0]!.id)).job.createdAt;
  const ids = async (filter: Parameters<OrchClient['listJobs']>[0]) => (await c.listJobs({ ...filter, limit: 1000 })).jobs.map((j) => j.id).sort();
  const sorted = (xs: { id: string }[]) => xs.map((x) => x.id).sort();

  assert.deepEqual(await ids({ payload: { customer: 'c-1' } }), sorted([early[0]!, early[2]!, late[0]!, late[2]!]));
  assert.deepEqual(await ids({ payload: { customer: 'c-1', tier: 'gold' } }), sorted([early[0]!]));
  assert.deepEqual(await ids({ errorClass: 'Upstream' }), sorted([early[2]!, late[1]!]));
  assert.deepEqual(await ids({ errorClass: 'Upstream', state: 'dead_lettered', payload: { customer: 'c-3' } }), sorted([late[1]!]));
  assert.deepEqual(await ids({ createdAfter: firstLate }), sorted(late));
  assert.deepEqual(await ids({ createdBefore: firstLate }), sorted(early));
  assert.deepEqual(await ids({ correlationId: 'order-7' }), sorted([early[0]!, late[0]!]));
  assert.deepEqual(await ids({ state: 'failed', sort: 'priority', errorClass: 'RateLimited' }), sorted([late[2]!]));
  // keyset paging keeps working under a filter: pages of one job, newest first, each job once
  const paged: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await c.listJobs({ payload: { customer: 'c-1' }, limit: 1, cursor });
    paged.push(...page.jobs.map((j) => j.id));
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  assert.deepEqual(paged, [late[2]!, late[0]!, early[2]!, early[0]!].map((r) => r.id));
});

test('counts per state: the same filters, exact from the queue counts for live states, and agreeing with the table', async () => {
  const c = fClient();
  const truth = async (where = 'true', params: unknown[] = []) => {
    const { rows } = await db.pool.query<{ state: string; n: string }>(
      `SELECT state, count(*) AS n FROM orch.jobs j WHERE tenant_id = $1 AND ${where} GROUP BY state`, [F, ...params]);
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  };
  const nonZero = (r: { counts: { state: string; count: number }[] }) => Object.fromEntries(r.counts.filter((x) => x.count > 0).map((x) => [x.state, x.count]));
  const all = await c.jobCounts();
  assert.equal(all.capped, false);
  assert.equal(all.counts.length, 9, 'every state, zeros included');
  assert.deepEqual(nonZero(all), await truth());
  assert.deepEqual(nonZero(await c.jobCounts({ jobType: 'f_a' })), await truth(`job_type = 'f_a'`));
  assert.deepEqual(nonZero(await c.jobCounts({ payload: { customer: 'c-1' } })), await truth(`payload @> '{"customer":"c-1"}'`));
  assert.deepEqual(nonZero(await c.jobCounts({ errorClass: 'Upstream' })), { dead_lettered: 2 });
  const res = await api('/jobs/counts?state=queued');
  assert.equal(res.status, 400, 'state is not a filter of the counts: they are per state');
  assert.equal((await res.json() as { error: { field: string } }).error.field, 'state');
});

test('bulk dry run counts and lists what the action would take, and changes nothing', async () => {
  const c = fClient();
  const before = await db.pool.query('SELECT id, state, history FROM orch.jobs ORDER BY id');
  const audits = await db.pool.query('SELECT count(*) FROM orch.audit_log');
  const cancel = await c.previewBulkJobs({ action: 'cancel', filter: { jobType: 'f_a' } });
  assert.deepEqual({ ...cancel, jobIds: cancel.jobIds.length }, { action: 'cancel', dryRun: true, matched: 3, more: false, applied: 0, jobIds: 3 });
  const limited = await c.previewBulkJobs({ action: 'cancel', filter: { jobType: 'f_a' }, limit: 2 });
  assert.equal(limited.matched, 2);
  assert.equal(limited.more, true);
  assert.deepEqual(limited.jobIds, cancel.jobIds.slice(0, 2), 'oldest first');
  assert.equal((await c.previewBulkJobs({ action: 'replay', filter: { errorClass: 'Upstream' } })).matched, 2);
  assert.equal((await c.previewBulkJobs({ action: 'retry', filter: {} })).matched, 1);
  assert.deepEqual((await db.pool.query('SELECT id, state, history FROM orch.jobs ORDER BY id')).rows, before.rows);
  assert.deepEqual((await db.pool.query('SELECT count(*) FROM orch.audit_log')).rows, audits.rows);
});

test('bulk cancel, replay and retry now apply in one transaction with history and an audit entry', async () => {
  const c = fClient();
  // cancel: the queued f_a jobs of customer c-1
  const cancel = await c.bulkJobs({ action: 'cancel', filter: { jobType: 'f_a', payload: { customer: 'c-1' } } }, why);
  assert.equal(cancel.matched, 2);
  assert.equal(cancel.applied, 2);
  assert.deepEqual((await stateOf(cancel.jobIds)).map((r) => r.state), ['canceled', 'canceled']);
  const { history } = await c.getJob(cancel.jobIds[0]!);
  assert.deepEqual(history.at(-1), { ...history.at(-1)!, to: 'canceled', cause: 'operator_canceled', reason: 'bulk test' });
  const [audit] = await auditOf('job.bulk_cancel');
  assert.deepEqual([audit!.reason, audit!.ticket, audit!.details.matched, audit!.details.applied, audit!.details.jobIds], ['bulk test', 'T-1', 2, 2, cancel.jobIds]);
  assert.equal((await c.bulkJobs({ action: 'cancel', filter: { jobType: 'f_a', payload: { customer: 'c-1' } } }, why)).matched, 0, 'nothing left to cancel');

  // replay: what ended without success with error class Upstream, each once
  const replay = await c.bulkJobs({ action: 'replay', filter: { errorClass: 'Upstream' } }, why);
  assert.deepEqual([replay.matched, replay.applied], [2, 2]);
  const replays = await db.pool.query<{ replay_of: string; state: string }>('SELECT replay_of, state FROM orch.jobs WHERE tenant_id = $1 AND replay_of = ANY($2::bigint[]) ORDER BY replay_of', [F, replay.jobIds]);
  assert.deepEqual(replays.rows, replay.jobIds.map((id) => ({ replay_of: id, state: 'queued' })));
  assert.equal((await c.bulkJobs({ action: 'replay', filter: { errorClass: 'Upstream' } }, why)).matched, 0, 'a job is replayed once');
  assert.equal((await auditOf('job.bulk_replay')).length, 2);

  // retry now: the failed job waiting an hour for its backoff is claimable at once
  const retry = await c.bulkJobs({ action: 'retry', filter: { errorClass: 'RateLimited' } }, why);
  assert.deepEqual([retry.matched, retry.applied], [1, 1]);
  const [row] = await stateOf(retry.jobIds);
  assert.equal(row!.state, 'failed');
  assert.ok(row!.run_after.getTime() <= Date.now() + 1000, `run_after ${row!.run_after.toISOString()} is now`);
  const retried = (await c.getJob(retry.jobIds[0]!)).history.at(-1)!;
  assert.deepEqual([retried.from, retried.to, retried.cause, retried.actor, retried.reason], ['failed', 'failed', 'operator_retried', 'anonymous', 'bulk test']);
  assert.deepEqual((await auditOf('job.bulk_retry')).map((a) => a.details.applied), [1]);
  const leases = await plane.ledger.claim({ workerId: 'filter-worker', jobTypes: ['f_slow'], limit: 1, tenantIds: [F] });
  assert.deepEqual(leases.map((l) => l.jobId), retry.jobIds, 'claimed right away');
  const outbox = await db.pool.query('SELECT count(*)::int AS n FROM orch.outbox o JOIN orch.job_transitions t ON t.batch_id = o.batch_id AND t.tenant_id = o.tenant_id WHERE t.cause = $1', ['operator_retried']);
  assert.equal(outbox.rows[0].n, 1, 'the retry made its event');
});

test('bad filters and bulk requests are a 400 naming the field; nothing changes', async () => {
  const before = await db.pool.query('SELECT id, state, history FROM orch.jobs ORDER BY id');
  const field = async (res: Response) => {
    const body = await res.json() as { error: { field: string } };
    return `${res.status} ${body.error.field}`;
  };
  for (const [query, name] of [
    ['payload=not-json', 'payload'], ['payload=[1,2]', 'payload'], ['payload=null', 'payload'], ['payload=%22text%22', 'payload'],
    ['createdAfter=yesterday', 'createdAfter'], ['createdAfter=2026-01-02T00:00:00Z&createdBefore=2026-01-01T00:00:00Z', 'createdBefore'],
    ['errorClass=', 'errorClass'], ['correlationId=', 'correlationId'],
  ] as const) {
    assert.equal(await field(await api(`/jobs?${query}`)), `400 ${name}`, `GET /jobs?${query}`);
    assert.equal(await field(await api(`/jobs/counts?${query}`)), `400 ${name}`, `GET /jobs/counts?${query}`);
  }
  const headers = { 'x-operator-reason': 'bad input' };
  for (const [body, name] of [
    [{ action: 'delete', filter: {} }, 'action'],
    [{ action: 'cancel' }, 'filter'],
    [{ action: 'cancel', filter: { payload: 'text' } }, 'filter.payload'],
    [{ action: 'cancel', filter: { payload: [1] } }, 'filter.payload'],
    [{ action: 'cancel', filter: { state: 'succeeded' } }, 'filter.state'],
    [{ action: 'retry', filter: { state: 'queued' } }, 'filter.state'],
    [{ action: 'cancel', filter: { createdAfter: 'soon' } }, 'filter.createdAfter'],
    [{ action: 'cancel', filter: { nope: 1 } }, 'filter.nope'],
    [{ action: 'cancel', filter: {}, limit: 0 }, 'limit'],
    [{ action: 'cancel', filter: {}, limit: 10_001 }, 'limit'],
  ] as const) {
    assert.equal(await field(await api('/jobs/bulk', { method: 'POST', body, headers })), `400 ${name}`, JSON.stringify(body));
  }
  assert.equal(await field(await api('/jobs/bulk', { method: 'POST', body: { action: 'cancel', filter: {} } })), '400 X-Operator-Reason');
  assert.deepEqual((await db.pool.query('SELECT id, state, history FROM orch.jobs ORDER BY id')).rows, before.rows);
});
