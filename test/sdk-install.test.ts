/**
 * The SDK as a user's project gets it: `orch/sdk` from the built package, in
 * a project whose node_modules hold the package and the SDK's one runtime
 * dependency (pino) but no pg, Fastify, NATS or MongoDB driver. A remote
 * worker there runs a job of a real server end to end.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createTestDatabase } from './helpers/db.ts';
import { scope } from './helpers/scope.ts';
import { REPO_ROOT, startTestServer } from './helpers/server.ts';

const run = promisify(execFile);

/** The package and everything it depends on, found by walking package.json files from the repository's node_modules. */
async function dependencyClosure(roots: string[]): Promise<string[]> {
  const seen = new Set<string>();
  const walk = async (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) await walk(dep);
  };
  for (const r of roots) await walk(r);
  return [...seen];
}

/** The latest modification time of any file under dir. */
async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const rel of await readdir(dir, { recursive: true })) newest = Math.max(newest, (await stat(path.join(dir, rel))).mtimeMs);
  return newest;
}

describe('orch/sdk in a project without the server\'s packages', () => {
  test('installs from the built package and runs a remote worker; pg cannot even be resolved there', async (t) => {
    const end = scope(t);
    const project = end(await mkdtemp(path.join(tmpdir(), 'orch-sdk-project-')), (d) => rm(d, { recursive: true, force: true }));
    const pkgDir = path.join(project, 'node_modules', 'orch');
    await mkdir(pkgDir, { recursive: true });
    // the package as `npm pack` ships it: package.json and the compiled dist/ (npm install builds it; rebuilt
    // here into the project when a source file is newer, so the test never runs stale code)
    const dist = path.join(REPO_ROOT, 'dist');
    if (await newestMtime(path.join(REPO_ROOT, 'src')) < await newestMtime(dist).catch(() => 0)) {
      await cp(dist, path.join(pkgDir, 'dist'), { recursive: true });
    } else {
      await run(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', path.join(pkgDir, 'dist')]);
    }
    await cp(path.join(REPO_ROOT, 'package.json'), path.join(pkgDir, 'package.json'));
    for (const dep of await dependencyClosure(['pino'])) {
      await cp(path.join(REPO_ROOT, 'node_modules', dep), path.join(project, 'node_modules', dep), { recursive: true });
    }
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module', dependencies: { orch: '*' } }));

    const missingPg = await run(process.execPath, ['--input-type=module', '-e', 'await import("pg")'], { cwd: project }).then(() => null, (e: Error) => e.message);
    assert.match(missingPg ?? 'pg resolved', /Cannot find package 'pg'/, 'the project has no pg');

    const db = end(await createTestDatabase(), (d) => d.drop());
    const plane = end(await startTestServer(db.url), (p) => p.stop());
    await writeFile(path.join(project, 'worker.mjs'), `
      import { createWorker, OrchClient } from 'orch/sdk';
      const apiUrl = process.argv[2];
      const client = new OrchClient({ apiUrl, tenant: 'sdk-user' });
      const { id } = await client.enqueue({ jobType: 'sdk-install', payload: { n: 21 } });
      const worker = await createWorker({
        apiUrl, tenant: 'sdk-user', jobTypes: ['sdk-install'], handleSignals: false, waitMs: 200,
        handler: (job) => ({ doubled: job.payload.n * 2 }),
      });
      const got = await new Promise((resolve) => worker.on('completed', (lease, result) => resolve({ jobId: lease.jobId, result })));
      await worker.stop();
      console.log(JSON.stringify({ id, got, state: (await client.getJob(id)).job.state }));
    `);
    const { stdout } = await run(process.execPath, ['worker.mjs', plane.url], { cwd: project, timeout: 60_000 });
    const out = JSON.parse(stdout) as { id: string; got: { jobId: string; result: unknown }; state: string };
    assert.deepEqual(out.got, { jobId: out.id, result: { doubled: 42 } });
    assert.equal(out.state, 'succeeded');
    const { rows } = await db.pool.query<{ state: string }>('SELECT state FROM orch.jobs WHERE id = $1', [out.id]);
    assert.equal(rows[0]?.state, 'succeeded', 'the ledger holds the job as done');
  });
});
