import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { ControlPlane } from '../src/control-plane.ts';
import type { Lease } from '../src/ledger/types.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startTestServer } from './helpers/server.ts';

/**
 * Every kind of bad input is a 4xx with { error: { code, message, field } }
 * naming what was wrong, and changes nothing in the ledger.
 */

const BASE = '/api/v1/orchestrator';

let db: TestDatabase;
let plane: ControlPlane;
let queuedId: string;
let lease: Lease;

interface Sent { status: number; contentType: string | null; text: string }
interface ErrorBody { error: { code: string; message: string; field: string | null } }

async function send(method: string, path: string, opts: { json?: unknown; raw?: string; contentType?: string; tenant?: string | null; headers?: Record<string, string> } = {}): Promise<Sent> {
  const headers: Record<string, string> = { ...opts.headers };
  const tenant = opts.tenant === undefined ? 'acme' : opts.tenant;
  if (tenant !== null) headers['x-tenant-id'] = tenant;
  let body: string | undefined;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] = 'application/json';
  }
  if (opts.raw !== undefined) body = opts.raw;
  if (opts.contentType !== undefined) headers['content-type'] = opts.contentType;
  const res = await fetch(plane.url + path, { method, headers, body });
  return { status: res.status, contentType: res.headers.get('content-type'), text: await res.text() };
}

/** Ledger state that no rejected request may change. */
async function snapshot(): Promise<string> {
  const { rows } = await db.pool.query<{ jobs: string; history: string; types: string; digest: string | null }>(
    `SELECT (SELECT count(*) FROM orch.jobs) AS jobs, (SELECT count(*) FROM orch.job_history) AS history,
            (SELECT count(*) FROM orch.job_types) AS types,
            (SELECT md5(string_agg(j::text, '|' ORDER BY j.id)) FROM orch.jobs j) AS digest`,
  );
  return JSON.stringify(rows[0]);
}

