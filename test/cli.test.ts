import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPool, defaultConfig, Ledger, type ControlPlane, type EnqueueResult, type HistoryEntry, type Job } from '../src/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { CLI_ARGS, eventually, REPO_ROOT, runCli, spawnServer, startTestServer } from './helpers/server.ts';
import { freePort } from '../src/ledger/embedded.ts';
import { loadMigrations } from '../src/ledger/migrate.ts';
import { scope } from './helpers/scope.ts';

/** The `orch` CLI as a real child process against an in-process control plane. */

const TENANT = 'default';
let db: TestDatabase;
let plane: ControlPlane;
let tmp: string;

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
  tmp = await mkdtemp(path.join(tmpdir(), 'orch-cli-test-'));
});

after(async () => {
  await plane?.stop();
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function orch(...args: string[]) {
  return runCli(['--api-url', plane.url, ...args]);
}

/** The CLI with standard input given (runCli closes it), or with its stdout closed at once (a reader that went away). */
function cli(args: string[], opts: { input?: string; env?: Record<string, string>; closeStdout?: boolean } = {}) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [...CLI_ARGS, ...args], {
      cwd: REPO_ROOT, env: { ...process.env, ORCH_LOG_LEVEL: 'silent', ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    if (opts.closeStdout) child.stdout.destroy();
    else child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end(opts.input ?? '');
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

function json<T>(stdout: string): T {
  return JSON.parse(stdout) as T;
}

/** Splits table output into rows of cells (the header is row 0). */
function table(stdout: string): string[][] {
  return stdout.trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/));
}

function oneErrorLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `exactly one line on stderr, got: ${JSON.stringify(stderr)}`);
  assert.ok(stderr.endsWith('\n'));
  return lines[0]!;
}

async function countJobs(jobType: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM orch.jobs WHERE job_type = $1', [jobType]);
  return Number(rows[0]!.n);
}

async function getJob(id: string): Promise<Job> {
  const j = await plane.ledger.getJob(TENANT, id);
  assert.ok(j, `job ${id} exists`);
  return j;
}

