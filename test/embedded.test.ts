import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OrchClient, type EnqueueResult } from '../src/index.ts';
import { freePort, processAlive } from '../src/ledger/embedded.ts';
import { eventually, spawnServer } from './helpers/server.ts';

/**
 * Zero-configuration mode: `orch serve` with no ORCH_DATABASE_URL runs an
 * embedded PostgreSQL under ORCH_DATA_DIR, and jobs survive restarts, clean
 * or not. (As root, the embedded PostgreSQL runs as the "postgres" user.)
 */

const TENANT = 'default';
let dataDir: string;
let env: Record<string, string>;
let server: { child: ChildProcess; url: string } | null = null;
let job: EnqueueResult;

/** The embedded PostgreSQL's postmaster pid, from its pid file, or null when there is none. */
function postmasterPid(): number | null {
  const file = path.join(dataDir, 'pg', 'postmaster.pid');
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

async function start(): Promise<{ child: ChildProcess; url: string }> {
  server = await spawnServer(env);
  return server;
}

async function stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const s = server;
  assert.ok(s, 'a server is running');
  server = null;
  if (s.child.exitCode !== null || s.child.signalCode !== null) return { code: s.child.exitCode, signal: s.child.signalCode };
  const exited = once(s.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  s.child.kill(signal);
  const [code, sig] = await exited;
  return { code, signal: sig };
}

async function readJob(url: string): Promise<{ id: string; state: string; payload: unknown }> {
  const { job: j } = await new OrchClient({ apiUrl: url, tenant: TENANT }).getJob(job.id);
  return j;
}

before(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'orch-embedded-test-'));
  const port = String(await freePort());
  // An empty ORCH_DATABASE_URL counts as unset, whatever the test environment has.
  env = { ORCH_DATABASE_URL: '', ORCH_DATA_DIR: dataDir, ORCH_HTTP_PORT: port };
});

after(async () => {
  if (server) await stop('SIGTERM').catch(() => undefined);
  // Whatever happened above, leave no PostgreSQL running on the temp dir.
  const pid = dataDir ? postmasterPid() : null;
  if (pid !== null && processAlive(pid)) {
    process.kill(pid, 'SIGINT');
    await eventually(async () => !processAlive(pid), 30_000, 'embedded PostgreSQL to stop').catch(() => undefined);
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('orch serve with an embedded PostgreSQL', () => {
  test('starts on a fresh data dir: ready, and accepts a job', async () => {
    const { url } = await start();
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as { status: string }).status, 'ready');
    assert.ok(existsSync(path.join(dataDir, 'pg', 'PG_VERSION')), 'the cluster lives under ORCH_DATA_DIR');
    job = await new OrchClient({ apiUrl: url, tenant: TENANT }).enqueue({ jobType: 'embedded_job', payload: { hello: 'embedded' } });
    assert.equal(job.created, true);
    assert.equal((await readJob(url)).state, 'queued');
  });

  test('SIGTERM: clean exit 0, and its PostgreSQL is stopped', async () => {
    const pid = postmasterPid();
    assert.ok(pid !== null && processAlive(pid), 'embedded PostgreSQL running');
    const result = await stop('SIGTERM');
    await eventually(async () => !processAlive(pid), 30_000, 'embedded PostgreSQL to stop with the server');
    assert.deepEqual(result, { code: 0, signal: null });
  });

  test('restart on the same data dir: the job is still there', async () => {
    const { url } = await start();
    assert.equal((await fetch(`${url}/readyz`)).status, 200);
    const j = await readJob(url);
    assert.equal(j.state, 'queued');
    assert.deepEqual(j.payload, { hello: 'embedded' });
  });

  test('SIGKILL orphans the embedded PostgreSQL; the next start handles it: ready, job still there', async () => {
    const orphan = postmasterPid();
    assert.ok(orphan !== null && processAlive(orphan));
    await stop('SIGKILL');
    assert.equal(processAlive(orphan), true, 'PostgreSQL outlives a SIGKILLed orch');

    const { url } = await start();
    assert.equal((await fetch(`${url}/readyz`)).status, 200);
    const j = await readJob(url);
    assert.equal(j.state, 'queued');
    assert.deepEqual(j.payload, { hello: 'embedded' });
    const current = postmasterPid();
    assert.ok(current !== null && current !== orphan, 'a new PostgreSQL owns the cluster');
    assert.equal(processAlive(orphan), false, 'the orphan was stopped');
  });
});
