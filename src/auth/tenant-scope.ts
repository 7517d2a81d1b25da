import type pg from 'pg';
import type { Queryable } from '../ledger/db.ts';

/**
 * Runs `read` in a read-only transaction as orch_tenant_reader with the
 * caller's tenants set (migrations/0009_tenant_isolation.sql): row-level
 * security then hides other tenants' rows from every query inside, whatever
 * its WHERE says. The tenants travel as a JSON array, so no character in a
 * tenant id can split it into two (they match TENANT_PATTERN besides).
 */
export async function asTenantReader<T>(pool: pg.Pool, tenants: readonly string[] | '*', read: (db: Queryable) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const list = tenants === '*' ? '*' : JSON.stringify(tenants);
  let ok = false;
  try {
    await client.query(`BEGIN READ ONLY; SET LOCAL ROLE orch_tenant_reader; SELECT set_config('orch.tenants', ${client.escapeLiteral(list)}, true)`);
    const result = await read(client);
    ok = true;
    return result;
  } finally {
    await client.query(ok ? 'COMMIT' : 'ROLLBACK').then(() => client.release(), (err: Error) => client.release(err));
  }
}
