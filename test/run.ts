/**
 * `npm test`: every test file (or those named on the command line), several
 * at once. Files do not share state: each has databases, NATS streams with
 * subject prefixes, ports and temporary directories of its own. The slowest
 * files start first, so the run does not end with one long file running alone.
 * ORCH_TEST_CONCURRENCY sets how many files run at once (default 3: on the
 * 2-core CI machine the suite is CPU-bound beyond that).
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Measured on the 2-core CI machine, slowest first; files not listed run after these, in name order. */
const SLOWEST = ['events', 'runbook', 'outage', 'scale-out', 'fuzz', 'chaos', 'cluster', 'schedules', 'synthetic', 'backfills', 'workflows', 'cli', 'quotas', 'crash', 'sdk', 'security', 'isolation', 'leases', 'embedded'];

const dir = fileURLToPath(new URL('.', import.meta.url));
const named = process.argv.slice(2);
const all = readdirSync(dir).filter((f) => f.endsWith('.test.ts')).sort();
const rank = (f: string) => {
  const i = SLOWEST.indexOf(f.replace(/\.test\.ts$/, ''));
  return i === -1 ? SLOWEST.length : i;
};
const files = named.length > 0 ? named : all.sort((a, b) => rank(a) - rank(b)).map((f) => `test/${f}`);
const concurrency = process.env.ORCH_TEST_CONCURRENCY ?? '3';

const child = spawn(process.execPath, [
  '--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', ...files,
], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