describe('orch enqueue', () => {
  test('TYPE --payload JSON prints a table row and stores the payload', async () => {
    const r = await orch('enqueue', 'cli_email', '--payload', '{"to":"a@example.com","n":3}');
    assert.equal(r.code, 0, r.stderr);
    const rows = table(r.stdout);
    assert.deepEqual(rows[0], ['ID', 'JOBTYPE', 'STATE', 'CREATED']);
    assert.equal(rows.length, 2);
    const [id, jobType, state, created] = rows[1]!;
    assert.match(id!, /^\d+$/);
    assert.deepEqual([jobType, state, created], ['cli_email', 'queued', 'true']);
    const j = await getJob(id!);
    assert.deepEqual(j.payload, { to: 'a@example.com', n: 3 });
    assert.equal(j.state, 'queued');
  });

  test('--output json prints the enqueue result', async () => {
    const r = await orch('--output', 'json', 'enqueue', 'cli_json', '--payload', '[1,2]');
    assert.equal(r.code, 0, r.stderr);
    const res = json<EnqueueResult>(r.stdout);
    assert.equal(res.jobType, 'cli_json');
    assert.equal(res.state, 'queued');
    assert.equal(res.created, true);
    assert.deepEqual((await getJob(res.id)).payload, [1, 2]);
  });

  test('--idempotency-key twice returns the same job, created false the second time', async () => {
    const first = await orch('--output', 'json', 'enqueue', 'cli_idem', '--payload', '{"v":1}', '--idempotency-key', 'order-42');
    const second = await orch('--output', 'json', 'enqueue', 'cli_idem', '--payload', '{"v":2}', '--idempotency-key', 'order-42');
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    const a = json<EnqueueResult>(first.stdout);
    const b = json<EnqueueResult>(second.stdout);
    assert.equal(a.created, true);
    assert.equal(b.created, false);
    assert.equal(b.id, a.id);
    assert.equal(await countJobs('cli_idem'), 1);
    assert.deepEqual((await getJob(a.id)).payload, { v: 1 }, 'the first submission wins');
  });

  test('--delay 1h sets runAfter an hour ahead', async () => {
    const before = Date.now();
    const r = await orch('--output', 'json', 'enqueue', 'cli_delay', '--delay', '1h');
    assert.equal(r.code, 0, r.stderr);
    const j = await getJob(json<EnqueueResult>(r.stdout).id);
    const runAfter = Date.parse(j.runAfter);
    assert.ok(runAfter >= before + 3_600_000 - 5_000 && runAfter <= Date.now() + 3_600_000 + 5_000, `runAfter ${j.runAfter}`);
    // not claimable now
    const leases = await plane.ledger.claim({ workerId: 'cli-probe', jobTypes: ['cli_delay'], limit: 10 });
    assert.deepEqual(leases, []);
  });

  test('--file jobs.ndjson enqueues one job per line, TYPE as the default job type, and prints a summary', async () => {
    const file = path.join(tmp, 'jobs.ndjson');
    await writeFile(file, [
      JSON.stringify({ payload: { line: 1 } }),
      '',
      JSON.stringify({ jobType: 'cli_file_other', payload: { line: 2 }, priority: 7 }),
      JSON.stringify({ payload: { line: 3 }, idempotencyKey: 'file-3' }),
      '',
    ].join('\n'));
    const r = await orch('--output', 'json', 'enqueue', 'cli_file', '--file', file);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json(r.stdout), { submitted: 3, created: 3, existing: 0, failed: 0 });
    const { rows } = await db.pool.query<{ job_type: string; payload: unknown; priority: number; idempotency_key: string | null }>(
      "SELECT job_type, payload, priority, idempotency_key FROM orch.jobs WHERE job_type IN ('cli_file', 'cli_file_other') ORDER BY id");
    assert.deepEqual(rows.map((j) => [j.job_type, j.payload]), [['cli_file', { line: 1 }], ['cli_file_other', { line: 2 }], ['cli_file', { line: 3 }]]);
    assert.equal(rows[1]!.priority, 7);
    assert.equal(rows[2]!.idempotency_key, 'file-3');

    const t = await orch('enqueue', 'cli_file', '--file', file);
    assert.equal(t.code, 0, t.stderr);
    assert.deepEqual(table(t.stdout), [['SUBMITTED', 'CREATED', 'EXISTING', 'FAILED'], ['3', '2', '1', '0']], 'a table of the summary, not of every line');
  });

  test('--file of 100,000 lines streams through batches; rerunning it creates nothing (idempotency keys)', async () => {
    const file = path.join(tmp, 'big.ndjson');
    const lines: string[] = [];
    for (let i = 1; i <= 100_000; i++) lines.push(JSON.stringify({ payload: { i }, idempotencyKey: `big-${i}` }));
    await writeFile(file, lines.join('\n') + '\n');
    const first = await orch('--output', 'json', 'enqueue', 'cli_big', '--file', file);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, '', 'no progress bar when stderr is not a terminal');
    assert.deepEqual(json(first.stdout), { submitted: 100_000, created: 100_000, existing: 0, failed: 0 });
    assert.equal(await countJobs('cli_big'), 100_000);

    const again = await orch('--output', 'json', 'enqueue', 'cli_big', '--file', file);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(json(again.stdout), { submitted: 100_000, created: 0, existing: 100_000, failed: 0 });
    assert.equal(await countJobs('cli_big'), 100_000);
  });

  test('--file with bad lines: each named by line number (at most 20, then a count), the good lines go in, exit 1', async () => {
    const file = path.join(tmp, 'bad.ndjson');
    const bad = [
      JSON.stringify({ payload: { good: 1 } }),
      'not json',
      '[1, 2]',
      JSON.stringify({ jobType: 'cli_bad_lines', payload: { good: 2 } }),
      JSON.stringify({ jobType: 42 }),
      JSON.stringify({ priority: -1 }), // refused by the server, alone: the rest of its batch still goes in
      '',
      JSON.stringify({ payload: { good: 3 } }),
      ...Array.from({ length: 25 }, () => 'null'),
    ];
    await writeFile(file, bad.join('\n'));
    const r = await orch('--output', 'json', 'enqueue', 'cli_bad_lines', '--file', file);
    assert.equal(r.code, 1);
    assert.deepEqual(json(r.stdout), { submitted: 32, created: 3, existing: 0, failed: 29 });
    const errors = r.stderr.trimEnd().split('\n');
    assert.equal(errors.length, 21, r.stderr);
    assert.match(errors[0]!, /^orch: line 2: not JSON/);
    assert.match(errors[1]!, /^orch: line 3: not a JSON object/);
    assert.match(errors[2]!, /^orch: line 5: jobType is not a string/);
    assert.match(errors[3]!, /^orch: line 6: .*priority.*HTTP 400/);
    assert.doesNotMatch(errors[3]!, /jobs\[/, 'the line number, not the index in the batch, says which job');
    assert.match(errors[4]!, /^orch: line 9: not a JSON object/);
    assert.equal(errors[20], 'orch: … and 9 more failed lines');
    assert.equal(await countJobs('cli_bad_lines'), 3);

    const noType = path.join(tmp, 'notype.ndjson');
    await writeFile(noType, JSON.stringify({ payload: {} }) + '\n');
    const r2 = await orch('enqueue', '--file', noType);
    assert.equal(r2.code, 1);
    assert.match(oneErrorLine(r2.stderr), /^orch: line 1: no jobType/);
  });

  test('--payload @FILE reads the payload from a file, --payload - from standard input; bad JSON names the option', async () => {
    const file = path.join(tmp, 'payload.json');
    await writeFile(file, JSON.stringify({ from: 'file', n: [1, 2] }));
    const fromFile = await orch('--output', 'json', 'enqueue', 'cli_payload_src', '--payload', `@${file}`);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.deepEqual((await getJob(json<EnqueueResult>(fromFile.stdout).id)).payload, { from: 'file', n: [1, 2] });

    const fromStdin = await cli(['--api-url', plane.url, '--output', 'json', 'enqueue', 'cli_payload_src', '--payload', '-'], { input: '{"from":"stdin"}\n' });
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.deepEqual((await getJob(json<EnqueueResult>(fromStdin.stdout).id)).payload, { from: 'stdin' });

    await writeFile(file, '{"from": ');
    const badFile = await orch('enqueue', 'cli_payload_src', '--payload', `@${file}`);
    assert.equal(badFile.code, 1);
    assert.match(oneErrorLine(badFile.stderr), /^orch: --payload @.*payload\.json: not valid JSON/);
    const missing = await orch('enqueue', 'cli_payload_src', '--payload', `@${file}.missing`);
    assert.equal(missing.code, 1);
    assert.match(oneErrorLine(missing.stderr), /^orch: --payload: cannot read .*payload\.json\.missing \(ENOENT\)/);
    const badStdin = await cli(['--api-url', plane.url, 'enqueue', 'cli_payload_src', '--payload', '-'], { input: 'nope' });
    assert.equal(badStdin.code, 1);
    assert.match(oneErrorLine(badStdin.stderr), /^orch: --payload - \(standard input\): not valid JSON/);
    assert.equal(await countJobs('cli_payload_src'), 2);

    // schedules and backfills take the same forms
    const sched = await cli(['--api-url', plane.url, '--output', 'json', 'schedules', 'create', 'cli-payload-stdin', 'cli_payload_src',
      '--every', '1h', '--paused', '--reason', 'cli test', '--payload', '-'], { input: '{"from":"schedule"}' });
    assert.equal(sched.code, 0, sched.stderr);
    assert.deepEqual(json<{ payload: unknown }>(sched.stdout).payload, { from: 'schedule' });
    await writeFile(file, '{"from":"backfill"}');
    const plan = await orch('--output', 'json', 'backfill', 'create', 'cli_payload_src', '--from', '2024-01-01T00:00:00Z', '--to', '2024-01-01T02:00:00Z',
      '--window', '1h', '--payload', `@${file}`, '--dry-run');
    assert.equal(plan.code, 0, plan.stderr);
  });
  test('--payload notjson: exit 1, one line on stderr, nothing enqueued', async () => {
    const r = await orch('enqueue', 'cli_bad_payload', '--payload', 'notjson');
    assert.equal(r.code, 1);
    assert.match(oneErrorLine(r.stderr), /--payload/);
    assert.equal(r.stdout, '');
    assert.equal(await countJobs('cli_bad_payload'), 0);
  });

  test('--priority -1: exit 1 with the server error naming priority, nothing enqueued', async () => {
    const r = await orch('enqueue', 'cli_bad_prio', '--priority', '-1');
    assert.equal(r.code, 1);
    const line = oneErrorLine(r.stderr);
    assert.match(line, /priority/);
    assert.match(line, /HTTP 400/);
    assert.equal(await countJobs('cli_bad_prio'), 0);
  });

  test('an unreachable --api-url: exit 1 with one line', async () => {
    const port = await freePort();
    const r = await runCli(['--api-url', `http://127.0.0.1:${port}`, 'enqueue', 'cli_unreachable']);
    assert.equal(r.code, 1);
    assert.match(oneErrorLine(r.stderr), /cannot reach the orchestrator API/);
  });

  test('a missing tenant exits 2', async () => {
    const r = await runCli(['--api-url', plane.url, '--tenant', '', 'enqueue', 'cli_notenant']);
    assert.equal(r.code, 2);
    assert.match(oneErrorLine(r.stderr), /tenant_required/);
    assert.equal(await countJobs('cli_notenant'), 0);
  });
});

