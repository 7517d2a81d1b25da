import { Type } from 'typebox';
import { ALL } from '../../flow/pauses.ts';
import { TENANT_PATTERN } from '../../ledger/validate.ts';
import type { ApiContext, App } from '../context.ts';
import { authorizeTenant } from '../tenant.ts';
import { sees } from '../../auth/principal.ts';
import { operatorOf } from '../operator.ts';
import { ErrorBody, IsoTime, JobTypeName, OperatorHeaders, TenantId } from '../schemas.ts';

const PauseSchema = Type.Object({
  tenantId: Type.String({ description: '"*" for every tenant' }),
  jobType: Type.String({ description: '"*" for every job type' }),
  reason: Type.String(),
  ticket: Type.Union([Type.String(), Type.Null()]),
  actor: Type.String(),
  pausedAt: IsoTime,
});
const ScopeQuery = Type.Object({
  tenantId: Type.Optional(Type.String({ pattern: TENANT_PATTERN, description: 'Only this tenant; omit for every tenant.' })),
}, { additionalProperties: false });
const Responses = { 200: PauseSchema, 400: ErrorBody, 404: ErrorBody };

/**
 * Dispatch controls: pause and resume a job type (for every tenant or one)
 * or a whole tenant. Paused work stays queued; running jobs finish.
 */
export function controlRoutes(app: App, ctx: ApiContext): void {
  const { pauses } = ctx;

  app.get('/pauses', {
    config: { scope: 'orch:read' },
    schema: { summary: 'Dispatch pauses in force', tags: ['controls'], response: { 200: Type.Object({ pauses: Type.Array(PauseSchema) }) } },
  }, async (request) => ({ pauses: (await pauses.list()).filter((p) => sees(request.principal, p.tenantId)) }));

  for (const action of ['pause', 'resume'] as const) {
    const change = action === 'pause' ? pauses.pause.bind(pauses) : pauses.resume.bind(pauses);
    const verb = action === 'pause' ? 'Pause' : 'Resume';
    app.post(`/jobtypes/:name/${action}`, {
      config: { scope: 'orch:operate' },
      schema: {
        summary: `${verb} dispatch of a job type`, tags: ['controls'], headers: OperatorHeaders,
        params: Type.Object({ name: JobTypeName }), querystring: ScopeQuery, response: Responses,
      },
    }, async (request) => change(authorizeTenant(request, request.query.tenantId ?? ALL), request.params.name, operatorOf(request)));

    app.post(`/tenants/:tenantId/${action}`, {
      config: { scope: 'orch:operate' },
      schema: {
        summary: `${verb} dispatch of every job type for a tenant`, tags: ['controls'], headers: OperatorHeaders,
        params: Type.Object({ tenantId: TenantId }), response: Responses,
      },
    }, async (request) => change(request.params.tenantId, ALL, operatorOf(request)));
  }
}
