import type { Queryable } from '../ledger/db.ts';

/** Who acted and why, as the audit log records it; actions that need no reason (a DLQ snapshot) have none. */
export interface AuditedBy {
  actor: string;
  reason: string | null;
  ticket: string | null;
  requestId?: string | null;
}

/** Who changes a control and why; recorded in the audit log with the change. */
export interface OperatorAction extends AuditedBy {
  reason: string;
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
 * deletes and truncation raise); a change of dispatch or quotas also becomes
 * a control event in the outbox.
 */
export async function recordAudit(db: Queryable, e: AuditEntry): Promise<void> {
  const eventType = e.result === 'ok' ? CONTROL_EVENTS.get(e.action) ?? CONTROL_EVENTS.get(e.action.split('.')[0]!) : undefined;
  await db.query(
    `WITH audit AS (
       INSERT INTO orch.audit_log (actor, tenant_id, action, target, reason, ticket, request_id, result, details)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     )
     INSERT INTO orch.outbox (tenant_id, events)
     SELECT coalesce($2, '*'), jsonb_build_array(jsonb_build_object('type', $10::text, 'at', now(), 'actor', $1::text, 'target', $4::text,
       'data', jsonb_build_object('action', $3::text, 'reason', $5::text, 'ticket', $6::text, 'details', $9::jsonb)))
     WHERE $10::text IS NOT NULL`,
    [e.actor, e.tenantId, e.action, e.target, e.reason, e.ticket, e.requestId ?? null, e.result, e.details ? JSON.stringify(e.details) : null, eventType ?? null],
  );
}

/** Operator actions that are also events (src/events/envelope.ts), by action or by its family ("quota" for every quota.*), written in the same statement as their audit entry. */
const CONTROL_EVENTS = new Map([
  ['dispatch.pause', 'jobtype.paused'], ['dispatch.resume', 'jobtype.resumed'], ['quota', 'quota.changed'], ['schedule', 'schedule.changed'], ['backfill', 'backfill.changed'],
]);

/** The audit record of an operator's change to a control. */
export function auditAction(db: Queryable, op: AuditedBy, action: string, tenantId: string | null, target: string, details: Record<string, unknown>): Promise<void> {
  return recordAudit(db, {
    actor: op.actor, tenantId, action, target, reason: op.reason, ticket: op.ticket, requestId: op.requestId ?? null, result: 'ok', details,
  });
}

/** An entry as stored: what was recorded, plus its id and time. */
export interface AuditRecord extends Omit<AuditEntry, 'requestId' | 'details'> {
  id: string;
  at: string;
  requestId: string | null;
  details: unknown;
}

export interface AuditFilter {
  action?: string;
  actor?: string;
  tenantId?: string;
  /** Only entries at or after this time. */
  since?: Date;
  /** Only entries older than this id (the previous page's nextCursor). */
  cursor?: string;
  limit: number;
}

/** Entries newest first, filtered, a page at a time (keyset on id, so deep pages stay cheap). */
export async function listAudit(db: Queryable, f: AuditFilter): Promise<{ entries: AuditRecord[]; nextCursor: string | null }> {
  const { rows } = await db.query<{
    id: string; at: Date; actor: string; tenant_id: string | null; action: string; target: string; reason: string | null;
    ticket: string | null; request_id: string | null; result: AuditEntry['result']; details: unknown;
  }>(
    `SELECT * FROM orch.audit_log
     WHERE ($1::text IS NULL OR action = $1) AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR tenant_id = $3)
       AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::bigint IS NULL OR id < $5)
     ORDER BY id DESC LIMIT $6`,
    [f.action ?? null, f.actor ?? null, f.tenantId ?? null, f.since ?? null, f.cursor ?? null, f.limit + 1],
  );
  const page = rows.slice(0, f.limit);
  return {
    entries: page.map((r) => ({
      id: String(r.id), at: r.at.toISOString(), actor: r.actor, tenantId: r.tenant_id, action: r.action, target: r.target,
      reason: r.reason, ticket: r.ticket, requestId: r.request_id, result: r.result, details: r.details,
    })),
    nextCursor: rows.length > f.limit ? String(page[page.length - 1]!.id) : null,
  };
}