describe('orch jobs', () => {
  test('jobs list shows the tenant\'s jobs newest first, filtered by type and state', async () => {
    const ids = (await plane.ledger.enqueue([1, 2, 3].map((n) => ({ tenantId: TENANT, jobType: 'cli_list', payload: { n } })))).map((r) => r.id);
    await plane.ledger.enqueue([{ tenantId: 'other-tenant', jobType: 'cli_list', payload: {} }]);
    const r = await orch('jobs', 'list', '--type', 'cli_list');
    assert.equal(r.code, 0, r.stderr);
    const rows = table(r.stdout);
    assert.deepEqual(rows[0], ['ID', 'JOBTYPE', 'STATE', 'PRIORITY', 'ATTEMPT', 'MAXATTEMPTS', 'RUNAFTER', 'UPDATEDAT']);
    assert.deepEqual(rows.slice(1).map((c) => c[0]), [...ids].reverse());
    assert.ok(rows.slice(1).every((c) => c[1] === 'cli_list' && c[2] === 'queued'));

    await plane.ledger.cancel(TENANT, ids[1]!, 'operator:test');
    const canceled = await orch('--output', 'json', 'jobs', 'list', '--type', 'cli_list', '--state', 'canceled');
    assert.equal(canceled.code, 0, canceled.stderr);
    const page = json<{ jobs: Job[]; nextCursor: string | null }>(canceled.stdout);
    assert.deepEqual(page.jobs.map((j) => j.id), [ids[1]]);

    const paged = await orch('jobs', 'list', '--type', 'cli_list', '--limit', '2');
    assert.equal(paged.code, 0, paged.stderr);
    assert.match(paged.stdout, new RegExp(`next page: --cursor ${ids[1]}\\n$`));
  });

  test('jobs show ID prints the job, its last error and its history', async () => {
    await plane.ledger.jobTypes.define('cli_show', { maxAttempts: 3 });
    const [e] = await plane.ledger.enqueue([{ tenantId: TENANT, jobType: 'cli_show', payload: { file: 'x.csv' } }]);
    const [lease] = await plane.ledger.claim({ workerId: 'w-cli', jobTypes: ['cli_show'], limit: 1 });
    assert.equal(lease?.jobId, e!.id);
    await plane.ledger.fail([{ tenantId: lease.tenantId, jobId: lease.jobId, leaseId: lease.leaseId, error: { class: 'BoomError', message: 'disk full' } }], 'worker:w-cli');

    const r = await orch('jobs', 'show', e!.id);
    assert.equal(r.code, 0, r.stderr);
    const [head, historyPart] = r.stdout.split('\nhistory:\n');
    assert.ok(historyPart, 'prints a history section');
    const jobRows = table(head!);
    assert.equal(jobRows[1]![0], e!.id);
    assert.equal(jobRows[1]![2], 'failed');
    assert.match(head!, /payload: \{"file":"x\.csv"\}/);
    assert.match(head!, /last error: BoomError: disk full/);
    const hist = table(historyPart);
    assert.deepEqual(hist[0], ['AT', 'FROM', 'TO', 'ATTEMPT', 'ACTOR', 'REASON']);
    const transitions = hist.slice(1).map((c) => `${c[1]}>${c[2]}#${c[3]} ${c[4]} ${c[5]}`).sort();
    assert.deepEqual(transitions, [
      '->queued#0 api -',
      'leased>failed#1 worker:w-cli worker_failed',
      'queued>leased#1 worker:w-cli -',
    ].sort());

    const missing = await orch('jobs', 'show', '999999999');
    assert.equal(missing.code, 1);
    assert.match(oneErrorLine(missing.stderr), /not found/);
  });

  test('jobs show lists history in the order the transitions happened', async () => {
    // Two sessions, as two server processes (or two pooled connections) would be.
    // The history id is an identity with CACHE 1000: each session draws ids from
    // its own block, so the id order is not the order of the transitions.
    const a = new Ledger(createPool(db.url, 1), defaultConfig);
    const b = new Ledger(createPool(db.url, 1), defaultConfig);
    try {
      await a.enqueue([{ tenantId: TENANT, jobType: 'cli_order', payload: { warmup: true } }]);
      const [e] = await b.enqueue([{ tenantId: TENANT, jobType: 'cli_order', payload: {} }]);
      await a.cancel(TENANT, e!.id, 'operator:test', 'second step');
      const r = await orch('--output', 'json', 'jobs', 'show', e!.id);
      assert.equal(r.code, 0, r.stderr);
      const { history } = json<{ job: Job; history: HistoryEntry[] }>(r.stdout);
      assert.deepEqual(history.map((h) => h.to), ['queued', 'canceled']);
    } finally {
      await a.pool.end();
      await b.pool.end();
    }
  });

  test('jobs cancel ID cancels a queued job; canceling it again is refused', async () => {
    const [e] = await plane.ledger.enqueue([{ tenantId: TENANT, jobType: 'cli_cancel', payload: {} }]);
    const r = await orch('jobs', 'cancel', e!.id, '--reason', 'no longer needed');
    assert.equal(r.code, 0, r.stderr);
    const rows = table(r.stdout);
    assert.deepEqual(rows[1], [e!.id, 'cli_cancel', 'canceled', '0']);
    assert.equal((await getJob(e!.id)).state, 'canceled');
    const last = (await plane.ledger.getHistory(TENANT, e!.id)).find((h) => h.to === 'canceled');
    assert.equal(last?.reason, 'no longer needed');

    const again = await orch('jobs', 'cancel', e!.id, '--reason', 'again');
    assert.equal(again.code, 1);
    assert.match(oneErrorLine(again.stderr), /cannot be canceled.*HTTP 409/);
  });
});

