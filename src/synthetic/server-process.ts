import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from '../ledger/embedded.ts';

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** SIGTERM (a graceful stop) and wait for the exit; at once when it already exited. */
  stop(): Promise<void>;
  /** The last 64 KiB the process wrote to stderr (its logs). */
  stderr(): string;
}

/**
 * Node's flags for `orch serve` (package.json's `npm start`, deploy/Dockerfile; test/deploy.test.ts
 * keeps them in step). A young generation of 32 MB semi-spaces instead of 16: the outbox relay
 * allocates an envelope, its JSON and its headers per event, and with the default a fifth of the
 * server's CPU went to scavenges while it relayed a drain (docs/benchmark.md). V8 reads the flag
 * when the heap is made, so it cannot be set from inside the process.
 */
export const SERVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];

/**
 * Spawns `orch serve` as a process of its own, as production runs it, and
 * resolves once its /readyz answers 200. `cli` is what node runs for the CLI
 * (["--import", "tsx", "src/cli/main.ts"], or the built dist/cli/main.js);
 * the port is ORCH_HTTP_PORT from `env`, else one the OS just handed out.
 */
export async function spawnOrchServer(cli: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ServerProcess> {
  const port = env.ORCH_HTTP_PORT ?? String(await freePort());
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, ...cli, 'serve'], {
    env: { ...env, ORCH_HTTP_PORT: port, ORCH_HTTP_HOST: '127.0.0.1' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-65_536)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  };
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`orch serve exited with ${child.exitCode}: ${stderr.trim().slice(-4000)}`);
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return { child, url, stop, stderr: () => stderr };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`orch serve was not ready within ${timeoutMs}ms: ${stderr.trim().slice(-4000)}`);
}
