import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from './server.ts';

const CRASH_WORKER = fileURLToPath(new URL('../fixtures/crash-worker.ts', import.meta.url));

export function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Sends `signal` and waits for the process to exit (at once if it already has). */
export async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (!alive(child)) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

/** Spawns test/fixtures/crash-worker.ts (argv: connectionString jobType workerId mode) and resolves once it says it is ready. */
export function spawnCrashWorker(args: string[]): Promise<ChildProcess> {
  return spawnFixture(CRASH_WORKER, args);
}

/** Spawns a TypeScript fixture (through tsx) and resolves once it prints "ready"; rejects if it exits first. */
export async function spawnFixture(file: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    cwd: REPO_ROOT, env: { ...process.env, ORCH_LOG_LEVEL: 'silent' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  let stdout = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      stdout += d;
      if (stdout.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}: ${stderr}`)));
  });
  return child;
}