describe('orch jobs counts and bulk', () => {
  test('counts and list by payload and error class; bulk --dry-run counts and changes nothing; bulk cancel acts with its reason', async () => {
    const made = (await plane.ledger.enqueue([1, 2, 3].map((n) => ({ tenantId: TENANT, jobType: 'cli_bulk', payload: { customer: n === 2 ? 'c-2' : 'c-1' } })))).map((r) => r.id);
    const states = async () => Promise.all(made.map(async (id) => (await plane.ledger.getJob(TENANT, id))?.state));
    const counts = await orch('--output', 'json', 'jobs', 'counts', '--type', 'cli_bulk');
    assert.equal(counts.code, 0, counts.stderr);
    assert.equal(json<{ counts: { state: string; count: number }[] }>(counts.stdout).counts.find((c) => c.state === 'queued')?.count, 3);
    const listed = await orch('--output', 'json', 'jobs', 'list', '--type', 'cli_bulk', '--payload', '{"customer":"c-1"}');
    assert.deepEqual(json<{ jobs: Job[] }>(listed.stdout).jobs.map((j) => j.id).sort(), [made[0], made[2]].sort());

    const dry = await orch('jobs', 'bulk', 'cancel', '--type', 'cli_bulk', '--payload', '{"customer":"c-1"}', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout, 'would cancel 2 job(s)\n');
    assert.deepEqual(await states(), ['queued', 'queued', 'queued']);

    const noReason = await orch('jobs', 'bulk', 'cancel', '--type', 'cli_bulk');
    assert.equal(noReason.code, 1);
    assert.equal(noReason.stderr.trim().split('\n').length, 1);
    assert.match(noReason.stderr, /--reason is required/);
    const bad = await orch('jobs', 'bulk', 'explode', '--type', 'cli_bulk', '--dry-run');
    assert.equal(bad.code, 1);

    const done = await orch('jobs', 'bulk', 'cancel', '--type', 'cli_bulk', '--payload', '{"customer":"c-1"}', '--reason', 'bad batch');
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout, 'cancel: 2 of 2 job(s) changed\n');
    assert.deepEqual(await states(), ['canceled', 'queued', 'canceled']);
  });
});

