import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { access, constants, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Command } from 'commander';
import pg from 'pg';
import { buildProgram } from '../src/cli/program.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import { freePort } from '../src/ledger/embedded.ts';
import type { Job, Lease } from '../src/ledger/types.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { HttpTransport } from '../src/sdk/transport.ts';
import { createWorker, type Worker } from '../src/sdk/worker.ts';
import { createEmptyDatabase, createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { NatsProcess } from './helpers/nats.ts';
import { sample } from '../src/metrics/exposition.ts';
import { eventually, REPO_ROOT, runCli, SCRIPTS_CLI_ENV, spawnServer, startTestServer } from './helpers/server.ts';

/**
 * ops/devops/orchestrator/incident-response.md, made executable: every `orch`
 * command and script it names exists, its central drill (FailuresHigh:
 * inspect, pause, fix, snapshot, replay, clear, resume) runs against a real
 * server and ends with every job succeeded and none lost, and every command
 * line in it runs as written against a live server and has its effect.
 */

const RUNBOOK = path.join(REPO_ROOT, 'ops/devops/orchestrator/incident-response.md');
const TENANT = 'drill';

let db: TestDatabase;
let plane: ControlPlane;
let client: OrchClient;
let dir: string;
const workers: Worker[] = [];

before(async () => {
  db = await createTestDatabase();
  plane = await startTestServer(db.url);
  client = new OrchClient({ apiUrl: plane.url, tenant: TENANT });
  dir = await mkdtemp(path.join(tmpdir(), 'orch-runbook-'));
});

after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await plane?.stop();
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

const orch = (...args: string[]) => runCli(['--api-url', plane.url, '--tenant', TENANT, ...args]);

test('every orch command, flag and script the runbook names exists', async () => {
  const text = await readFile(RUNBOOK, 'utf8');
  const program = buildProgram();
  const globals = new Set(program.options.map((o) => o.long));
  const spans = [...text.matchAll(/`(orch [^`]+)`/g)].map((m) => m[1]!);
  assert.ok(spans.length >= 25, `found only ${spans.length} commands`);
  for (const span of spans) {
    // walk the command tree as commander does: words naming subcommands, then arguments and flags
    let cmd: Command = program;
    const words = span.split(/\s+/).slice(1);
    for (const w of words) {
      const sub = cmd.commands.find((c) => c.name() === w);
      if (!sub) break;
      cmd = sub;
    }
    assert.notEqual(cmd, program, `"${span}" names a command`);
    assert.equal(cmd.commands.length, 0, `"${span}" names a command that runs, not a group`);
    const flags = new Set(cmd.options.map((o) => o.long));
    for (const flag of words.filter((w) => w.startsWith('--'))) assert.ok(flags.has(flag) || globals.has(flag), `"${span}": ${cmd.name()} has no ${flag}`);
  }
  const scripts = new Set([...text.matchAll(/scripts\/orchestrator\/[a-z-]+\.sh/g)].map((m) => m[0]));
  assert.deepEqual([...scripts].sort(), ['backup.sh', 'probe.sh', 'replay-smoke.sh', 'restore.sh', 'smoke.sh'].map((s) => `scripts/orchestrator/${s}`));
  for (const s of scripts) await access(path.join(REPO_ROOT, s), constants.X_OK);
});

test('every alert in alerts.yaml has its section in the runbook, and every runbook_url points at one', async () => {
  const rules = await readFile(path.join(REPO_ROOT, 'ops/devops/orchestrator/alerts.yaml'), 'utf8');
  const text = await readFile(RUNBOOK, 'utf8');
  const anchors = new Set([...text.matchAll(/^## (\S+)$/gm)].map((m) => m[1]!.toLowerCase()));
  const alerts = new Set([...rules.matchAll(/- alert: (\S+)/g)].map((m) => m[1]!));
  for (const name of alerts) assert.ok(anchors.has(name.toLowerCase()), `runbook section for ${name}`);
  // each runbook_url opens the console's page of its own alert, which shows that section
  const links = [...rules.matchAll(/- alert: (\S+)[\s\S]*?runbook_url: '[^']*\/runbook\/(\w+)[?']/g)];
  assert.equal(links.length, [...rules.matchAll(/runbook_url:/g)].length, 'every runbook_url links a console runbook page');
  for (const [, alert, page] of links) {
    assert.equal(page, alert, `${alert}: runbook_url`);
    assert.ok(anchors.has(page!.toLowerCase()), `section ${page}`);
  }
});

test('the drill: failures in one job type climb, pause stops it, the DLQ is snapshotted, replayed after the fix and cleared; every job succeeds', async () => {
  let broken = true;
  await client.defineJobType('render', { maxAttempts: 2, backoffBaseMs: 10, backoffMaxMs: 20, backoffJitter: 0 }, { reason: 'test setup' });
  const handler = (job: { jobType: string }) => {
    if (job.jobType === 'render' && broken) throw Object.assign(new Error('upstream timed out after 30s'), { name: 'UpstreamTimeout' });
    return { ok: true };
  };
  workers.push(await createWorker({ jobTypes: ['render', 'email'], apiUrl: plane.url, tenant: TENANT, handler, concurrency: 8, waitMs: 200, handleSignals: false }));

  const enqueue = async (jobType: string, n: number) =>
    (await client.enqueueBatch(Array.from({ length: n }, (_, i) => ({ jobType, payload: { i } })))).map((r) => r.id);
  const originals = [...await enqueue('render', 30), ...await enqueue('email', 10)];

  // 1. the failure metrics climb for render only (what FailuresHigh and ErrorCluster read)
  const metrics = async () => (await fetch(`${plane.url}/metrics`)).text();
  await eventually(async () => (sample(await metrics(), 'orchestrator_dlq_depth', { tenant: TENANT, job_type: 'render' }) ?? 0) >= 30, 30_000, 'all 30 render jobs dead-lettered');
  const m = await metrics();
  assert.equal(sample(m, 'orchestrator_job_failures_total', { job_type: 'render', error_class: 'UpstreamTimeout' }), 60, 'two failed attempts per render job');
  assert.equal(sample(m, 'orchestrator_jobs_total', { tenant: TENANT, job_type: 'render', outcome: 'dead_lettered' }), 30);
  assert.equal(sample(m, 'orchestrator_job_failures_total', { job_type: 'email', error_class: 'UpstreamTimeout' }), undefined, 'email is healthy');

  // 2. inspect: the cluster names the cause
  const stats = await orch('dlq', 'stats', '--output', 'json');
  assert.equal(stats.code, 0, stats.stderr);
  const cluster = (JSON.parse(stats.stdout) as { clusters: { jobType: string; errorClass: string; count: number }[] }).clusters[0];
  assert.deepEqual({ jobType: cluster?.jobType, errorClass: cluster?.errorClass, count: cluster?.count }, { jobType: 'render', errorClass: 'UpstreamTimeout', count: 30 });

  // 3. pause render: new render jobs stay queued while email keeps flowing (the signal that workers are claiming)
  const paused = await orch('pause', 'render', '--reason', 'failure spike', '--ticket', 'INC-1');
  assert.equal(paused.code, 0, paused.stderr);
  const heldBack = await enqueue('render', 5);
  const flowing = await enqueue('email', 5);
  await eventually(async () => (await Promise.all(flowing.map((id) => client.getJob(id)))).every((j) => j.job.state === 'succeeded'), 30_000, 'email jobs enqueued after the pause to succeed');
  for (const id of heldBack) assert.equal((await client.getJob(id)).job.state, 'queued', 'paused render jobs are not dispatched');
  assert.equal(sample(await metrics(), 'orchestrator_queue_depth', { tenant: TENANT, job_type: 'render', state: 'paused' }), 5);

  // 4. snapshot the DLQ, then the "fix" ships
  const snap = await orch('dlq', 'snapshot', '--type', 'render', '--out', dir, '--output', 'json');
  assert.equal(snap.code, 0, snap.stderr);
  const manifest = JSON.parse(snap.stdout) as { id: string; entries: number };
  assert.equal(manifest.entries, 30);
  const lines = (await readFile(path.join(dir, `dlq-snapshot-${manifest.id}.ndjson`), 'utf8')).trim().split('\n');
  assert.equal(lines.length, 30, 'the snapshot file holds every entry');
  broken = false;

  // 5. replay the snapshot, clear it, resume dispatch
  const replay = await orch('dlq', 'replay', '--snapshot', manifest.id, '--reason', 'hotfix deployed', '--output', 'json');
  assert.equal(replay.code, 0, replay.stderr);
  const clear = await orch('dlq', 'clear', '--snapshot', manifest.id, '--reason', 'replayed after the hotfix');
  assert.equal(clear.code, 0, clear.stderr);
  const resumed = await orch('resume', 'render', '--reason', 'hotfix deployed');
  assert.equal(resumed.code, 0, resumed.stderr);

  // 6. every original job ends succeeded, itself or through its replay; nothing is left waiting or dead
  const all = await eventually(async () => {
    const jobs = await listAll();
    return jobs.every((j) => ['succeeded', 'cleared'].includes(j.state)) ? jobs : null;
  }, 30_000, 'every job to end');
  const byReplayOf = new Map(all.filter((j) => j.replayOf).map((j) => [j.replayOf!, j]));
  for (const id of [...originals, ...heldBack, ...flowing]) {
    const job = all.find((j) => j.id === id);
    assert.ok(job, `job ${id} is in the ledger`);
    const final = job.state === 'cleared' ? byReplayOf.get(id) : job;
    assert.equal(final?.state, 'succeeded', `job ${id} (${job.jobType}) ended ${job.state}${final !== job ? `, its replay ${final?.state}` : ''}`);
  }
  assert.equal(all.length, originals.length + heldBack.length + flowing.length + 30, 'the ledger holds the originals and one replay per dead letter, nothing else');
  const end = await metrics();
  assert.equal(sample(end, 'orchestrator_dlq_depth', { tenant: TENANT, job_type: 'render' }), 0);
  assert.equal(sample(end, 'orchestrator_jobs_total', { tenant: TENANT, job_type: 'render', outcome: 'succeeded' }), 35);

  // 7. the audit log holds the operator's actions with their reasons
  const audit = await orch('audit', 'list', '--output', 'json');
  const actions = (JSON.parse(audit.stdout) as { entries: { action: string; reason: string }[] }).entries.map((e) => `${e.action}: ${e.reason}`);
  for (const a of ['dispatch.pause: failure spike', 'dlq.replay: hotfix deployed', 'dlq.clear: replayed after the hotfix', 'dispatch.resume: hotfix deployed']) {
    assert.ok(actions.includes(a), `audit has "${a}" (has ${actions.join('; ')})`);
  }
});

async function listAll(): Promise<Job[]> {
  const jobs: Job[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listJobs({ limit: 500, cursor });
    jobs.push(...page.jobs);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return jobs;
}

// =============================================================================================================
// Every command line of the runbook, run as written (placeholders filled from seeded data) by bash in a
// deployment directory of its own, against a spawned `orch serve` on a database of its own. Each line must
// exit 0 and do what the runbook says it does; a line no step below knows how to check fails the test.

const DRILL_TENANT = 'oncall';
const SCRIPTS_DIR = path.join(REPO_ROOT, 'scripts');
/** The server's stuck threshold: a lease silent this long is stuck (the runbook's LeaseStall). */
const STUCK_AFTER_MS = 3000;

interface RunbookLine { section: string; text: string }

/** The command lines of the runbook, in order, each with the section it belongs to; identical lines within a section once. */
function runbookLines(md: string): RunbookLine[] {
  const headings = [...md.matchAll(/^## (.+)$/gm)].map((m) => ({ at: m.index, name: m[1]! }));
  const lines: RunbookLine[] = [];
  for (const m of md.matchAll(/`([^`]+)`/g)) {
    const text = m[1]!.replace(/\s+/g, ' ').trim();
    if (!/^(orch |scripts\/orchestrator\/|psql |promtool |[\d*]+ [\d*]+ [\d*]+ [\d*]+ [\d*]+ )/.test(text)) continue;
    const section = headings.filter((h) => h.at < m.index).at(-1)?.name ?? '(top)';
    if (!lines.some((l) => l.section === section && l.text === text)) lines.push({ section, text });
  }
  return lines;
}

/** What a step matches on: the CLI verb ("orch dlq snapshot"), the script, "psql" or "cron". */
function commandKey(text: string): string {
  if (/^[\d*]+ [\d*]+ [\d*]+ [\d*]+ [\d*]+ /.test(text)) return 'cron';
  const words = text.split(' ');
  if (words[0] !== 'orch') return words[0]!;
  const verb: string[] = [];
  for (const w of words.slice(1)) {
    if (!/^[a-z][a-z-]*$/.test(w)) break;
    verb.push(w);
  }
  return `orch ${verb.join(' ')}`;
}

/** Shell words of a line (double and single quotes), for reading its flags. */
function shellWords(text: string): string[] {
  return [...text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

function flag(text: string, name: string): string | undefined {
  const words = shellWords(text);
  const i = words.indexOf(name);
  return i >= 0 ? words[i + 1] : undefined;
}

/** Data rows of a table the CLI printed (the header is the first line whose words are all upper case). */
function tableRows(stdout: string, firstColumn: string): string[][] {
  const lines = stdout.split('\n');
  const header = lines.findIndex((l) => l.trim().split(/\s+/)[0] === firstColumn);
  if (header < 0) return [];
  const rows: string[][] = [];
  for (const l of lines.slice(header + 1)) {
    if (l.trim() === '') break;
    rows.push(l.trim().split(/\s{2,}/));
  }
  return rows;
}

/** A reason to skip a line whose tool (promtool) is not installed here; none in CI, where it must be. */
async function toolMissing(text: string): Promise<string | false> {
  if (!text.startsWith('promtool ')) return false;
  const found = await new Promise<boolean>((resolve) => spawn('bash', ['-c', 'command -v promtool'], { stdio: 'ignore' }).on('close', (code) => resolve(code === 0)));
  if (found || process.env.CI === 'true') return false;
  process.stderr.write(`\n*** no promtool on PATH: skipping the runbook line "${text}" ***\n\n`);
  return 'no promtool on PATH';
}

interface Ran { code: number | null; stdout: string; stderr: string }
const shown = (r: Ran) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

test('every command line of the runbook runs against a live server and does what the runbook says', { timeout: 600_000 }, async (t) => {
  const lines = runbookLines(await readFile(RUNBOOK, 'utf8'));
  const cleanups: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch((err: Error) => process.stderr.write(`runbook drill cleanup: ${err.message}\n`));
  });

  // The deployment: a directory with the scripts and an `orch` on PATH, NATS and PostgreSQL of the drill's own.
  const deploy = await mkdtemp(path.join(tmpdir(), 'orch-runbook-deploy-'));
  cleanups.push(() => rm(deploy, { recursive: true, force: true }));
  await symlink(SCRIPTS_DIR, path.join(deploy, 'scripts'));
  await symlink(path.join(REPO_ROOT, 'ops'), path.join(deploy, 'ops'));
  await mkdir(path.join(deploy, 'bin'));
  // A stop signal is for the orchestrator it runs (`orch serve` stops gracefully): the wrapper waits for its exit status.
  await writeFile(path.join(deploy, 'bin', 'orch'), `#!/usr/bin/env bash\ntrap : TERM INT\nsource ${JSON.stringify(path.join(SCRIPTS_DIR, 'orchestrator', 'lib.sh'))}\norch "$@"\n`, { mode: 0o755 });
  const drillDb = await createTestDatabase();
  cleanups.push(() => drillDb.drop());
  const nats = await NatsProcess.create();
  await nats.start();
  cleanups.push(() => nats.destroy());

  const env: Record<string, string> = { ORCH_LOG_LEVEL: 'silent' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ORCH_') && v !== undefined) env[k] = v;
  Object.assign(env, SCRIPTS_CLI_ENV, { PATH: `${path.join(deploy, 'bin')}:${process.env.PATH}`, ORCH_DATABASE_URL: drillDb.url, ORCH_NATS_URL: nats.url, ORCH_TENANT: DRILL_TENANT });
  // `orch serve` itself, as production runs it: its worker registry keeps silent workers (the stuck one) for the whole drill.
  const server = await spawnServer({ ...env, ORCH_LEASE_STUCK_AFTER_MS: String(STUCK_AFTER_MS), ORCH_WORKER_LOST_AFTER_MS: String(24 * 3600 * 1000) });
  cleanups.push(() => server.stop());
  env.ORCH_API_URL = server.url;
  const api = new OrchClient({ apiUrl: server.url, tenant: DRILL_TENANT });
  const transport = new HttpTransport({ apiUrl: server.url, tenant: DRILL_TENANT });
  const q = async <R extends object>(sql: string, params: unknown[] = []) => (await drillDb.pool.query<R & pg.QueryResultRow>(sql, params)).rows;

  /** Runs one line with bash in the deployment directory; the process group is killed after 3 minutes. */
  const sh = (text: string, extraEnv: Record<string, string> = {}): Promise<Ran> => new Promise((resolve) => {
    const child = spawn('bash', ['-c', text], { cwd: deploy, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 180_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  const ok = async (text: string, extraEnv: Record<string, string> = {}) => {
    const r = await sh(text, extraEnv);
    assert.equal(r.code, 0, `${text}\n${shown(r)}`);
    return r;
  };

  // --- seeded state: something for every step to act on ---------------------------------------------------
  const render = 'render';
  const thumb = 'thumb';
  const seeding = { reason: 'runbook drill setup' };
  await api.defineJobType(render, { maxAttempts: 3, backoffBaseMs: 3_600_000, backoffMaxMs: 3_600_000, backoffJitter: 0, leaseMs: 600_000 }, seeding);
  await api.defineJobType(thumb, { leaseMs: 600_000 }, seeding);
  const never = new AbortController().signal;
  const claim = async (workerId: string, jobType: string, limit: number) => transport.claim({ workerId, jobTypes: [jobType], limit, waitMs: 0 }, never);
  const enqueue = async (jobType: string, n: number, priority = 0) =>
    (await api.enqueueBatch(Array.from({ length: n }, (_, i) => ({ jobType, payload: { i }, priority })))).map((r) => r.id);
  const ref = (l: Lease) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId });
  const failAll = async (leases: Lease[], errorClass: (l: Lease) => string) => {
    const results = await transport.fail(leases.map((l) => ({ ...ref(l), error: { class: errorClass(l), message: `${errorClass(l)} in the drill`, retryable: false } })));
    assert.ok(results.every((r) => r.status === 'ok'), JSON.stringify(results));
  };
  // leases: one whose worker went silent (stuck), one of a live worker
  await enqueue(render, 2, 1000);
  const [stuckLease] = await claim('stuck-worker', render, 1);
  const [liveLease] = await claim('render-w2', render, 1);
  assert.ok(stuckLease && liveLease);
  // a job waiting for its retry (failed), with its last error
  await enqueue(render, 1, 999);
  const [retrying] = await claim('render-w1', render, 1);
  assert.deepEqual((await transport.fail([{ ...ref(retrying!), error: { class: 'UpstreamTimeout', message: 'upstream timed out after 30s' } }]))[0]?.status, 'ok');
  // dead letters of one cause
  await enqueue(render, 6, 998);
  await failAll(await claim('render-w1', render, 6), () => 'UpstreamTimeout');
  // a queued backlog at mixed priorities
  const backlog = [...await enqueue(render, 2, 0), ...await enqueue(render, 2, 5), ...await enqueue(render, 1, 1)];
  // thumb: a quota that holds its backlog back (two leases at maxActive 2, then a throttled claim)
  await enqueue(thumb, 5);
  const thumbLeases = await claim('thumb-w', thumb, 2);
  assert.equal(thumbLeases.length, 2);
  await api.setQuota({ tenantId: DRILL_TENANT, jobType: thumb }, { maxActive: 2 }, { reason: 'seeded quota', ticket: 'INC-100' });
  assert.deepEqual(await claim('thumb-w', thumb, 1), [], 'the quota holds thumb back');
  // an earlier pause, for `orch audit list --action dispatch.pause`
  await enqueue('nightly-report', 1);
  await api.setDispatch('pause', { jobType: 'nightly-report', tenantId: DRILL_TENANT }, 'seeded pause', 'INC-99');

  const ctx = {
    type: render, tenant: DRILL_TENANT, jobId: retrying!.jobId, workerId: 'render-w2', errorClass: 'UpstreamTimeout',
    snapshotId: '', pid: 0, backupFile: '', backupCounts: '', schedule: 'hourly-export', start: '', end: '', missed: 0,
  };
  // ScheduleMissedTicks: an hourly schedule of its own job type (no worker takes it), its payload a window template
  const scheduleType = 'export';
  const schedulePayload = { from: '{{windowStart}}', to: '{{windowEnd}}', report: 'usage' };
  let blocker: pg.Client | null = null;
  let waiter: { client: pg.Client; done: Promise<unknown> } | null = null;
  /** Ends the LeaseStall sessions: an open transaction would hold back the outbox relay, and every event after it. */
  const endLockSessions = async () => {
    await waiter?.client.query('ROLLBACK').catch(() => undefined);
    await waiter?.client.end().catch(() => undefined);
    await blocker?.end().catch(() => undefined);
    waiter = null;
    blocker = null;
  };
  cleanups.push(endLockSessions);

  /** A new incident in `type`: fresh jobs fail (with `errorClass` for the first `n`), along with whatever else is runnable. */
  const incident = async (n: number, errorClass: string) => {
    const fresh = new Set(await enqueue(render, n));
    const leases = await claim('render-w1', render, 100);
    assert.ok([...fresh].every((id) => leases.some((l) => l.jobId === id)), 'the fresh jobs were claimed');
    await failAll(leases, (l) => (fresh.has(l.jobId) ? errorClass : 'UpstreamTimeout'));
    return [...fresh];
  };

  // What each section's incident looks like before its first line runs.
  const sectionSetup: Record<string, () => Promise<void>> = {
    OrchestratorFailuresHigh: async () => { await incident(3, 'UpstreamTimeout'); },
    OrchestratorErrorCluster: async () => {
      ctx.errorClass = 'SchemaMismatch';
      await incident(2, 'SchemaMismatch');
    },
    OrchestratorLeaseStall: async () => {
      // a session holding the stuck job's row, and the statement it blocks
      blocker = new pg.Client({ connectionString: drillDb.url });
      blocker.on('error', () => undefined); // it is terminated on purpose
      await blocker.connect();
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM orch.jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE', [DRILL_TENANT, stuckLease!.jobId]);
      const client = new pg.Client({ connectionString: drillDb.url });
      await client.connect();
      await client.query('BEGIN');
      waiter = { client, done: client.query('UPDATE orch.jobs SET progress = progress WHERE tenant_id = $1 AND id = $2', [DRILL_TENANT, stuckLease!.jobId]) };
      await eventually(async () => (await api.listLeases()).locks.length > 0, 10_000, 'the lock wait to show');
      await eventually(async () => (await api.listLeases({ jobType: render })).leases.find((l) => l.jobId === stuckLease!.jobId)?.stuck, 10_000, 'the silent lease to count as stuck');
    },
    OrchestratorBackpressure: async () => { ctx.type = thumb; },
    OrchestratorScheduleMissedTicks: async () => {
      // the last tick fired at the hour 4 hours ago, then no server ran: of the ticks since (3 hours ago up to this
      // hour), the scheduler fires the latest late one (catch-up latest) and this hour's when it is still within the
      // grace, and counts the rest missed (2 or 3); the hourly windows of the gap are START..END
      await api.createSchedule(ctx.schedule, { jobType: scheduleType, cron: '0 * * * *', payload: schedulePayload }, seeding);
      const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
      ctx.start = new Date(hour - 4 * 3_600_000).toISOString();
      ctx.end = new Date(hour - 3_600_000).toISOString();
      // (as if created a day ago: ticks count from the schedule's creation)
      await q(`UPDATE orch.schedules SET created_at = now() - interval '1 day', last_tick_at = $3, next_tick_at = $4 WHERE tenant_id = $1 AND name = $2`,
        [DRILL_TENANT, ctx.schedule, ctx.start, new Date(hour - 3 * 3_600_000).toISOString()]);
      ctx.missed = await eventually(async () => (await api.getSchedule(ctx.schedule)).missedTicks, 10_000, 'the scheduler to count the missed ticks');
      assert.ok(ctx.missed >= 2, `${ctx.missed} missed ticks`);
      ctx.type = scheduleType;
    },
  };
  // What a single line needs first.
  const lineSetup: Record<string, () => Promise<void>> = {
    // the permanent-cause path: new dead letters (bad payloads), snapshotted first as the runbook says
    'orch dlq clear --snapshot SNAPSHOT_ID --reason "bad payloads, ticket ..."': async () => {
      await incident(2, 'BadPayload');
      ctx.snapshotId = (await api.snapshotDlq({ jobType: render, errorClass: 'BadPayload' })).id;
    },
    // the live worker and thumb's worker keep heartbeating: only the silent lease is stuck
    'orch leases release --stuck --reason "lease stall INC-123"': async () => {
      const beats = await transport.heartbeat([liveLease!, ...thumbLeases].map(ref));
      assert.ok(beats.every((b) => b.status === 'ok'), JSON.stringify(beats));
    },
  };

  const fill = (text: string): string => {
    const filled = text
      .replace(/\bTENANT\b/g, ctx.tenant).replace(/\bTYPE\b/g, ctx.type).replace(/\bJOB_ID\b/g, ctx.jobId)
      .replace(/\bSNAPSHOT_ID\b/g, ctx.snapshotId).replace(/\bWORKER_ID\b/g, ctx.workerId).replace(/\bCLASS\b/g, ctx.errorClass)
      .replace(/\bPID\b/g, String(ctx.pid)).replace(/\bFILE\b/g, ctx.backupFile).replace('[OUT_DIR]', 'backups')
      .replace(/\bSCHEDULE\b/g, ctx.schedule).replace(/\bSTART\b/g, ctx.start).replace(/\bEND\b/g, ctx.end).replace(/\bPAYLOAD\b/g, JSON.stringify(schedulePayload))
      .replace('/srv/orch', deploy).replace(/ticket \.\.\."/g, 'ticket INC-123"').replace(/--reason \.\.\./g, '--reason "runbook drill"');
    assert.doesNotMatch(filled, /\.\.\.|\b[A-Z]+_ID\b|\bPID\b|\[[A-Z_]+\]/, `"${text}": a placeholder the drill cannot fill`);
    return filled;
  };

  const deadLetters = async (jobType: string, errorClass?: string) => (await q<{ id: string }>(
    `SELECT id::text FROM orch.jobs WHERE tenant_id = $1 AND state = 'dead_lettered' AND job_type = $2 AND ($3::text IS NULL OR last_error->>'class' = $3)`,
    [DRILL_TENANT, jobType, errorClass ?? null])).map((r) => r.id).sort();
  const snapshotJobs = async (id: string) => (await q<{ ids: string[] }>('SELECT job_ids::text[] AS ids FROM orch.dlq_snapshots WHERE id = $1', [id]))[0]!.ids.sort();
  const states = async (ids: string[]) => new Set((await q<{ state: string }>('SELECT DISTINCT state::text FROM orch.jobs WHERE tenant_id = $1 AND id = ANY($2::bigint[])', [DRILL_TENANT, ids])).map((r) => r.state));
  const leased = async () => new Map((await q<{ id: string; lease_id: string }>(`SELECT id::text, lease_id::text FROM orch.jobs WHERE tenant_id = $1 AND state = 'leased'`, [DRILL_TENANT])).map((r) => [r.id, r.lease_id]));
  const probed = async (since: number) => {
    const file = path.join(deploy, 'out', 'orchestrator-probe', 'status.txt');
    assert.ok((await stat(file)).mtimeMs >= since, 'status.txt written by this run');
    const status = Object.fromEntries((await readFile(file, 'utf8')).trim().split('\n').map((l) => l.split('\t').slice(0, 2) as [string, string]));
    assert.deepEqual(status, { postgres: 'ok', mongo: 'skipped', nats: 'ok', orchestrator: 'ok', overall: 'ok' });
  };
  const probe = async (text: string) => {
    const since = Date.now() - 1000;
    await ok(fill(text));
    await probed(since);
  };
  const smoke = async (text: string) => assert.match((await ok(fill(text))).stdout, /(^|\n)READY\n$/);
  const replaySmoke = async (text: string) => assert.match((await ok(fill(text))).stdout, /\nREADY \(replay-smoke: everything survived the restart\)\n$/);

  /** One step per command: runs the line (filled in) and checks its effect. */
  const steps: Record<string, (text: string) => Promise<void>> = {
    'orch audit list': async (text) => {
      const r = await ok(fill(text));
      const rows = tableRows(r.stdout, 'ID');
      const action = flag(text, '--action');
      assert.ok(rows.length > 0, shown(r));
      if (action) assert.ok(rows.every((row) => row[3] === action), `only ${action}:\n${r.stdout}`);
      assert.ok(rows.some((row) => row[3] === 'dispatch.pause' && row[5] === 'seeded pause'), `the seeded pause is listed:\n${r.stdout}`);
    },
    'orch jobs list': async (text) => {
      const filled = fill(text);
      const r = await ok(filled);
      const sort = flag(filled, '--sort') ?? 'newest';
      const order = { newest: 'id DESC', oldest: 'id', priority: 'priority DESC, run_after, id' }[sort];
      assert.ok(order, `--sort ${sort}`);
      const expected = (await q<{ id: string }>(
        `SELECT id::text FROM orch.jobs WHERE tenant_id = $1 AND state = $2 AND job_type = $3 ORDER BY ${order} LIMIT $4`,
        [DRILL_TENANT, flag(filled, '--state'), flag(filled, '--type'), Number(flag(filled, '--limit') ?? 50)])).map((x) => x.id);
      assert.ok(expected.length > 0, `seeded jobs for ${filled}`);
      assert.deepEqual(tableRows(r.stdout, 'ID').map((row) => row[0]), expected, filled);
      if (sort === 'oldest') assert.equal(expected[0], backlog[0], 'the oldest queued job comes first');
      if (sort === 'priority') assert.equal(expected[0], backlog[2], 'the first of the highest priority comes first, though not the oldest');
    },
    'orch cluster status': async (text) => {
      const r = await ok(fill(text));
      assert.match(r.stdout, /^leader: \S+ \(term \d+, since \d{4}-/, r.stdout);
      // (servers earlier steps started and stopped on the drill's database are listed as stopped)
      const up = tableRows(r.stdout, 'ID').filter((row) => row[1] === 'up');
      assert.equal(up.length, 1, `the drill's one running replica:\n${r.stdout}`);
      assert.equal(up[0]![2], 'yes', 'it leads');
      assert.match(up[0]!.at(-1)!, /lease-reaper/, 'the leader runs the lease reaper');
    },
    'orch workers list': async (text) => {
      const r = await ok(fill(text));
      const listed = tableRows(r.stdout, 'WORKERID').map((row) => row[0]);
      for (const w of ['stuck-worker', 'render-w1', 'render-w2', 'thumb-w']) assert.ok(listed.includes(w), `${w} listed:\n${r.stdout}`);
    },
    'orch quota summary': async (text) => {
      const r = await ok(fill(text));
      const row = tableRows(r.stdout, 'TENANTID').find((x) => x[0] === DRILL_TENANT && x[1] === thumb);
      assert.ok(row?.includes('concurrency'), `thumb throttled by its concurrency cap:\n${r.stdout}`);
    },
    'orch dlq stats': async (text) => {
      const depth = (await deadLetters(render)).length;
      const r = await ok(fill(text));
      assert.match(r.stdout, new RegExp(`^tenant ${DRILL_TENANT}: ${depth} dead letters`), r.stdout);
      assert.ok(tableRows(r.stdout, 'JOBTYPE').some((row) => row[0] === render && row[1] === String(depth)), r.stdout);
      assert.match(r.stdout, /error clusters:\n[\s\S]*render\s+UpstreamTimeout\s+\d+/, r.stdout);
    },
    'orch dlq list': async (text) => {
      const filled = fill(text);
      const expected = await deadLetters(flag(filled, '--type')!, flag(filled, '--error-class'));
      assert.ok(expected.length > 0 && expected.length <= Number(flag(filled, '--limit') ?? 50), `${expected.length} dead letters for ${filled}`);
      const r = await ok(filled);
      assert.deepEqual(tableRows(r.stdout, 'ID').map((row) => row[0]).sort(), expected, filled);
    },
    'orch dlq snapshot': async (text) => {
      const filled = fill(text);
      const expected = await deadLetters(flag(filled, '--type')!, flag(filled, '--error-class'));
      assert.ok(expected.length > 0, `dead letters for ${filled}`);
      const r = await ok(filled);
      const id = tableRows(r.stdout, 'ID')[0]?.[0];
      assert.ok(id, r.stdout);
      assert.deepEqual(await snapshotJobs(id), expected, 'the snapshot holds exactly the entries the filter names');
      const dir = path.join(deploy, flag(filled, '--out') ?? 'out/dlq-snapshots');
      const ndjson = (await readFile(path.join(dir, `dlq-snapshot-${id}.ndjson`), 'utf8')).trim().split('\n');
      assert.equal(ndjson.length, expected.length);
      const manifest = JSON.parse(await readFile(path.join(dir, `dlq-snapshot-${id}.manifest.json`), 'utf8')) as { entries: number; sha256: string };
      assert.equal(manifest.entries, expected.length);
      ctx.snapshotId = id;
    },
    'orch dlq replay': async (text) => {
      const original = await snapshotJobs(ctx.snapshotId);
      const r = await ok(fill(text));
      assert.match(r.stdout, new RegExp(`\\s${original.length}\\s+${original.length}\\s+0\\s*$`, 'm'), `total, done, created ${original.length}, none skipped:\n${r.stdout}`);
      const replays = await q<{ replay_of: string; state: string }>('SELECT replay_of::text, state::text FROM orch.jobs WHERE tenant_id = $1 AND replay_of = ANY($2::bigint[])', [DRILL_TENANT, original]);
      assert.deepEqual(replays.map((x) => x.replay_of).sort(), original, 'one new job per entry');
    },
    'orch dlq clear': async (text) => {
      const inSnapshot = await snapshotJobs(ctx.snapshotId);
      const others = (await deadLetters(render)).filter((id) => !inSnapshot.includes(id));
      const r = await ok(fill(text));
      assert.deepEqual(await states(inSnapshot), new Set(['cleared']), r.stdout);
      assert.deepEqual((await deadLetters(render)), others, 'entries outside the snapshot stay');
      const reason = flag(fill(text), '--reason');
      assert.ok((await api.listAudit({ action: 'dlq.clear' })).entries.some((e) => e.reason === reason), 'audited with its reason');
    },
    'orch jobs show': async (text) => {
      const r = await ok(fill(text));
      assert.ok(tableRows(r.stdout, 'ID')[0]?.[0] === ctx.jobId, r.stdout);
      assert.match(r.stdout, /last error: UpstreamTimeout: upstream timed out after 30s/);
      assert.match(r.stdout, /history:\n[\s\S]*leased[\s\S]*failed/);
    },
    'orch pause': async (text) => {
      const filled = fill(text);
      await ok(filled);
      const pause = (await api.listPauses()).find((p) => p.jobType === ctx.type);
      assert.equal(pause?.reason, flag(filled, '--reason'), JSON.stringify(await api.listPauses()));
      await enqueue(ctx.type, 1);
      assert.deepEqual(await claim('render-w1', ctx.type, 10), [], 'no dispatch of a paused type');
    },
    'orch resume': async (text) => {
      await ok(fill(text));
      assert.equal((await api.listPauses()).find((p) => p.jobType === ctx.type), undefined);
      const leases = await claim('render-w1', ctx.type, 100);
      assert.ok(leases.length > 0, 'dispatch runs again');
      await transport.release(leases.map(ref));
    },
    'orch leases list': async (text) => {
      const r = await ok(fill(text));
      const rows = tableRows(r.stdout, 'JOBID');
      const stuck = rows.find((row) => row[0] === stuckLease!.jobId);
      assert.ok(stuck?.includes('stuck-worker') && stuck.includes('true'), `the stuck lease, marked stuck:\n${r.stdout}`);
      assert.ok(rows.some((row) => row[0] === liveLease!.jobId), r.stdout);
      const { rows: [b] } = await blocker!.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const blocking = tableRows(r.stdout.slice(r.stdout.indexOf('lock waits')), 'PID').find((row) => row[1] === 'blocking');
      assert.equal(Number(blocking?.[0]), b!.pid, `the blocking session printed:\n${r.stdout}`);
      ctx.pid = b!.pid;
    },
    psql: async (text) => {
      const r = await ok(fill(text));
      assert.match(r.stdout, /\n t\n/, r.stdout);
      // pg_terminate_backend signals the backend; it exits a moment later
      await eventually(async () => (await q('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [ctx.pid])).length === 0, 10_000, 'the blocking session to end');
      await waiter!.done; // the statement it blocked ran
      await endLockSessions();
    },
    'orch leases release': async (text) => {
      const filled = fill(text);
      const before = await leased();
      const worker = flag(filled, '--worker');
      const target = worker ? [liveLease!.jobId] : [stuckLease!.jobId];
      const r = await ok(filled);
      assert.match(r.stdout, new RegExp(`^${target.length} released$`, 'm'), r.stdout);
      const after = await leased();
      for (const id of target) assert.ok(!after.has(id), `${id} released`);
      for (const [id, lease] of before) if (!target.includes(id)) assert.equal(after.get(id), lease, `${id} keeps its lease`);
      if (!worker) {
        const [job] = await q<{ state: string; attempt: number }>('SELECT state::text, attempt FROM orch.jobs WHERE tenant_id = $1 AND id = $2', [DRILL_TENANT, stuckLease!.jobId]);
        assert.deepEqual(job, { state: 'queued', attempt: 1 }, 'back in the queue with the attempt counted');
      }
    },
    'orch quota boost': async (text) => {
      await ok(fill(text));
      const quota = (await api.listQuotas()).find((x) => x.tenantId === DRILL_TENANT && x.jobType === thumb);
      assert.equal(quota?.boost?.maxActive, 4, JSON.stringify(quota));
      const left = Date.parse(quota.boost.until) - Date.now();
      assert.ok(left > 29 * 60_000 && left <= 30 * 60_000, `boosted for 30m (${left} ms left)`);
      const more = await claim('thumb-w', thumb, 5);
      assert.equal(more.length, 2, 'the boost lets two more thumb jobs run');
      thumbLeases.push(...more);
    },
    'orch quota restore': async (text) => {
      await ok(fill(text));
      const quota = (await api.listQuotas()).find((x) => x.tenantId === DRILL_TENANT && x.jobType === thumb);
      assert.equal(quota?.boost, null);
      assert.equal(quota?.maxActive, 2);
      assert.deepEqual(await claim('thumb-w', thumb, 5), [], 'back under the cap of 2');
    },
    'orch schedules list': async (text) => {
      const r = await ok(fill(text));
      const row = tableRows(r.stdout, 'NAME').find((x) => x[0] === ctx.schedule);
      assert.equal(row?.[9], String(ctx.missed), `the schedule is listed with its missed ticks (column missedTicks):\n${r.stdout}`);
      const exported = sample(await (await fetch(`${server.url}/metrics`)).text(), 'orchestrator_schedule_missed_ticks_total', { tenant: DRILL_TENANT, schedule: ctx.schedule });
      assert.equal(exported, ctx.missed, 'what OrchestratorScheduleMissedTicks reads');
    },
    'orch schedules show': async (text) => {
      const r = await ok(fill(text));
      const row = tableRows(r.stdout, 'NAME')[0];
      assert.deepEqual([row?.[0], row?.[1]], [ctx.schedule, scheduleType], r.stdout);
      assert.match(r.stdout, /\{\{windowStart\}\}/, `the payload template is shown:\n${r.stdout}`);
    },
    'orch schedules trigger': async (text) => {
      const filled = fill(text);
      const before = await api.getSchedule(ctx.schedule);
      const r = await ok(filled);
      const m = /^schedule (\S+): job (\d+) enqueued$/m.exec(r.stdout);
      assert.equal(m?.[1], ctx.schedule, r.stdout);
      const { job } = await api.getJob(m![2]!);
      assert.equal(job.jobType, scheduleType);
      assert.equal((job.payload as { from: string }).from, before.lastTickAt, 'its window starts at the last tick');
      const after = await api.getSchedule(ctx.schedule);
      assert.deepEqual([after.nextTickAt, after.ticks], [before.nextTickAt, before.ticks], 'the ticks are unchanged');
      assert.ok((await api.listAudit({ action: 'schedule.trigger' })).entries.some((e) => e.reason === flag(filled, '--reason')), 'audited with its reason');
    },
    'orch backfill create': async (text) => {
      const filled = fill(text);
      const before = new Set((await api.listBackfills()).map((b) => b.id));
      const r = await ok(filled);
      const created = (await api.listBackfills()).filter((b) => !before.has(b.id));
      if (shellWords(filled).includes('--dry-run')) {
        assert.match(r.stdout, /^3 windows: 3 would run, 0 would be skipped$/m, r.stdout);
        assert.deepEqual(created, [], 'a dry run starts nothing');
        return;
      }
      assert.equal(created.length, 1, r.stdout);
      const b = created[0]!;
      assert.deepEqual({ jobType: b.jobType, from: b.from, to: b.to, windows: b.windows, payload: b.payload, reason: b.reason, ticket: b.ticket },
        { jobType: scheduleType, from: ctx.start, to: ctx.end, windows: 3, payload: schedulePayload, reason: flag(filled, '--reason'), ticket: flag(filled, '--ticket') });
      // the first window's job is enqueued with the window in its payload
      await eventually(async () => (await q('SELECT 1 FROM orch.jobs WHERE tenant_id = $1 AND job_type = $2 AND payload = $3::jsonb',
        [DRILL_TENANT, scheduleType, JSON.stringify({ from: ctx.start, to: new Date(Date.parse(ctx.start) + 3_600_000).toISOString(), report: 'usage' })])).length === 1,
      10_000, 'the first window\'s job');
    },
    'orch schedules update': async (text) => {
      const filled = fill(text);
      await ok(filled);
      assert.equal((await api.getSchedule(ctx.schedule)).catchUp, flag(filled, '--catch-up'));
      assert.ok((await api.listAudit({ action: 'schedule.update' })).entries.some((e) => e.reason === flag(filled, '--reason')), 'audited with its reason');
    },
    promtool: async (text) => assert.match((await ok(fill(text))).stdout, /SUCCESS/),
    'scripts/orchestrator/probe.sh': probe,
    'orch probe': probe,
    cron: async (text) => {
      const since = Date.now() - 1000;
      await ok(fill(text).replace(/^([\d*]+ ){5}/, ''));
      await probed(since);
    },
    'scripts/orchestrator/smoke.sh': smoke,
    'orch smoke': smoke,
    'scripts/orchestrator/replay-smoke.sh': replaySmoke,
    'orch replay-smoke': replaySmoke,
    'scripts/orchestrator/backup.sh': async (text) => {
      const r = await ok(fill(text));
      const file = path.resolve(deploy, r.stdout.trim());
      assert.match(file, /\/backups\/orch-\d{8}T\d{6}Z\.dump$/);
      const sum = (await readFile(`${file}.sha256`, 'utf8')).split(/\s+/)[0];
      assert.equal(sum, createHash('sha256').update(await readFile(file)).digest('hex'));
      ctx.backupFile = file;
      ctx.backupCounts = r.stderr.trim();
      assert.match(ctx.backupCounts, /^jobs dead_lettered \d+$/m);
    },
    'orch serve': async (text) => {
      const port = String(await freePort());
      const child = spawn('bash', ['-c', fill(text)], { cwd: deploy, env: { ...env, ORCH_HTTP_PORT: port }, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const exited = once(child, 'exit');
      try {
        const url = `http://127.0.0.1:${port}`;
        await eventually(async () => (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)), 60_000, `orch serve to be ready: ${stderr}`);
        const page = await new OrchClient({ apiUrl: url, tenant: DRILL_TENANT }).listJobs({ state: 'leased', jobType: thumb });
        assert.equal(page.jobs.length, thumbLeases.length, 'a second replica serves the same ledger');
      } finally {
        process.kill(-child.pid!, 'SIGTERM');
      }
      const [code] = await exited as [number | null];
      assert.equal(code, 0, `orch serve stops cleanly on SIGTERM: ${stderr}`);
    },
    'scripts/orchestrator/restore.sh': async (text) => {
      const target = await createEmptyDatabase();
      cleanups.push(() => target.drop());
      const r = await ok(fill(text), { ORCH_DATABASE_URL: target.url });
      assert.match(r.stdout, /^restored /m);
      const counts = (out: string) => out.split('\n').filter((l) => l.startsWith('jobs ')).join('\n');
      assert.equal(counts(r.stderr), counts(ctx.backupCounts), 'the restored ledger holds the jobs the backup held, by state');
    },
  };

  // replay-smoke starts, restarts and cleans up an orchestrator of its own: the drill's state cannot change what it
  // proves, so the same line in a later section is not run again (it is the slowest line of the runbook).
  const selfContained = new Map<string, string>([['scripts/orchestrator/replay-smoke.sh', '']]);
  for (const { section, text } of lines) {
    const ranIn = selfContained.get(text);
    if (ranIn) {
      await t.test(`${section}: ${text}`, { skip: `the same self-contained line ran in ${ranIn}` }, () => undefined);
      continue;
    }
    if (selfContained.has(text)) selfContained.set(text, section);
    await t.test(`${section}: ${text}`, { skip: await toolMissing(text) }, async () => {
      const step = steps[commandKey(text)];
      assert.ok(step, `no drill step runs "${text}" (${commandKey(text)}): add one, or fix the runbook line`);
      const setup = sectionSetup[section];
      if (setup) {
        delete sectionSetup[section];
        await setup();
      }
      await lineSetup[text]?.();
      await step(text);
    });
  }
  assert.deepEqual(Object.keys(sectionSetup), [], 'every incident the drill sets up has its runbook section');
  assert.deepEqual(Object.keys(lineSetup).filter((l) => !lines.some((x) => x.text === l)), [], 'every line the drill prepares is in the runbook');
});