/** Asserts a 4xx (never 5xx) JSON error whose field matches `field`; returns the error. */
function rejected(r: Sent, want: { status?: number | number[]; code?: string; field?: string | RegExp | null }, what: string): ErrorBody['error'] {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: expected 4xx, got ${r.status} ${r.text.slice(0, 200)}`);
  if (want.status !== undefined) {
    const allowed = Array.isArray(want.status) ? want.status : [want.status];
    assert.ok(allowed.includes(r.status), `${what}: status ${r.status} not in ${allowed.join(',')}: ${r.text.slice(0, 200)}`);
  }
  assert.match(r.contentType ?? '', /application\/json/, `${what}: JSON error body`);
  const body = JSON.parse(r.text) as ErrorBody;
  assert.equal(typeof body.error?.code, 'string', `${what}: error.code`);
  assert.equal(typeof body.error.message, 'string', `${what}: error.message`);
  assert.ok(body.error.message.length > 0);
  assert.ok('field' in body.error, `${what}: error.field present`);
  if (want.code !== undefined) assert.equal(body.error.code, want.code, `${what}: code`);
  if (want.field instanceof RegExp) assert.match(String(body.error.field), want.field, `${what}: field (${body.error.message})`);
  else if (want.field !== undefined) assert.equal(body.error.field, want.field, `${what}: field (${body.error.message})`);
  return body.error;
}

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
  const q = await send('POST', `${BASE}/jobs`, { json: { jobType: 'seed', payload: { n: 1 } } });
  queuedId = (JSON.parse(q.text) as { id: string }).id;
  await send('POST', `${BASE}/jobs`, { json: { jobType: 'seed_run', payload: { n: 2 } } });
  const c = await send('POST', `${BASE}/claim`, { json: { workerId: 'w1', jobTypes: ['seed_run'] } });
  lease = (JSON.parse(c.text) as { leases: Lease[] }).leases[0]!;
  assert.ok(lease, 'seeded a leased job');
});

after(async () => {
  await plane.stop();
  await db.drop();
});

/** Runs the requests and checks the ledger is exactly as it was. */
async function unchanged(fn: () => Promise<void>): Promise<void> {
  const before = await snapshot();
  await fn();
  assert.equal(await snapshot(), before, 'the ledger changed');
}

const enqueue = (json: unknown) => send('POST', `${BASE}/jobs`, { json });

describe('enqueue body', () => {
  test('invalid job type characters', () => unchanged(async () => {
    for (const jobType of ['bad type', 'dots.are.bad', 'ünïcode', '9starts-with-digit', '', 'x'.repeat(65), 'semi;colon', '../etc']) {
      rejected(await enqueue({ jobType }), { status: 400, field: 'jobType' }, `jobType ${JSON.stringify(jobType)}`);
    }
    rejected(await enqueue({ jobType: 42 }), { status: 400, field: 'jobType' }, 'numeric jobType');
    rejected(await enqueue({ payload: 1 }), { status: 400, field: 'jobType' }, 'missing jobType');
  }));

  test('oversize payload (> 1 MiB)', () => unchanged(async () => {
    // just over the payload limit but under the body limit: the ledger's check names the payload
    const r1 = await enqueue({ jobType: 'big', payload: 'x'.repeat(1024 * 1024 + 10) });
    rejected(r1, { status: [400, 413], field: /payload|body/ }, 'payload just over 1 MiB');
    // far over: the body limit
    const r2 = await enqueue({ jobType: 'big', payload: 'x'.repeat(3 * 1024 * 1024) });
    rejected(r2, { status: [400, 413], field: /payload|body/ }, 'payload of 3 MiB');
    const r3 = await send('POST', `${BASE}/jobs/batch`, { json: { jobs: [{ jobType: 'big' }, { jobType: 'big', payload: 'y'.repeat(1024 * 1024 + 10) }] } });
    rejected(r3, { status: [400, 413], field: 'jobs[1].payload' }, 'batch item over the payload limit');
  }));

  test('priority: negative, too large, fractional, huge', () => unchanged(async () => {
    for (const priority of [-1, 1001, 1.5, 1e20, -1e20, '1e400', 'high']) {
      rejected(await enqueue({ jobType: 'prio', priority }), { status: 400, field: 'priority' }, `priority ${String(priority)}`);
    }
  }));

  test('huge integers elsewhere are refused, not overflowed', () => unchanged(async () => {
    rejected(await enqueue({ jobType: 'huge', maxAttempts: 1e20 }), { status: 400, field: 'maxAttempts' }, 'maxAttempts 1e20');
    rejected(await enqueue({ jobType: 'huge', delayMs: 1e20 }), { status: 400, field: 'delayMs' }, 'delayMs 1e20');
    rejected(await enqueue({ jobType: 'huge', delayMs: 2 ** 53 + 2 }), { status: 400, field: 'delayMs' }, 'delayMs 2^53');
    const raw = '{"jobType":"huge","priority":123456789012345678901234567890}';
    rejected(await send('POST', `${BASE}/jobs`, { raw, contentType: 'application/json' }), { status: 400, field: 'priority' }, 'priority literal of 30 digits');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'w', jobTypes: ['seed'], limit: 1e20 } }), { status: 400, field: 'limit' }, 'claim limit 1e20');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'w', jobTypes: ['seed'], leaseMs: 1e20 } }), { status: 400, field: 'leaseMs' }, 'claim leaseMs 1e20');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'w', jobTypes: ['seed'], waitMs: 1e20 } }), { status: 400, field: 'waitMs' }, 'claim waitMs 1e20');
    rejected(await send('GET', `${BASE}/jobs?limit=100000000000000000000`), { status: 400, field: 'limit' }, 'list limit 1e20');
  }));

  test('maxAttempts 0', () => unchanged(async () => {
    for (const maxAttempts of [0, -3, 1001]) {
      rejected(await enqueue({ jobType: 'ma', maxAttempts }), { status: 400, field: 'maxAttempts' }, `maxAttempts ${maxAttempts}`);
    }
  }));

  test('runAfter not a date; runAfter and delayMs together', () => unchanged(async () => {
    for (const runAfter of ['tomorrow', '2024-02-30T00:00:00Z', '2024-01-01', '', 1700000000000]) {
      rejected(await enqueue({ jobType: 'ra', runAfter }), { status: 400, field: 'runAfter' }, `runAfter ${JSON.stringify(runAfter)}`);
    }
    rejected(await enqueue({ jobType: 'ra', runAfter: '2030-01-01T00:00:00Z', delayMs: 10 }), { status: 400, field: /runAfter|delayMs/ }, 'both runAfter and delayMs');
    rejected(await enqueue({ jobType: 'ra', delayMs: -1 }), { status: 400, field: 'delayMs' }, 'negative delayMs');
  }));

  test('runAfter outside the range the ledger can store names runAfter', () => unchanged(async () => {
    rejected(await enqueue({ jobType: 'ra', runAfter: '0000-01-01T00:00:00Z' }), { status: 400, field: 'runAfter' }, 'runAfter year 0');
  }));

  test('unknown extra property is refused and named', () => unchanged(async () => {
    const e = rejected(await enqueue({ jobType: 'extra', tenantId: 'someone-else' }), { status: 400 }, 'extra tenantId');
    assert.ok(e.field === 'tenantId' || e.message.includes('tenantId'), `the unknown property is named (field ${e.field}, message "${e.message}")`);
    const e2 = rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/complete`, { json: { leaseId: lease.leaseId, bogus: true } }), { status: 400 }, 'extra property on complete');
    assert.ok(e2.field === 'bogus' || e2.message.includes('bogus'), `the unknown property is named (field ${e2.field}, message "${e2.message}")`);
  }));

  test('a payload with NUL is refused naming payload', () => unchanged(async () => {
    rejected(await enqueue({ jobType: 'pgtext', payload: { s: 'a\u0000b' } }), { status: 400, field: 'payload' }, 'payload with NUL');
    rejected(await enqueue({ jobType: 'pgtext', payload: { 'k\u0000': 1 } }), { status: 400, field: 'payload' }, 'payload key with NUL');
  }));

  test('a payload PostgreSQL cannot store (unpaired surrogate) is refused naming payload', () => unchanged(async () => {
    rejected(await enqueue({ jobType: 'pgtext', payload: { s: 'a\ud800b' } }), { status: 400, field: 'payload' }, 'payload with an unpaired surrogate');
  }));

  test('key strings PostgreSQL cannot store (NUL) are refused naming the field', () => unchanged(async () => {
    rejected(await enqueue({ jobType: 'pgtext', idempotencyKey: 'a\u0000b' }), { status: 400, field: 'idempotencyKey' }, 'idempotencyKey with NUL');
    rejected(await enqueue({ jobType: 'pgtext', correlationId: 'a\u0000b' }), { status: 400, field: 'correlationId' }, 'correlationId with NUL');
  }));
});

