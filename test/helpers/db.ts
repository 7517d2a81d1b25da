import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createPool } from '../../src/ledger/db.ts';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../src/ledger/embedded.ts';
import { loadMigrations, migrate } from '../../src/ledger/migrate.ts';

/**
 * Tests run against a real PostgreSQL: ORCH_TEST_DATABASE_URL, else the
 * machine's server on 127.0.0.1:5432. On a bare machine without one, an
 * embedded PostgreSQL is started instead (never in CI, where a missing
 * server is a failure). Each test file gets a database of its own.
 */
const SERVER_URL = process.env.ORCH_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let embedded: { server: EmbeddedDatabase; dir: string } | null = null;
let adminUrl: string | null = null;
/** Test databases not yet dropped: an embedded server stops with the last (a later one starts it again). */
let databases = 0;

async function reachable(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch {
    return false;
  }
}

async function admin(): Promise<string> {
  if (adminUrl) return adminUrl;
  if (await reachable(SERVER_URL)) {
    adminUrl = SERVER_URL;
  } else if (process.env.CI === 'true') {
    throw new Error(`PostgreSQL is not reachable at ${SERVER_URL}; CI must have a real server (.ci/run starts it)`);
  } else {
    process.stderr.write(`\n*** PostgreSQL not reachable at ${SERVER_URL}: starting an embedded PostgreSQL for the tests ***\n\n`);
    const dir = await mkdtemp(path.join(tmpdir(), 'orch-test-pg-'));
    embedded = { server: await startEmbeddedDatabase(dir, { info: () => undefined, debug: () => undefined }), dir };
    adminUrl = embedded.server.connectionString.replace(/\/orch$/, '/postgres');
  }
  return adminUrl;
}

export interface TestDatabase {
  url: string;
  pool: pg.Pool;
  /** Drops the database. */
  drop(): Promise<void>;
}

/** A fresh, empty database (no schema: e.g. to restore a backup into); drop() removes it. */
export async function createEmptyDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  return createDatabase(null);
}

const databaseUrl = (base: string, name: string) => base.replace(/\/[^/?]*(\?.*)?$/, `/${name}$1`);

/** Test files that share a server build their template one at a time. */
const TEMPLATE_LOCK = 0x6f727470; // "ortp"
const TEMPLATE_PREFIX = 'orch_test_template_';
let template: Promise<string> | null = null;

/**
 * A database migrated to this checkout's migrations, to copy test databases from: migrating takes
 * about 200 ms of CPU a database, a copy about 40 ms, and the suite makes a hundred. Its name is the
 * migrations' hash, so files running at once share it and a changed migration gets a new one; it is
 * built under another name and renamed, so a copy never sees it half-made or in use.
 */
function migratedTemplate(base: string): Promise<string> {
  template ??= (async () => {
    const migrations = await loadMigrations();
    const name = TEMPLATE_PREFIX + createHash('sha256').update(JSON.stringify(migrations)).digest('hex').slice(0, 16);
    const client = new pg.Client({ connectionString: base });
    await client.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [TEMPLATE_LOCK]);
      if ((await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount) return name;
      const building = `${name}_building`;
      await client.query(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`);
      await client.query(`CREATE DATABASE ${building}`);
      const pool = createPool(databaseUrl(base, building), 1);
      await migrate(pool);
      await pool.end();
      // the closed connection's backend may take a moment to exit
      for (let attempt = 1; ; attempt++) {
        try {
          await client.query(`ALTER DATABASE ${building} RENAME TO ${name}`);
          return name;
        } catch (err) {
          if (attempt === 100 || !/being accessed by other users/.test((err as Error).message)) throw err;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    } finally {
      await client.end();
    }
  })();
  return template;
}

/** Drops the templates (test/run.ts, after the suite); a file run on its own leaves its template for the next run to use. */
export async function dropTemplates(): Promise<void> {
  if (!(await reachable(SERVER_URL))) return;
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, [TEMPLATE_PREFIX]);
    for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

async function createDatabase(from: string | null): Promise<{ url: string; drop(): Promise<void> }> {
  const base = await admin();
  const name = `orch_test_${randomBytes(5).toString('hex')}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}${from ? ` TEMPLATE ${from}` : ''}`);
  await client.end();
  databases++;
  return {
    url: databaseUrl(base, name),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
      if (--databases === 0 && embedded) {
        // the embedded server (and the template in it) goes with the last database; the next one starts anew
        const stopping = embedded;
        embedded = null;
        adminUrl = null;
        template = null;
        await stopping.server.stop();
        await rm(stopping.dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * The pools of tests and of the servers they start (the server's default is 20 connections, closed
 * after 10 s idle): four test files run at once, some with three replicas each, on one PostgreSQL
 * whose max_connections is 100.
 */
export const TEST_POOL = { size: 8, idleMs: 1000 } as const;

/** A fresh, migrated database for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const empty = await createDatabase(await migratedTemplate(await admin()));
  const pool = createPool(empty.url, TEST_POOL.size, { idleMs: TEST_POOL.idleMs });
  return {
    url: empty.url,
    pool,
    async drop() {
      await pool.end();
      await empty.drop();
    },
  };
}
