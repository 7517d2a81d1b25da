import type pg from 'pg';
import { inTransaction, type Tx } from '../ledger/ledger.ts';
import { auditAction, type AuditedBy } from './audit-log.ts';

/** What an operator action touched, for its audit entry. */
export interface ActionTarget {
  /** e.g. "job.cancel", "lease.release", "dlq.clear", "jobtype.define"; the change may name another (quota.create for a quota.update that found none) */
  action: string;
  tenantId: string | null;
  target: string;
}

/**
 * The one path of an operator action: the change and its audit entry (and
 * the control event the entry implies) are written in one transaction, so
 * an action is recorded exactly when it happened. If the audit entry cannot
 * be written, the change is rolled back; observers (metrics) hear of the
 * change only after the commit. `change` returns its result and the details
 * the audit entry keeps.
 */
export async function runOperatorAction<T>(
  pool: pg.Pool, op: AuditedBy, what: ActionTarget,
  change: (tx: Tx) => Promise<{ result: T; details: Record<string, unknown>; action?: string }>,
): Promise<T> {
  return inTransaction(pool, async (tx) => {
    const done = await change(tx);
    await auditAction(tx.client, op, done.action ?? what.action, what.tenantId, what.target, done.details);
    return done.result;
  });
}
