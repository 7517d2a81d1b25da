import pg from 'pg';

/** Anything that runs a query: a pool, a pooled client, or a caller's own client inside its transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * A named (prepared) statement: planned once per connection instead of on
 * every call, which for the transition CTEs costs more than executing them.
 */
export function prepared(name: string, text: string, opts: { retrySerializationFailures?: boolean } = {}) {
  return async <R extends pg.QueryResultRow>(db: Queryable, values: unknown[]): Promise<pg.QueryResult<R>> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await db.query<R>({ name: `orch_${name}`, text, values });
      } catch (err) {
        // A statement that ends jobs, run on its own (on the pool: it is its own transaction), is retried
        // after a serialization failure; inside a caller's transaction the whole transaction is (inTransaction).
        if (!opts.retrySerializationFailures || !(db instanceof pg.Pool) || !isSerializationFailure(err) || attempt >= MAX_SERIALIZATION_RETRIES) throw err;
      }
    }
  };
}

/**
 * The transitions raise this when a concurrent change invalidated what their
 * snapshot read (a dependent added to a job while it ended: orch.dependency_race).
 */
export const isSerializationFailure = (err: unknown) => (err as { code?: unknown } | null)?.code === '40001';
export const MAX_SERIALIZATION_RETRIES = 20;

/**
 * Whether an error means the database cannot be reached right now (down, restarting, shutting
 * down, the connection cut or refused), as opposed to a statement that failed: callers answer
 * 503 and retry instead of treating it as a bug.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; errors?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
  // Connection class errors (08xxx) and a refused connection to every address (AggregateError)
  if (typeof e.code === 'string' && e.code.startsWith('08')) return true;
  if (Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every(isDatabaseUnavailable)) return true;
  return typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message);
}

const UNAVAILABLE_CODES = new Set([
  '57P01', '57P02', '57P03', '53300', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
]);
// pg reports a dead connection by message only
const UNAVAILABLE_MESSAGE = /Connection terminated|connection error and is not queryable|timeout exceeded when trying to connect|Client was closed and is not queryable/i;

/**
 * The role the running server acts as (migrations/0010_service_role.sql): it reads and writes rows,
 * owns none of the tables it must not alter, and may only append to the audit log.
 */
export const SERVICE_ROLE = 'orch_service';

/** `role`: set at connection start (so RESET ROLE returns to it), e.g. SERVICE_ROLE. */
export function createPool(connectionString: string, max: number, opts: { role?: string; settings?: Record<string, string>; name?: string; idleMs?: number } = {}): pg.Pool {
  // JIT off: the transition statements are short OLTP queries whose cost estimates (CTEs, LATERAL
  // limits) can cross jit_above_cost; compiling then takes ~100 ms for a 1 ms statement.
  // Generic plans: the prepared transitions are planned once per connection. The claim takes ~2 ms
  // to plan and workers claim one job at a time when idle: planning it on every call made dispatch
  // fall behind at 500 jobs/s (p50 212 ms; generic: 3.6 ms). Its access paths come from its shape
  // (index ranges, LATERAL limits, TID scan), not from parameter values.
  // Sequential scans off: a generic plan is made at a statement's first run on the connection. In a
  // ledger that starts empty that run sees a table of a few rows, where reading all of it looks
  // cheapest, and the plan stays while the table grows until an ANALYZE replans it (never, with
  // autovacuum off): every ack then read the whole job table twice (test/plans.test.ts). Every query
  // of ours reaches job rows through an index; a table without a usable index is still scanned.
  // A connection that cannot be made (or a free one found) within the timeout fails the request (503)
  // instead of holding it while the database is unreachable.
  const pool = new pg.Pool({
    connectionString, max, application_name: opts.name ?? 'orch', connectionTimeoutMillis: 10_000, idleTimeoutMillis: opts.idleMs ?? 10_000,
    options: ['-c jit=off -c plan_cache_mode=force_generic_plan -c enable_seqscan=off', opts.role ? `-c role=${opts.role}` : '',
      ...Object.entries(opts.settings ?? {}).map(([k, v]) => `-c ${k}=${v}`)].filter(Boolean).join(' '),
  });
  // A connection that dies (the server restarting, shutting down) emits 'error' on its client; with no
  // listener that would crash the process. Idle clients are the pool's (it discards them); a client
  // checked out at that moment gets its own listener here: its query in flight rejects, and release()
  // destroys it because it is no longer queryable.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
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
