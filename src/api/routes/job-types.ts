import { runOperatorAction } from '../../audit/operator-action.ts';
import { operatorOf } from '../operator.ts';
import { Type } from 'typebox';
import { authorizeTenant } from '../tenant.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { ErrorBody, JobTypeName, JobTypeSchema, JobTypeSettingsBody, OperatorHeaders } from '../schemas.ts';

export function jobTypeRoutes(app: App, ctx: ApiContext): void {
  const { ledger } = ctx;

  app.get('/jobtypes', {
    config: { scope: 'orch:read' },
    schema: { summary: 'Job types and their defaults', tags: ['jobtypes'], response: { 200: Type.Object({ jobTypes: Type.Array(JobTypeSchema) }) } },
  }, async () => ({ jobTypes: await ledger.jobTypes.list(ledger.pool) }));

  app.get('/jobtypes/:name', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'One job type', tags: ['jobtypes'], params: Type.Object({ name: JobTypeName }),
      response: { 200: JobTypeSchema, 400: ErrorBody, 404: ErrorBody },
    },
  }, async (request) => {
    const t = await ledger.jobTypes.get(ledger.pool, request.params.name);
    if (!t) throw new ApiError(404, 'not_found', 'name', `job type ${request.params.name} not found`);
    return t;
  });

  // Producers define their job types (orch:write), but a type is shared by every tenant: changing it takes a token for every tenant.
  app.put('/jobtypes/:name', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Define a job type or change its defaults (retry policy, lease length, run-time limit)', tags: ['jobtypes'],
      description: 'Defaults apply to every tenant: an operator action (X-Operator-Reason), recorded in the audit log with the settings.',
      params: Type.Object({ name: JobTypeName }), body: JobTypeSettingsBody, headers: OperatorHeaders,
      response: { 200: JobTypeSchema, 400: ErrorBody, 422: ErrorBody },
    },
  }, async (request) => {
    authorizeTenant(request, '*');
    const name = request.params.name;
    return runOperatorAction(ledger.pool, operatorOf(request), { action: 'jobtype.define', tenantId: null, target: `jobtype:${name}` }, async (tx) => {
      const defined = await ledger.jobTypes.define(name, request.body, tx.client);
      return { result: defined, details: { settings: request.body } };
    });
  });
}