describe('orch output', () => {
  test('a reader that goes away (orch ... | head) ends the CLI quietly with exit 0', async () => {
    await plane.ledger.enqueue(Array.from({ length: 500 }, (_, n) => ({ tenantId: TENANT, jobType: 'cli_head', payload: { n } })));
    const r = await cli(['--api-url', plane.url, 'jobs', 'list', '--type', 'cli_head', '--limit', '500'], { closeStdout: true });
    assert.deepEqual({ code: r.code, signal: r.signal, stderr: r.stderr }, { code: 0, signal: null, stderr: '' });
  });

  test('table cells cut at 60 characters end in …; --wide shows them whole; resume says what it lifted', async () => {
    const reason = `cli wide ${'x'.repeat(90)}`;
    const paused = await orch('pause', 'cli_wide', '--reason', reason, '--ticket', 'INC-9');
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, /^paused dispatch of cli_wide for every tenant: running jobs finish/);

    const cut = await orch('pauses');
    assert.equal(cut.code, 0, cut.stderr);
    const row = table(cut.stdout).find((c) => c[1] === 'cli_wide');
    assert.equal(row?.[2], `${reason.slice(0, 59)}…`);
    const wide = await orch('--wide', 'pauses');
    assert.equal(table(wide.stdout).find((c) => c[1] === 'cli_wide')?.[2], reason);

    const resumed = await orch('resume', 'cli_wide', '--reason', 'done');
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, new RegExp(`^resumed dispatch of cli_wide for every tenant \\(paused since \\S+ by \\S+: ${reason}, ticket INC-9\\)\\n$`));
    const again = await orch('resume', 'cli_wide', '--reason', 'done');
    assert.equal(again.code, 1);
    assert.match(oneErrorLine(again.stderr), /no pause .*HTTP 404/);
  });
});

