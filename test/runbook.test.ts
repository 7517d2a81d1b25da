import assert from 'node:assert/strict';
import { access, constants, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli/program.ts';
import type { ControlPlane } from '../src/control-plane.ts';
import type { Job } from '../src/ledger/types.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { createWorker, type Worker } from '../src/sdk/worker.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { sample } from '../src/metrics/exposition.ts';
import { eventually, REPO_ROOT, runCli, startTestServer } from './helpers/server.ts';

/**
 * ops/devops/orchestrator/incident-response.md, made executable: every `orch`
 * command and script it names exists, and its central drill (FailuresHigh:
 * inspect, pause, fix, snapshot, replay, clear, resume) runs against a real
 * server and ends with every job succeeded and none lost.
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
  for (const [, anchor] of rules.matchAll(/runbook_url: \S+incident-response\.md#(\S+)/g)) assert.ok(anchors.has(anchor!), `anchor #${anchor}`);
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
