import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { startControlPlane, type ControlPlane } from '../../src/control-plane.ts';
import { createLogger } from '../../src/logging.ts';
import { spawnOrchServer, type ServerProcess } from '../../src/synthetic/server-process.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_ENTRY = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/**
 * The control plane in this process on a free port, against the given database. The lease
 * reaper's start-up grace is off (tests of expiry would wait it out); test/outage.test.ts tests it.
 */
export async function startTestServer(databaseUrl: string, overrides: Partial<Config> = {}): Promise<ControlPlane> {
  // ORCH_CONSOLE_DIR: a console built elsewhere (vite build --outDir), for working on it beside other builds
  const config = loadConfig({ ORCH_DATABASE_URL: databaseUrl, ORCH_HTTP_PORT: '0', ORCH_LOG_LEVEL: 'silent', ORCH_LEASE_GRACE_MS: '0', ORCH_CONSOLE_DIR: process.env.ORCH_CONSOLE_DIR }, overrides);
  return startControlPlane(config, createLogger(config.logLevel));
}

/** Runs the CLI (TypeScript sources through tsx) and collects its output. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args], {
      cwd: REPO_ROOT, env: { ...process.env, ORCH_LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Spawns `orch serve` as a real process (for kill tests); resolves once /readyz answers 200. */
export async function spawnServer(env: Record<string, string>): Promise<ServerProcess> {
  const server = await spawnOrchServer(['--import', 'tsx', CLI_ENTRY], { ...process.env, ORCH_LOG_LEVEL: 'warn', ...env }, 60_000);
  // A server that dies of its own accord (not by a test's kill) leaves its client with a bare
  // "fetch failed": print why it died, so a rare failure in CI names its cause.
  server.child.once('exit', (code, signal) => {
    if (signal === 'SIGKILL' || signal === 'SIGTERM' || code === 0) return;
    console.error(`orch serve (pid ${server.child.pid}, ${server.url}) exited with ${code ?? signal}:\n${server.stderr().slice(-4000)}`);
  });
  return server;
}

/** Polls until fn returns a truthy value (for conditions reached by other processes), failing after timeoutMs. */
export async function eventually<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
