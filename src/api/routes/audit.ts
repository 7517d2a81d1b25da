import { Type } from 'typebox';
import { listAudit } from '../../audit/audit-log.ts';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import type { ApiContext, App } from '../context.ts';
import { ErrorBody, IsoTime, Nullable, TenantId } from '../schemas.ts';

const AuditSchema = Type.Object({
  id: Type.String(), at: IsoTime, actor: Type.String(), tenantId: Nullable(Type.String()),
  action: Type.String(), target: Type.String(), reason: Nullable(Type.String()), ticket: Nullable(Type.String()),
  requestId: Nullable(Type.String()), result: Type.String(), details: Type.Unknown(),
});

/** The audit log of operator actions (append-only; see src/audit/audit-log.ts). */
export function auditRoutes(app: App, ctx: ApiContext): void {
  app.get('/audit', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Operator actions, newest first', tags: ['audit'],
      querystring: Type.Object({
        action: Type.Optional(Type.String({ maxLength: 64, description: 'e.g. quota.boost, dispatch.pause' })),
        actor: Type.Optional(Type.String({ maxLength: 128 })),
        tenantId: Type.Optional(TenantId),
        since: Type.Optional(IsoTime),
        cursor: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,17}$' })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ entries: Type.Array(AuditSchema), nextCursor: Nullable(Type.String()) }), 400: ErrorBody },
    },
  }, async (request) => {
    const q = request.query;
    // row-level security keeps a tenant's token to its tenants' entries (and entries of no tenant to tokens for every tenant)
    return asTenantReader(ctx.ledger.pool, request.principal.tenants, (db) => listAudit(db, {
      action: q.action, actor: q.actor, tenantId: q.tenantId, since: q.since ? new Date(q.since) : undefined,
      cursor: q.cursor, limit: q.limit ?? 100,
    }));
  });
}
