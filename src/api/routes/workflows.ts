import { Type } from 'typebox';
import { actorOf } from '../../auth/principal.ts';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import { EDGE_POLICIES } from '../../ledger/types.ts';
import { MAX_KEY_LENGTH, MAX_PRIORITY } from '../../ledger/validate.ts';
import { MAX_EDGES, MAX_STEPS, STEP_NAME_PATTERN, WORKFLOW_STATES } from '../../workflows/workflows.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { operatorOf } from '../operator.ts';
import { ErrorBody, IsoTime, JobSchema, JobTypeName, manyPayloadsLimit, Nullable, OneOf, TenantHeaders, TenantOperatorHeaders, Uuid } from '../schemas.ts';
import { reachableTenants, requireTenant } from '../tenant.ts';

const StepName = Type.String({ pattern: STEP_NAME_PATTERN });
const Policy = OneOf(EDGE_POLICIES, 'When the parent ends dead-lettered, canceled or timed out: cancel this step (default) and what depends on it, ignore it and run, or wait for a replay of the parent.');
const SubmitBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_KEY_LENGTH, description: 'A second submission with this key returns the first workflow (200).' })),
  correlationId: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_KEY_LENGTH, description: 'Set on every step\'s job and event.' })),
  steps: Type.Array(Type.Object({
    name: StepName,
    jobType: JobTypeName,
    payload: Type.Optional(Type.Unknown()),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PRIORITY })),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    dependsOn: Type.Optional(Type.Array(Type.Union([StepName, Type.Object({ step: StepName, onFailure: Type.Optional(Policy) }, { additionalProperties: false })]), {
      maxItems: MAX_STEPS, description: 'Steps this one waits for: names, or { step, onFailure }.',
    })),
  }, { additionalProperties: false }), { minItems: 1, maxItems: MAX_STEPS, description: `At most ${MAX_STEPS} steps and ${MAX_EDGES} dependencies in all.` }),
}, {
  additionalProperties: false,
  examples: [{
    name: 'nightly-etl', idempotencyKey: 'etl-2026-12-04',
    steps: [
      { name: 'extract', jobType: 'etl-extract', payload: { day: '2026-12-04' } },
      { name: 'transform', jobType: 'etl-transform', dependsOn: ['extract'] },
      { name: 'audit', jobType: 'etl-audit', dependsOn: [{ step: 'extract', onFailure: 'ignore' }] },
      { name: 'load', jobType: 'etl-load', dependsOn: ['transform', { step: 'audit', onFailure: 'wait' }] },
    ],
  }],
});

const WorkflowSummary = {
  id: Uuid, tenantId: Type.String(), name: Type.String(), state: OneOf(WORKFLOW_STATES), stepCount: Type.Integer(),
  openSteps: Type.Integer({ description: 'Steps not ended yet.' }), failedSteps: Type.Integer({ description: 'Steps whose latest run ended without success.' }),
  cancelRequested: Type.Boolean(), actor: Type.String(), createdAt: IsoTime, updatedAt: IsoTime, finishedAt: Nullable(IsoTime),
};
const WorkflowSchema = Type.Object({
  ...WorkflowSummary,
  steps: Type.Array(Type.Object({
    name: Type.String(), job: JobSchema, runs: Type.Integer({ description: 'Jobs this step ran as (a replay adds one).' }),
    dependsOn: Type.Array(Type.Object({ step: Type.String(), onFailure: OneOf(EDGE_POLICIES) })),
  })),
  result: Type.Record(Type.String(), Type.Unknown(), { description: 'The results of the sink steps (those nothing depends on), by step name.' }),
});
const params = Type.Object({ id: Uuid });
const tags = ['workflows'];
const Responses = { 200: WorkflowSchema, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

/** Workflows: a graph of jobs submitted at once (orch:write); cancel and retry are operator actions (orch:operate). */
export function workflowRoutes(app: App, ctx: ApiContext): void {
  const { workflows, ledger } = ctx;

  app.post('/workflows', {
    config: { scope: 'orch:write' },
    bodyLimit: manyPayloadsLimit(ctx.config.maxPayloadBytes),
    schema: {
      summary: 'Submit a workflow: named steps and their dependencies, stored at once', tags, headers: TenantHeaders, body: SubmitBody,
      description: 'A cycle, an unknown step or a duplicate name is a 422 naming the steps. Steps without dependencies are queued at once; the others wait.',
      response: { 200: WorkflowSchema, 201: WorkflowSchema, 400: ErrorBody, 422: ErrorBody, 429: ErrorBody },
    },
  }, async (request, reply) => {
    const { workflow, created } = await workflows.submit(requireTenant(request), request.body, actorOf(request.principal));
    return reply.status(created ? 201 : 200).send(workflow);
  });

  app.get('/workflows', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Workflows, newest first', tags, headers: TenantHeaders,
      querystring: Type.Object({
        state: Type.Optional(OneOf(WORKFLOW_STATES)),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
        before: Type.Optional(Type.String({ pattern: '^[^/]+/[0-9a-fA-F-]{36}$', description: 'Paging: the nextCursor of the previous page.' })),
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ workflows: Type.Array(Type.Object(WorkflowSummary)), nextCursor: Nullable(Type.String()) }), 400: ErrorBody },
    },
  }, async (request) => {
    const q = request.query;
    const limit = q.limit ?? 50;
    let before: { createdAt: string; id: string } | undefined;
    if (q.before) {
      const [createdAt, id] = q.before.split('/') as [string, string];
      if (Number.isNaN(Date.parse(createdAt))) throw new ApiError(400, 'invalid', 'before', 'before is not a cursor of this list');
      before = { createdAt, id };
    }
    const list = await asTenantReader(ledger.pool, request.principal.tenants,
      (db) => workflows.list(db, reachableTenants(request), { state: q.state, limit, before }));
    const last = list.at(-1);
    return { workflows: list, nextCursor: list.length === limit && last ? `${last.createdAt}/${last.id}` : null };
  });

  app.get('/workflows/:id', {
    config: { scope: 'orch:read' },
    schema: { summary: 'A workflow: each step\'s latest job and dependencies, and the sink steps\' results', tags, headers: TenantHeaders, params, response: Responses },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const w = await asTenantReader(ledger.pool, request.principal.tenants, (db) => workflows.get(db, tenantId, request.params.id));
    if (!w) throw new ApiError(404, 'not_found', 'id', `workflow ${request.params.id} not found`);
    return w;
  });

  app.post('/workflows/:id/cancel', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Cancel the steps not started; running ones finish (or are canceled too, with includeRunning)', tags, headers: TenantOperatorHeaders, params,
      querystring: Type.Object({ includeRunning: Type.Optional(Type.Boolean({ default: false })) }, { additionalProperties: false }),
      response: Responses,
    },
  }, async (request) => workflows.cancel(requireTenant(request), request.params.id, operatorOf(request), request.query.includeRunning ?? false));

  app.post('/workflows/:id/retry', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Replay every step whose latest run failed or was canceled; succeeded steps are left alone', tags, headers: TenantOperatorHeaders, params,
      response: Responses,
    },
  }, async (request) => workflows.retry(requireTenant(request), request.params.id, operatorOf(request)));
}
