import { Type } from 'typebox';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import { BACKFILL_STATES, MAX_WINDOWS, REPROCESS_POLICIES } from '../../backfills/backfills.ts';
import { WINDOW_STATES } from '../../windows/windows.ts';
import type { ApiContext, App } from '../context.ts';
import { operatorOf } from '../operator.ts';
import { ErrorBody, IsoTime, OneOf, JobTypeName, Nullable, TenantHeaders, TenantOperatorHeaders, Uuid } from '../schemas.ts';
import { reachableTenants, requireTenant } from '../tenant.ts';

const SpecBody = Type.Object({
  jobType: JobTypeName,
  from: IsoTime,
  to: IsoTime,
  windowMs: Type.Integer({ description: `Window length in ms (at least 1000); the range may be cut into at most ${MAX_WINDOWS} windows.` }),
  payload: Type.Optional(Type.Unknown({ description: 'A template: strings may use {{windowStart}}, {{windowEnd}}, {{windowIndex}}, {{watermark}}, {{now}}, {{backfillId}}.' })),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'Windows in flight at once (default 1).' })),
  reprocess: Type.Optional(OneOf(REPROCESS_POLICIES, 'Windows of the same bounds that ran before: none (default) skips them, failed runs those that failed, all runs every one.')),
}, { additionalProperties: false });
const Counts = {
  pending: Type.Integer(), running: Type.Integer(), succeeded: Type.Integer(), failed: Type.Integer(), canceled: Type.Integer(), skipped: Type.Integer(),
  covered: Type.Integer({ description: 'Windows another backfill has pending and will run.' }),
};
const BackfillSchema = Type.Object({
  id: Type.String(), tenantId: Type.String(), jobType: Type.String(), from: IsoTime, to: IsoTime, windowMs: Type.Integer(), payload: Type.Unknown(),
  priority: Type.Integer(), concurrency: Type.Integer(), reprocess: OneOf(REPROCESS_POLICIES), state: OneOf(BACKFILL_STATES), windows: Type.Integer(),
  watermark: Nullable(IsoTime), actor: Type.String(), reason: Type.String(), ticket: Type.String(), createdAt: IsoTime, updatedAt: IsoTime,
  finishedAt: Nullable(IsoTime),
  progress: Type.Object({ ...Counts, perMinute: Type.Number(), estimatedEndAt: Nullable(IsoTime) }),
});
const PlanSchema = Type.Object({
  jobType: Type.String(), windows: Type.Integer(), run: Type.Integer(), skip: Type.Integer(),
  items: Type.Array(Type.Object({ index: Type.Integer(), start: IsoTime, end: IsoTime, action: OneOf(['run', 'skip'] as const), state: OneOf(WINDOW_STATES, 'The state the window would start in.'), reason: Nullable(Type.String()) })),
});
const Responses = { 200: BackfillSchema, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const params = Type.Object({ id: Uuid });
const tags = ['backfills'];

/**
 * Backfills: windows of the past, one job each, with a watermark. Starting
 * and steering one needs orch:backfill with a reason and a ticket; the plan
 * (dry run) and reads need orch:read.
 */
export function backfillRoutes(app: App, ctx: ApiContext): void {
  const { backfills, ledger } = ctx;

  app.get('/backfills', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Backfills, newest first (at most 200)', tags, headers: TenantHeaders,
      querystring: Type.Object({ state: Type.Optional(OneOf(BACKFILL_STATES)) }, { additionalProperties: false }),
      response: { 200: Type.Object({ backfills: Type.Array(BackfillSchema) }) },
    },
  }, async (request) => ({
    backfills: await asTenantReader(ledger.pool, request.principal.tenants, (db) => backfills.list(db, reachableTenants(request), request.query.state)),
  }));

  app.get('/backfills/:id', {
    config: { scope: 'orch:read' },
    schema: { summary: 'A backfill with its progress: windows by state, rate, estimated end, watermark', tags, headers: TenantHeaders, params, response: Responses },
  }, async (request) => {
    const tenantId = requireTenant(request);
    return asTenantReader(ledger.pool, request.principal.tenants, (db) => backfills.get(db, tenantId, request.params.id));
  });

  app.post('/backfills/plan', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Dry run: the windows a backfill would cut, which would run and which it would skip and why; enqueues nothing',
      tags, headers: TenantHeaders, body: SpecBody, response: { 200: PlanSchema, 400: ErrorBody },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    return asTenantReader(ledger.pool, request.principal.tenants, (db) => backfills.plan(db, tenantId, request.body));
  });

  app.post('/backfills', {
    config: { scope: 'orch:backfill' },
    schema: { summary: 'Start a backfill', tags, headers: TenantOperatorHeaders, body: SpecBody, response: { ...Responses, 201: BackfillSchema } },
  }, async (request, reply) => reply.status(201).send(await backfills.create(requireTenant(request), request.body, operatorOf(request))));

  for (const [action, summary] of [
    ['pause', 'Start no new window (running ones finish)'],
    ['resume', 'Start windows again'],
    ['cancel', 'Cancel the windows not started and the waiting jobs of started ones; running jobs finish'],
    ['retry', 'Run the failed and canceled windows again (succeeded ones are left alone)'],
  ] as const) {
    app.post(`/backfills/:id/${action}`, {
      config: { scope: 'orch:backfill' },
      schema: { summary, tags, headers: TenantOperatorHeaders, params, response: Responses },
    }, async (request) => {
      const tenantId = requireTenant(request);
      const op = operatorOf(request);
      const id = request.params.id;
      if (action === 'cancel') return backfills.cancel(tenantId, id, op);
      if (action === 'retry') return backfills.retry(tenantId, id, op);
      return backfills.setState(tenantId, id, action, op);
    });
  }
}
