import pg from 'pg';

/** Anything that runs a query: a pool, a pooled client, or a caller's own client inside its transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * A named (prepared) statement: planned once per connection instead of on
 * every call, which for the transition CTEs costs more than executing them.
 */
export function prepared(name: string, text: string) {
  return <R extends pg.QueryResultRow>(db: Queryable, values: unknown[]) => db.query<R>({ name: `orch_${name}`, text, values });
}

export function createPool(connectionString: string, max: number): pg.Pool {
  // JIT off: the transition statements are short OLTP queries whose cost estimates (CTEs, LATERAL
  // limits) can cross jit_above_cost; compiling then takes ~100 ms for a 1 ms statement.
  // Generic plans: the prepared transitions are planned once per connection. The claim takes ~2 ms
  // to plan and workers claim one job at a time when idle: planning it on every call made dispatch
  // fall behind at 500 jobs/s (p50 212 ms; generic: 3.6 ms). Its access paths come from its shape
  // (index ranges, LATERAL limits, TID scan), not from parameter values.
  const pool = new pg.Pool({ connectionString, max, application_name: 'orch', options: '-c jit=off -c plan_cache_mode=force_generic_plan' });
  // An idle client's error (e.g. the server restarting) must not crash the process; the pool discards it.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs fn inside BEGIN/COMMIT on one pooled client; rolls back on any error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
