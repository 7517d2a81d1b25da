import { runOperatorAction } from '../../audit/operator-action.ts';
import { Type } from 'typebox';
import { JOB_SORTS, type EnqueueInput } from '../../ledger/types.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { operatorOf } from '../operator.ts';
import {
  EnqueueBody, EnqueuedRef, ErrorBody, HistorySchema, JobId, JobSchema, JobStateSchema, JobTypeName, manyPayloadsLimit, TenantHeaders,
} from '../schemas.ts';
import { requireTenant } from '../tenant.ts';
import { actorOf } from '../../auth/principal.ts';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import { getHistory, getJob, listJobs } from '../../ledger/queries.ts';

function toInput(tenantId: string, b: EnqueueBody, field = ''): EnqueueInput {
  if (b.runAfter !== undefined && b.delayMs !== undefined) {
    throw new ApiError(400, 'invalid', `${field}delayMs`, 'give runAfter or delayMs, not both');
  }
  const runAfter = b.runAfter !== undefined ? new Date(b.runAfter) : b.delayMs !== undefined ? new Date(Date.now() + b.delayMs) : undefined;
  return {
    tenantId, jobType: b.jobType, payload: b.payload ?? null, priority: b.priority, runAfter,
    maxAttempts: b.maxAttempts, idempotencyKey: b.idempotencyKey, correlationId: b.correlationId,
    ...(b.dependsOn ? { dependsOn: b.dependsOn.map((d) => (typeof d === 'string' ? { jobId: d } : d)) } : {}),
  };
}


export function jobRoutes(app: App, ctx: ApiContext): void {
  const { ledger, config } = ctx;

  app.post('/jobs', {
    config: { scope: 'orch:write' },
    bodyLimit: config.maxPayloadBytes + 64 * 1024,
    schema: {
      summary: 'Enqueue a job', tags: ['jobs'], headers: TenantHeaders, body: EnqueueBody,
      response: { 200: EnqueuedRef, 201: EnqueuedRef, 400: ErrorBody, 413: ErrorBody, 422: ErrorBody, 429: ErrorBody },
      description: 'Returns 201 for a new job, 200 with the existing job when the idempotency key was already used.',
    },
  }, async (request, reply) => {
    const tenantId = requireTenant(request);
    const [r] = await ledger.enqueue([toInput(tenantId, request.body)], { actor: actorOf(request.principal) });
    return reply.status(r!.created ? 201 : 200).send(r!);
  });

  app.post('/jobs/batch', {
    config: { scope: 'orch:write' },
    bodyLimit: manyPayloadsLimit(config.maxPayloadBytes),
    schema: {
      summary: 'Enqueue many jobs in one transaction', tags: ['jobs'], headers: TenantHeaders,
      body: Type.Object({ jobs: Type.Array(EnqueueBody, { minItems: 1, maxItems: config.maxBatchSize }) }, { additionalProperties: false }),
      response: { 200: Type.Object({ jobs: Type.Array(EnqueuedRef) }), 400: ErrorBody, 413: ErrorBody, 422: ErrorBody, 429: ErrorBody },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const inputs = request.body.jobs.map((b, i) => toInput(tenantId, b, `jobs[${i}].`));
    return { jobs: await ledger.enqueue(inputs, { actor: actorOf(request.principal) }) };
  });

  app.get('/jobs', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'List jobs, newest first unless sorted otherwise', tags: ['jobs'], headers: TenantHeaders,
      querystring: Type.Object({
        state: Type.Optional(JobStateSchema),
        jobType: Type.Optional(JobTypeName),
        sort: Type.Optional(Type.Union(JOB_SORTS.map((s) => Type.Literal(s)), {
          description: 'newest (default) or oldest: by creation; priority: waiting jobs (state queued or failed) in claim order',
        })),
        cursor: Type.Optional(JobId),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ jobs: Type.Array(JobSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }), 400: ErrorBody },
    },
  }, async (request) => {
    const q = request.query;
    const filter = { tenantId: requireTenant(request), state: q.state, jobType: q.jobType, sort: q.sort, cursor: q.cursor, limit: q.limit ?? 50 };
    return asTenantReader(ledger.pool, request.principal.tenants, (db) => listJobs(db, filter));
  });

  app.get('/jobs/:jobId', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'A job with its full history', tags: ['jobs'], headers: TenantHeaders,
      params: Type.Object({ jobId: JobId }),
      response: { 200: Type.Object({ job: JobSchema, history: Type.Array(HistorySchema) }), 400: ErrorBody, 404: ErrorBody },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    return asTenantReader(ledger.pool, request.principal.tenants, async (db) => {
      const job = await getJob(db, tenantId, request.params.jobId);
      if (!job) throw new ApiError(404, 'not_found', 'jobId', `job ${request.params.jobId} not found`);
      return { job, history: await getHistory(db, tenantId, job.id) };
    });
  });

  app.post('/jobs/:jobId/cancel', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Cancel a queued or running job', tags: ['jobs'], headers: TenantHeaders,
      description: 'A running job\'s worker learns at its next heartbeat; its late ack is refused.',
      params: Type.Object({ jobId: JobId }),
      response: { 200: Type.Object({ job: JobSchema }), 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const op = operatorOf(request);
    const jobId = request.params.jobId;
    await runOperatorAction(ledger.pool, op, { action: 'job.cancel', tenantId, target: `job:${jobId}` }, async (tx) => {
      await ledger.cancel(tenantId, jobId, op.actor, op.reason, tx);
      return { result: undefined, details: {} };
    });
    return { job: (await ledger.getJob(tenantId, jobId))! };
  });
}
