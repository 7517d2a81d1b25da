import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/** migrations/ sits at the package root, two levels above both src/ledger and dist/ledger. */
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));
/** Serialises concurrent migrators (several replicas starting at once). */
const MIGRATION_LOCK = 0x6f726368; // "orch"

export interface Migration { version: number; name: string; sql: string }

export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      version: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(MIGRATIONS_DIR + file, 'utf8'),
    })),
  );
}

/** Applies every migration not yet applied, each in its own transaction. Returns the names applied. */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const migrations = await loadMigrations();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS orch;
      CREATE TABLE IF NOT EXISTS orch.schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number; name: string }>('SELECT version, name FROM orch.schema_migrations ORDER BY version');
    const done = new Set(rows.map((r) => r.version));
    const newest = rows.at(-1);
    const known = migrations.at(-1)?.version ?? 0;
    if (newest && newest.version > known) {
      throw new Error(`the database schema is at migration ${newest.name}, newer than this build of orch knows (up to ${known}): `
        + 'run the newer release (a rolling upgrade deploys every replica before a contracting migration; docs/operations.md)');
    }
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await applyMigration(client, m);
      applied.push(m.name);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
  return applied;
}

/**
 * Roles live in the cluster, not the database: two databases of one cluster
 * migrated at once (two deployments, parallel test files) can race on the
 * same CREATE ROLE or GRANT, which the advisory lock (per database) does not
 * serialise. The loser's transaction rolls back whole and runs again, and
 * finds the role there.
 */
const CATALOG_RACES = new Set(['23505', '42710', 'XX000', '40001', '40P01']);

async function applyMigration(client: pg.PoolClient, m: Migration): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await client.query('BEGIN');
    try {
      await client.query(m.sql);
      await client.query('INSERT INTO orch.schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      await client.query('COMMIT');
      return;
    } catch (err) {
      await client.query('ROLLBACK');
      const code = (err as { code?: string }).code ?? '';
      if (attempt < 5 && CATALOG_RACES.has(code)) continue;
      throw new Error(`migration ${m.name} failed: ${(err as Error).message}`);
    }
  }
}

/** True when every shipped migration is recorded as applied; /readyz uses it. */
export async function migrationsApplied(db: pg.Pool): Promise<boolean> {
  const migrations = await loadMigrations();
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM orch.schema_migrations WHERE version = ANY($1::int[])`,
    [migrations.map((m) => m.version)],
  );
  return Number(rows[0]?.n) === migrations.length;
}