describe('the local address file', () => {
  test('orch serve leaves its address (no secret) in $ORCH_DATA_DIR/local.json; orch jobs list finds it; a clean stop removes it', async () => {
    const dataDir = path.join(tmp, 'local-data');
    const file = path.join(dataDir, 'local.json');
    const { child, url } = await spawnServer({ ORCH_DATABASE_URL: db.url, ORCH_DATA_DIR: dataDir, ORCH_HTTP_PORT: String(await freePort()) });
    try {
      const local = await eventually(async () => JSON.parse(await readFile(file, 'utf8').catch(() => 'null')) as Record<string, unknown> | null, 10_000, 'local.json');
      assert.deepEqual(Object.keys(local).sort(), ['auth', 'pid', 'startedAt', 'url']);
      assert.deepEqual([local.url, local.auth, local.pid], [url, 'open', child.pid]);
      assert.equal(((await stat(file)).mode & 0o777).toString(8), '644');

      const [e] = await plane.ledger.enqueue([{ tenantId: TENANT, jobType: 'cli_local', payload: {} }]);
      const list = await runCli(['jobs', 'list', '--type', 'cli_local'], { ORCH_DATA_DIR: dataDir, ORCH_API_URL: '' });
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(table(list.stdout).slice(1).map((c) => c[0]), [e!.id]);

      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
      await assert.rejects(stat(file), /ENOENT/, 'a clean stop removes the file');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test('a file left by a server that is gone is passed over for the default address; the error names both', async () => {
    const dataDir = path.join(tmp, 'stale-data');
    const gone = spawn(process.execPath, ['-e', '']);
    await once(gone, 'exit');
    const port = await freePort();
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'local.json'), JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: gone.pid, auth: 'open', startedAt: new Date().toISOString() }));
    const r = await runCli(['jobs', 'list'], { ORCH_DATA_DIR: dataDir, ORCH_API_URL: '' });
    assert.equal(r.code, 1);
    const line = oneErrorLine(r.stderr);
    // nothing listens on the default address in the tests (every test server takes a free port)
    assert.match(line, /cannot reach the orchestrator API at http:\/\/127\.0\.0\.1:8080 /);
    assert.ok(line.includes(`${dataDir}/local.json names pid ${gone.pid}, which is gone`), line);
  });
});

