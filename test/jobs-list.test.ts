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
