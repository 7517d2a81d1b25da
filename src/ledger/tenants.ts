import type pg from 'pg';
import type { Queryable } from './db.ts';
import { LedgerError } from './errors.ts';

/**
 * Tenants seen, registered on their first enqueue. Controls name tenants by
 * hand, so they check here that the tenant exists rather than silently
 * limiting nobody.
 */
export class Tenants {
  /** Tenants are never deleted, so a cached hit never goes stale. */
  private readonly known = new Set<string>();

  constructor(private readonly pool: pg.Pool) {}

  async ensure(tenantIds: Iterable<string>): Promise<void> {
    const missing = [...new Set(tenantIds)].filter((t) => !this.known.has(t));
    if (missing.length === 0) return;
    await this.pool.query('INSERT INTO orch.tenants (tenant_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING', [missing]);
    missing.forEach((t) => this.known.add(t));
  }

  /** Throws not_found naming `field` unless the tenant has been seen. */
  async mustExist(db: Queryable, tenantId: string, field = 'tenantId'): Promise<void> {
    if (this.known.has(tenantId)) return;
    const { rowCount } = await db.query('SELECT 1 FROM orch.tenants WHERE tenant_id = $1', [tenantId]);
    if (!rowCount) throw new LedgerError('not_found', field, `unknown tenant "${tenantId}": it has never enqueued a job`);
    this.known.add(tenantId);
  }
}