describe('orch jobtypes', () => {
  test('jobtypes set NAME --max-attempts 3 --lease 10s, then jobtypes list', async () => {
    const set = await orch('jobtypes', 'set', 'cli_typed', '--max-attempts', '3', '--lease', '10s', '--reason', 'cli test');
    assert.equal(set.code, 0, set.stderr);
    const rows = table(set.stdout);
    assert.deepEqual(rows[0], ['NAME', 'MAXATTEMPTS', 'BACKOFFBASEMS', 'BACKOFFMAXMS', 'LEASEMS', 'TIMEOUTMS']);
    assert.equal(rows[1]![0], 'cli_typed');
    assert.equal(rows[1]![1], '3');
    assert.equal(rows[1]![4], '10000');

    const list = await orch('jobtypes', 'list');
    assert.equal(list.code, 0, list.stderr);
    const listed = table(list.stdout);
    assert.deepEqual(listed[0], ['NAME', 'MAXATTEMPTS', 'BACKOFFBASEMS', 'BACKOFFMAXMS', 'LEASEMS', 'TIMEOUTMS', 'IMPLICIT']);
    const row = listed.find((c) => c[0] === 'cli_typed');
    assert.deepEqual(row && [row[1], row[4], row[6]], ['3', '10000', 'false']);
    const stored = await plane.ledger.jobTypes.get(db.pool, 'cli_typed');
    assert.deepEqual(stored && [stored.maxAttempts, stored.leaseMs, stored.implicit], [3, 10_000, false]);

    // New jobs of the type take its max attempts.
    const [e] = await plane.ledger.enqueue([{ tenantId: TENANT, jobType: 'cli_typed', payload: {} }]);
    assert.equal((await getJob(e!.id)).maxAttempts, 3);

    const bad = await orch('jobtypes', 'set', 'cli_typed', '--lease', 'soon', '--reason', 'cli test');
    assert.equal(bad.code, 1);
    assert.match(oneErrorLine(bad.stderr), /--lease/);
  });
});

describe('orch migrate and serve', { concurrency: true }, () => {
  test('migrate against an up-to-date database exits 0 and says so', async () => {
    const r = await runCli(['migrate'], { ORCH_DATABASE_URL: db.url });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /database is up to date/);
  });

  test('serve and migrate refuse a schema newer than the build knows, saying which, and change nothing', async (t) => {
    const end = scope(t);
    const newer = end(await createTestDatabase(), (d) => d.drop());
    await newer.pool.query("INSERT INTO orch.schema_migrations (version, name) VALUES (9999, '9999_from_the_future')");
    for (const verb of ['migrate', 'serve']) {
      const r = await runCli([verb], { ORCH_DATABASE_URL: newer.url, ORCH_HTTP_PORT: String(await freePort()) });
      assert.equal(r.code, 1, `${verb}: ${r.stderr}`);
      assert.match(r.stderr, /schema is at migration 9999_from_the_future, newer than this build of orch knows \(up to \d+\)/, verb);
    }
    const { rows } = await newer.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orch.schema_migrations');
    assert.equal(rows[0]!.n, (await loadMigrations()).length + 1);
  });

  test('serve exits 0 on SIGTERM', async () => {
    const { child, url } = await spawnServer({ ORCH_DATABASE_URL: db.url });
    try {
      assert.equal((await fetch(`${url}/readyz`)).status, 200);
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      child.kill('SIGTERM');
      const [code, signal] = await exited;
      assert.deepEqual({ code, signal }, { code: 0, signal: null });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test('serve shuts down promptly on SIGTERM while a client holds an idle connection', async () => {
    const { child, url } = await spawnServer({ ORCH_DATABASE_URL: db.url });
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
    socket.on('error', () => undefined);
    try {
      await once(socket, 'connect');
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      child.kill('SIGTERM');
      const result = await Promise.race([
        exited.then(([code, signal]) => ({ code, signal })),
        new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000).unref()),
      ]);
      assert.deepEqual(result, { code: 0, signal: null }, 'clean exit within 10 s');
    } finally {
      socket.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
