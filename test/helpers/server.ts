import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { startControlPlane, type ControlPlane } from '../../src/control-plane.ts';
import { createLogger } from '../../src/logging.ts';
import { spawnOrchServer, type ServerProcess } from '../../src/synthetic/server-process.ts';
import { TEST_POOL } from './db.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_ENTRY = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const BUILT_CLI = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');

/** Whether dist/ was built after the last change to src/ (test/run.ts builds it before the suite). */
function buildIsCurrent(): boolean {
  let built: number;
  try {
    built = statSync(BUILT_CLI).mtimeMs;
  } catch {
    return false;
  }
  const src = path.join(REPO_ROOT, 'src');
  return readdirSync(src, { recursive: true, encoding: 'utf8' }).every((f) => statSync(path.join(src, f)).mtimeMs <= built);
}

const useBuild = buildIsCurrent();

/**
 * Node's arguments that run the CLI: the build in dist/ when it is current, else the sources
 * through tsx. The suite starts the CLI hundreds of times, and tsx's loader costs each start
 * about 0.2 s of CPU on the 2-core CI machine, where the suite is CPU-bound.
 */
export const CLI_ARGS: readonly string[] = useBuild ? [BUILT_CLI] : ['--import', 'tsx', CLI_ENTRY];

/**
 * The environment that makes scripts/orchestrator/*.sh run the same CLI (their lib.sh honours
 * ORCH_BIN; by default it runs the sources through tsx, so that an operator never runs a stale build).
 */
export const SCRIPTS_CLI_ENV: Readonly<Record<string, string>> = useBuild ? { ORCH_BIN: builtCliWrapper() } : {};

function builtCliWrapper(): string {
  const dir = path.join(REPO_ROOT, 'node_modules', '.cache', 'orch-test');
  const bin = path.join(dir, 'orch');
  mkdirSync(dir, { recursive: true });
  // Test files run at once: each writes its own copy and renames it into place.
  const tmp = `${bin}.${process.pid}`;
  writeFileSync(tmp, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BUILT_CLI)} "$@"\n`, { mode: 0o755 });
  renameSync(tmp, bin);
  return bin;
}

/** What every server a test starts runs with, in this process or its own (TEST_POOL: test/helpers/db.ts). */
export const TEST_SERVER_ENV: Readonly<Record<string, string>> = {
  ORCH_DB_POOL_SIZE: String(TEST_POOL.size), ORCH_DB_POOL_IDLE_MS: String(TEST_POOL.idleMs),
};

/**
 * The control plane in this process on a free port, against the given database. The lease
 * reaper's start-up grace is off (tests of expiry would wait it out); test/outage.test.ts tests it.
 */
export async function startTestServer(databaseUrl: string, overrides: Partial<Config> = {}): Promise<ControlPlane> {
  // ORCH_CONSOLE_DIR: a console built elsewhere (vite build --outDir), for working on it beside other builds
  const config = loadConfig({ ORCH_DATABASE_URL: databaseUrl, ORCH_HTTP_PORT: '0', ORCH_LOG_LEVEL: 'silent', ORCH_LEASE_GRACE_MS: '0', ...TEST_SERVER_ENV, ORCH_CONSOLE_DIR: process.env.ORCH_CONSOLE_DIR }, overrides);
  return startControlPlane(config, createLogger(config.logLevel));
}

/** Runs the CLI and collects its output. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...CLI_ARGS, ...args], {
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
  const server = await spawnOrchServer([...CLI_ARGS], { ...process.env, ORCH_LOG_LEVEL: 'warn', ...TEST_SERVER_ENV, ...env }, 60_000);
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