describe('tenant header', () => {
  test('missing tenant header is 400 tenant_required', () => unchanged(async () => {
    const cases: [string, string, unknown][] = [
      ['POST', `${BASE}/jobs`, { jobType: 'nt' }],
      ['POST', `${BASE}/jobs/batch`, { jobs: [{ jobType: 'nt' }] }],
      ['GET', `${BASE}/jobs`, undefined],
      ['GET', `${BASE}/jobs/${queuedId}`, undefined],
      ['POST', `${BASE}/jobs/${queuedId}/cancel`, undefined],
    ];
    for (const [method, path, json] of cases) {
      rejected(await send(method, path, { json, tenant: null, headers: { 'x-operator-reason': 'test' } }), { status: 400, code: 'tenant_required', field: /tenant/i }, `${method} ${path} without tenant`);
    }
  }));

  test('malformed tenant header is 400 naming the header', () => unchanged(async () => {
    for (const t of ['bad tenant', '-leading-dash', 'x'.repeat(65), 'a/b', 'a.b', '']) {
      rejected(await send('POST', `${BASE}/jobs`, { json: { jobType: 'bt' }, tenant: t }), { status: 400, field: /tenant/i }, `X-Tenant-Id ${JSON.stringify(t)}`);
    }
    rejected(await send('POST', `${BASE}/jobs/${queuedId}/cancel`, { tenant: null, headers: { 'x-stella-tenant': 'no spaces allowed' } }), { status: 400, field: /tenant/i }, 'bad X-Stella-Tenant');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'w', jobTypes: ['seed'] }, tenant: 'bad tenant' }), { status: 400, field: /tenant/i }, 'bad tenant on claim');
  }));
});

