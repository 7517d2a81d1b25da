import type { Queryable } from '../ledger/db.ts';

/** Who changes a control and why; recorded in the audit log with the change. */
export interface OperatorAction {
  actor: string;
  reason: string;
  ticket: string | null;
  requestId?: string | null;
}

/** One operator action on the controls, written in the same transaction as the change it records. */
export interface AuditEntry {
  actor: string;
  tenantId: string | null;
  action: string;
  target: string;
  reason: string | null;
  ticket: string | null;
  requestId?: string | null;
  result: 'ok' | 'refused';
  details?: Record<string, unknown>;
}

/**
 * Appends to orch.audit_log, which a trigger keeps append-only (updates,
 * deletes and truncation raise).
 */
export async function recordAudit(db: Queryable, e: AuditEntry): Promise<void> {
  await db.query(
    `INSERT INTO orch.audit_log (actor, tenant_id, action, target, reason, ticket, request_id, result, details)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [e.actor, e.tenantId, e.action, e.target, e.reason, e.ticket, e.requestId ?? null, e.result, e.details ? JSON.stringify(e.details) : null],
  );
}

/** The audit record of an operator's change to a control. */
export function auditAction(db: Queryable, op: OperatorAction, action: string, tenantId: string | null, target: string, details: Record<string, unknown>): Promise<void> {
  return recordAudit(db, {
    actor: op.actor, tenantId, action, target, reason: op.reason, ticket: op.ticket, requestId: op.requestId ?? null, result: 'ok', details,
  });
}
