import { Type } from 'typebox';
import { authorizeTenant } from '../auth.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { ErrorBody, JobTypeName, JobTypeSchema, JobTypeSettingsBody } from '../schemas.ts';

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
    config: { scope: 'orch:write' },
    schema: {
      summary: 'Define a job type or change its defaults (retry policy, lease length, run-time limit)', tags: ['jobtypes'],
      params: Type.Object({ name: JobTypeName }), body: JobTypeSettingsBody,
      response: { 200: JobTypeSchema, 400: ErrorBody, 422: ErrorBody },
    },
  }, async (request) => {
    authorizeTenant(request, '*');
    return ledger.jobTypes.define(request.params.name, request.body);
  });
}
