/**
 * `npm test`: every test file (or those named on the command line), several
 * at once. Files do not share state: each has databases, NATS streams with
 * subject prefixes, ports and temporary directories of its own. The slowest
 * files start first, so the run does not end with one long file running alone
 * (node:test's `run()` keeps the order it is given; `node --test` sorts files
 * by name). ORCH_TEST_CONCURRENCY sets how many files run at once (default 4:
 * on the 2-core CI machine the files mostly wait on timers and other processes;
 * 4 took 241 s, 3 took 283 s, 5 took 235 s; test servers keep small pools,
 * test/helpers/server.ts, so that four files stay within max_connections).
 *
 * It first builds the server into dist/ (tsc, a few seconds), so that the
 * hundreds of CLI and `orch serve` processes the tests start run the build
 * instead of loading the sources through tsx (test/helpers/server.ts uses the
 * build only when it is newer than every source file).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { fileURLToPath } from 'node:url';
import { dropTemplates } from './helpers/db.ts';

/** Wall time in the suite on the 2-core CI machine, slowest first; files not listed run after these, in name order. */
const SLOWEST = [
  'events', 'schedules', 'runbook', 'cluster', 'outage', 'cli', 'chaos', 'crash', 'fuzz', 'backfills', 'sdk', 'synthetic',
  'scale-out', 'console-recovery', 'leases', 'console-timeline', 'isolation', 'quotas', 'dashboard', 'console-jobs', 'console',
  'security', 'console-overview', 'ledger', 'deadletter', 'workflows', 'embedded', 'backpressure',
];

const dir = fileURLToPath(new URL('.', import.meta.url));
const named = process.argv.slice(2);
const rank = (f: string) => {
  const i = SLOWEST.indexOf(f.replace(/\.test\.ts$/, ''));
  return i === -1 ? SLOWEST.length : i;
};
const files = named.length > 0 ? named : readdirSync(dir).filter((f) => f.endsWith('.test.ts')).sort().sort((a, b) => rank(a) - rank(b)).map((f) => `test/${f}`);
const concurrency = Number(process.env.ORCH_TEST_CONCURRENCY ?? '4');

const build = spawnSync(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', 'tsconfig.build.json'], {
  cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: 'inherit',
});
if (build.status !== 0) process.exit(build.status ?? 1);

// The child processes inherit this process's --import tsx. The timeout is a file's, from its process's
// start: on a loaded 2-core machine the longest files (fuzz, runbook) have taken over 190 s.
const tests = run({ files, concurrency, timeout: 600_000 });
tests.on('test:fail', () => (process.exitCode = 1));
tests.on('end', () => {
  // the files' shared database template (test/helpers/db.ts) goes with the run
  void dropTemplates();
});
tests.compose(new spec()).pipe(process.stdout);
