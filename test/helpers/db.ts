import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createPool } from '../../src/ledger/db.ts';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../src/ledger/embedded.ts';
import { migrate } from '../../src/ledger/migrate.ts';

/**
 * Tests run against a real PostgreSQL: ORCH_TEST_DATABASE_URL, else the
 * machine's server on 127.0.0.1:5432. On a bare machine without one, an
 * embedded PostgreSQL is started instead (never in CI, where a missing
 * server is a failure). Each test file gets a database of its own.
 */
const SERVER_URL = process.env.ORCH_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let embedded: EmbeddedDatabase | null = null;
let adminUrl: string | null = null;

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
    embedded = await startEmbeddedDatabase(dir, { info: () => undefined, debug: () => undefined });
    adminUrl = embedded.connectionString.replace(/\/orch$/, '/postgres');
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
  const base = await admin();
  const name = `orch_test_${randomBytes(5).toString('hex')}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  return {
    url: base.replace(/\/[^/?]*(\?.*)?$/, `/${name}$1`),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A fresh, migrated database for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const empty = await createEmptyDatabase();
  const pool = createPool(empty.url, 20);
  await migrate(pool);
  return {
    url: empty.url,
    pool,
    async drop() {
      await pool.end();
      await empty.drop();
      if (embedded) await embedded.stop();
    },
  };
}