describe('request framing', () => {
  test('invalid JSON body', () => unchanged(async () => {
    for (const raw of ['{"jobType":', '{jobType: "x"}', "{'jobType':'x'}", 'not json', '{"jobType":"x"} trailing']) {
      rejected(await send('POST', `${BASE}/jobs`, { raw, contentType: 'application/json' }), { status: 400, field: 'body' }, `body ${raw}`);
    }
    rejected(await send('POST', `${BASE}/jobs`, { raw: '', contentType: 'application/json' }), { status: 400, field: 'body' }, 'empty JSON body');
    rejected(await send('POST', `${BASE}/jobs`, { json: [{ jobType: 'x' }] }), { status: 400, field: 'body' }, 'array instead of object');
    rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/complete`, { raw: '{"leaseId":', contentType: 'application/json' }), { status: 400, field: 'body' }, 'bad JSON on complete');
  }));

  test('wrong content type', () => unchanged(async () => {
    const json = JSON.stringify({ jobType: 'ct' });
    rejected(await send('POST', `${BASE}/jobs`, { raw: json, contentType: 'application/xml' }), { status: [400, 415], field: /content-type|body/ }, 'application/xml');
    rejected(await send('POST', `${BASE}/jobs`, { raw: json, contentType: 'text/plain' }), { status: [400, 415], field: /content-type|body/ }, 'text/plain');
    rejected(await send('POST', `${BASE}/jobs`, { raw: 'jobType=ct', contentType: 'application/x-www-form-urlencoded' }), { status: [400, 415], field: /content-type|body/ }, 'form body');
    rejected(await send('POST', `${BASE}/jobs`, { raw: json }), { status: [400, 415] }, 'no content type');
  }));

  test('unknown route and method are 404 JSON', async () => {
    rejected(await send('GET', `${BASE}/nope`), { status: 404, code: 'not_found' }, 'unknown route');
    rejected(await send('DELETE', `${BASE}/jobs/${queuedId}`), { status: 404, code: 'not_found' }, 'unknown method');
    rejected(await send('GET', '/api/v2/orchestrator/jobs'), { status: 404, code: 'not_found' }, 'other version');
    assert.equal(JSON.parse((await send('GET', `${BASE}/jobs/${queuedId}`)).text).job.state, 'queued');
  });
});

describe('ids', () => {
  test('malformed job id in the path', () => unchanged(async () => {
    for (const id of ['abc', '0', '-1', '1.5', '99999999999999999999', '1e3', '%20', '0x10']) {
      rejected(await send('GET', `${BASE}/jobs/${id}`), { status: 400, field: 'jobId' }, `GET job ${id}`);
      rejected(await send('POST', `${BASE}/jobs/${id}/cancel`), { status: 400, field: 'jobId' }, `cancel ${id}`);
      rejected(await send('POST', `${BASE}/jobs/${id}/complete`, { json: { leaseId: lease.leaseId } }), { status: 400, field: 'jobId' }, `complete ${id}`);
      rejected(await send('POST', `${BASE}/jobs/${id}/heartbeat`, { json: { leaseId: lease.leaseId } }), { status: 400, field: 'jobId' }, `heartbeat ${id}`);
    }
    rejected(await send('GET', `${BASE}/jobs?cursor=abc`), { status: 400, field: 'cursor' }, 'bad cursor');
    rejected(await send('POST', `${BASE}/acks`, { json: { acks: [{ jobId: 'abc', leaseId: lease.leaseId, outcome: 'succeeded' }] } }), { status: 400, field: /acks\[0\]/ }, 'bad jobId in acks');
  }));

  test('malformed lease id', () => unchanged(async () => {
    for (const leaseId of ['not-a-uuid', '', '12345678-1234-1234-1234-1234567890zz', `${lease.leaseId}0`, 123]) {
      rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/complete`, { json: { leaseId } }), { status: 400, field: 'leaseId' }, `complete leaseId ${String(leaseId)}`);
      rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/heartbeat`, { json: { leaseId } }), { status: 400, field: 'leaseId' }, `heartbeat leaseId ${String(leaseId)}`);
      rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/fail`, { json: { leaseId, error: { class: 'E', message: 'm' } } }), { status: 400, field: 'leaseId' }, `fail leaseId ${String(leaseId)}`);
    }
    rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/complete`, { json: {} }), { status: 400, field: 'leaseId' }, 'missing leaseId');
    rejected(await send('POST', `${BASE}/heartbeats`, { json: { leases: [{ jobId: lease.jobId, leaseId: 'nope' }] } }), { status: 400, field: 'leases[0].leaseId' }, 'heartbeats bad leaseId');
    rejected(await send('POST', `${BASE}/releases`, { json: { leases: [{ jobId: lease.jobId, leaseId: 'nope' }] } }), { status: 400, field: 'leases[0].leaseId' }, 'releases bad leaseId');
    rejected(await send('POST', `${BASE}/acks`, { json: { acks: [{ jobId: lease.jobId, leaseId: 'nope', outcome: 'succeeded' }] } }), { status: 400, field: /acks\[0\]/ }, 'acks bad leaseId');
  }));
});

describe('worker bodies', () => {
  test('progress outside 0..1 on heartbeat', () => unchanged(async () => {
    for (const progress of [1.01, 2, -0.1, 1e20, 'half']) {
      rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/heartbeat`, { json: { leaseId: lease.leaseId, progress } }), { status: 400, field: 'progress' }, `progress ${String(progress)}`);
    }
    rejected(await send('POST', `${BASE}/heartbeats`, { json: { leases: [{ jobId: lease.jobId, leaseId: lease.leaseId, progress: 1.5 }] } }), { status: 400, field: 'leases[0].progress' }, 'heartbeats progress 1.5');
  }));

  test('worker strings PostgreSQL cannot store (NUL) are refused naming the field', () => unchanged(async () => {
    rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/complete`, { json: { leaseId: lease.leaseId, result: { s: 'a\u0000b' } } }), { status: 400, field: 'result' }, 'result with NUL');
    rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/fail`, { json: { leaseId: lease.leaseId, error: { class: 'E', message: 'a\u0000b' } } }), { status: 400, field: 'error.message' }, 'error message with NUL');
    rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/heartbeat`, { json: { leaseId: lease.leaseId, message: 'a\u0000b' } }), { status: 400, field: 'message' }, 'progress message with NUL');
  }));

  test('bad fail and ack bodies', () => unchanged(async () => {
    const fail = (body: unknown) => send('POST', `${BASE}/jobs/${lease.jobId}/fail`, { json: body });
    rejected(await fail({ leaseId: lease.leaseId }), { status: 400, field: 'error' }, 'fail without error');
    rejected(await fail({ leaseId: lease.leaseId, error: { message: 'm' } }), { status: 400, field: 'error.class' }, 'error without class');
    rejected(await fail({ leaseId: lease.leaseId, error: { class: 'E', message: 'm', retryable: 'no' } }), { status: 400, field: 'error.retryable' }, 'retryable not boolean');
    rejected(await send('POST', `${BASE}/jobs/${lease.jobId}/complete`, { json: { leaseId: lease.leaseId, artifacts: [{ name: 'a', uri: 'u', sha256: 'nothex' }] } }), { status: 400, field: 'artifacts[0].sha256' }, 'bad artifact hash');
    rejected(await send('POST', `${BASE}/acks`, { json: { acks: [] } }), { status: 400, field: /acks/ }, 'empty acks');
    rejected(await send('POST', `${BASE}/acks`, { json: { acks: [{ jobId: lease.jobId, leaseId: lease.leaseId, outcome: 'maybe' }] } }), { status: 400, field: /acks\[0\]/ }, 'unknown outcome');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'w', jobTypes: [] } }), { status: 400, field: 'jobTypes' }, 'claim no job types');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'has space', jobTypes: ['seed'] } }), { status: 400, field: 'workerId' }, 'claim bad workerId');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'w', jobTypes: ['bad type'] } }), { status: 400, field: 'jobTypes[0]' }, 'claim bad job type');
    rejected(await send('POST', `${BASE}/claim`, { json: { workerId: 'w', jobTypes: ['seed'], limit: 0 } }), { status: 400, field: 'limit' }, 'claim limit 0');
  }));
});

describe('batches', () => {
  test('a batch with one bad item inserts nothing and names the item', () => unchanged(async () => {
    const jobs = Array.from({ length: 20 }, (_, i) => ({ jobType: 'batchy', payload: i }));
    const withBad = (i: number, patch: Record<string, unknown>) => ({ jobs: jobs.map((j, k) => (k === i ? { ...j, ...patch } : j)) });
    const post = (body: unknown) => send('POST', `${BASE}/jobs/batch`, { json: body });
    rejected(await post(withBad(7, { priority: -1 })), { status: 400, field: 'jobs[7].priority' }, 'negative priority in item 7');
    rejected(await post(withBad(19, { jobType: 'no spaces' })), { status: 400, field: 'jobs[19].jobType' }, 'bad type in item 19');
    rejected(await post(withBad(3, { maxAttempts: 0 })), { status: 400, field: 'jobs[3].maxAttempts' }, 'maxAttempts 0 in item 3');
    rejected(await post(withBad(4, { extra: 1 })), { status: 400, field: /jobs\[4\]/ }, 'extra property in item 4');
    rejected(await post({ jobs: [] }), { status: 400, field: 'jobs' }, 'empty batch');
    rejected(await post({ jobs: Array.from({ length: 10_001 }, () => ({ jobType: 'batchy' })) }), { status: [400, 413], field: /jobs|body/ }, 'batch over maxBatchSize');
    rejected(await post({ jobs: jobs.slice(0, 2), more: true }), { status: 400 }, 'extra top-level property');
  }));

  test('a batch item with both runAfter and delayMs is named by its index', () => unchanged(async () => {
    const jobs = Array.from({ length: 10 }, (_, i) => ({ jobType: 'batchy', payload: i, ...(i === 6 ? { runAfter: '2030-01-01T00:00:00Z', delayMs: 1 } : {}) }));
    const r = await send('POST', `${BASE}/jobs/batch`, { json: { jobs } });
    rejected(r, { status: 400, field: /^jobs\[6\]\.(runAfter|delayMs)$/ }, 'runAfter and delayMs in item 6');
  }));

  test('a batch item with a payload PostgreSQL cannot store is named by its index', () => unchanged(async () => {
    const jobs = Array.from({ length: 10 }, (_, i) => ({ jobType: 'batchy', payload: i === 5 ? 'a\ud800b' : i }));
    const r = await send('POST', `${BASE}/jobs/batch`, { json: { jobs } });
    rejected(r, { status: 400, field: 'jobs[5].payload' }, 'unstorable payload in item 5');
  }));
});

test('headers over the size limit: 431 in the API error shape, the connection closed and said so, the next request on the same client served', async () => {
  const huge = await send('GET', `${BASE}/jobs`, { headers: { 'x-padding': 'p'.repeat(20_000) } });
  assert.equal(huge.status, 431);
  assert.deepEqual((JSON.parse(huge.text) as ErrorBody).error, { code: 'headers_too_large', message: 'the request headers are too large', field: 'headers' });
  // the same keep-alive pool again, many times: a socket the server closed is never reused
  const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0
    ? send('GET', `${BASE}/jobs`, { headers: { 'x-padding': 'p'.repeat(20_000) } })
    : send('GET', `${BASE}/jobs/${queuedId}`)).then((r) => r.status)));
  assert.deepEqual([...new Set(statuses)].sort(), [200, 431]);
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(Number(new URL(plane.url).port), '127.0.0.1', () => socket.end(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ${'p'.repeat(20_000)}\r\n\r\n`));
    let text = '';
    socket.on('data', (d) => (text += d)).on('end', () => resolve(text)).on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 431 [^\r]*\r\n(?:[^\r]+\r\n)*Connection: close\r\n/);
});
