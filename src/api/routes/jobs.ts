import { runOperatorAction } from '../../audit/operator-action.ts';
import { Type, type Static } from 'typebox';
import { BULK_ACTIONS, JOB_SORTS, type BulkAction, type EnqueueInput } from '../../ledger/types.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { operatorOf } from '../operator.ts';
import {
  EnqueueBody, EnqueuedRef, ErrorBody, HistorySchema, IsoTime, JobId, JobSchema, JobStateSchema, JobTypeName, manyPayloadsLimit, OneOf,
  TenantHeaders, TenantOperatorHeaders,
} from '../schemas.ts';
import { requireTenant } from '../tenant.ts';
import { actorOf } from '../../auth/principal.ts';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import {
  bulkStates, bulkTargets, COUNT_SCAN, countJobs, getHistory, getJob, listJobs, type BulkResult, type JobMatch,
} from '../../ledger/queries.ts';
import type { Tx } from '../../ledger/ledger.ts';
import { checkText, MAX_KEY_LENGTH, toStorableJson } from '../../ledger/validate.ts';

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

/** Most jobs one bulk request acts on: a larger selection is done in several requests (the result says `more`). */
export const MAX_BULK = 10_000;
/** Job ids a bulk result (and its audit entry) lists. */
const LISTED_IDS = 100;

/** The filters of a job list, its state counts and a bulk action, besides the state and the payload (JobMatch). */
const MatchFields = {
  jobType: Type.Optional(JobTypeName),
  errorClass: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'The class of the job\'s last error.' })),
  createdAfter: Type.Optional(IsoTime),
  createdBefore: Type.Optional(IsoTime),
  correlationId: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_KEY_LENGTH })),
};
const MatchQuery = Type.Object({
  ...MatchFields,
  payload: Type.Optional(Type.String({ minLength: 2, maxLength: 8192, description: 'A JSON object: jobs whose payload contains it (PostgreSQL @>), e.g. {"customer":"c-42"}.' })),
});
type MatchQuery = Static<typeof MatchQuery>;

/** A filter's JobMatch, or a 400 naming the field (`prefix` is where the filter sits in the request). */
function toMatch(q: Omit<MatchQuery, 'payload'>, payload: unknown, prefix = ''): JobMatch {
  if (q.createdAfter !== undefined && q.createdBefore !== undefined && Date.parse(q.createdAfter) >= Date.parse(q.createdBefore)) {
    throw new ApiError(400, 'invalid', `${prefix}createdBefore`, 'createdBefore must be after createdAfter');
  }
  if (q.errorClass !== undefined) checkText(q.errorClass, `${prefix}errorClass`);
  if (q.correlationId !== undefined) checkText(q.correlationId, `${prefix}correlationId`);
  if (payload !== undefined && (payload === null || typeof payload !== 'object' || Array.isArray(payload))) {
    throw new ApiError(400, 'invalid', `${prefix}payload`, 'payload must be a JSON object, e.g. {"customer":"c-42"}');
  }
  return {
    jobType: q.jobType, errorClass: q.errorClass, correlationId: q.correlationId,
    createdAfter: q.createdAfter === undefined ? undefined : new Date(q.createdAfter),
    createdBefore: q.createdBefore === undefined ? undefined : new Date(q.createdBefore),
    payload: payload === undefined ? undefined : toStorableJson(payload, `${prefix}payload`),
  };
}

/** The `payload` query parameter: JSON text of an object. */
function queryPayload(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ApiError(400, 'invalid', 'payload', 'payload is not JSON: give a JSON object, e.g. {"customer":"c-42"}');
  }
}

const BulkBody = Type.Object({
  action: OneOf(BULK_ACTIONS, 'cancel: jobs not ended; replay: jobs ended without success, not replayed before; retry: failed jobs waiting for their retry backoff, made runnable now'),
  filter: Type.Object({
    state: Type.Optional(JobStateSchema),
    ...MatchFields,
    payload: Type.Optional(Type.Unknown({ description: 'A JSON object: jobs whose payload contains it.' })),
  }, { additionalProperties: false }),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BULK, description: `At most this many jobs, oldest first (default ${MAX_BULK}).` })),
}, {
  additionalProperties: false,
  examples: [{ action: 'replay', filter: { state: 'dead_lettered', jobType: 'send-invoice', errorClass: 'UpstreamTimeout' }, limit: 1000 }],
});

const BulkResult = Type.Object({
  action: OneOf(BULK_ACTIONS),
  dryRun: Type.Boolean({ description: 'true for a preview (POST /jobs/bulk/preview): nothing was changed.' }),
  matched: Type.Integer({ description: 'Jobs selected (at most limit).' }),
  more: Type.Boolean({ description: 'More jobs match than limit: run again for the rest.' }),
  applied: Type.Integer({ description: 'Jobs the action changed (0 for a dry run; fewer than matched when some changed state meanwhile).' }),
  jobIds: Type.Array(JobId, { description: `The first ${LISTED_IDS} selected.` }),
});

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
        sort: Type.Optional(Type.Union(JOB_SORTS.map((s) => Type.Literal(s)), {
          description: 'newest (default) or oldest: by creation; priority: waiting jobs (state queued or failed) in claim order',
        })),
        cursor: Type.Optional(JobId),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
        ...MatchQuery.properties,
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ jobs: Type.Array(JobSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }), 400: ErrorBody },
    },
  }, async (request) => {
    const q = request.query;
    const filter = { ...toMatch(q, queryPayload(q.payload)), tenantId: requireTenant(request), state: q.state, sort: q.sort, cursor: q.cursor, limit: q.limit ?? 50 };
    return asTenantReader(ledger.pool, request.principal.tenants, (db) => listJobs(db, filter));
  });

  app.get('/jobs/counts', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Jobs per state matching a filter', tags: ['jobs'], headers: TenantHeaders,
      description: `The live states (queued, leased, failed, dead_lettered, waiting) filtered by job type alone are exact; other counts look at the newest ${COUNT_SCAN} jobs of the tenant and say capped when older ones were left out.`,
      querystring: Type.Object(MatchQuery.properties, { additionalProperties: false }),
      response: {
        200: Type.Object({
          counts: Type.Array(Type.Object({ state: JobStateSchema, count: Type.Integer(), capped: Type.Boolean({ description: 'A lower bound.' }) })),
          capped: Type.Boolean({ description: 'Some count is a lower bound.' }),
        }),
        400: ErrorBody,
      },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const match = toMatch(request.query, queryPayload(request.query.payload));
    return asTenantReader(ledger.pool, request.principal.tenants, (db) => countJobs(db, tenantId, match));
  });

  /** The bulk body's selection: the action's states checked against the filter's; one more than the limit, to say whether more match. */
  function bulkSelection(tenantId: string, body: Static<typeof BulkBody>) {
    const { action, filter, limit = MAX_BULK } = body;
    const states = bulkStates(action);
    if (filter.state !== undefined && !states.includes(filter.state)) {
      throw new ApiError(400, 'invalid', 'filter.state', `${action} acts on jobs in state ${states.join(', ')}, not ${filter.state}`);
    }
    const match = { ...toMatch(filter, filter.payload, 'filter.'), state: filter.state };
    return {
      action, filter, limit,
      select: (db: Tx['client']) => bulkTargets(db, tenantId, action, match, limit + 1),
      result: (ids: string[], applied: number | null): BulkResult => ({
        action, dryRun: applied === null, matched: Math.min(ids.length, limit), more: ids.length > limit, applied: applied ?? 0,
        jobIds: ids.slice(0, Math.min(limit, LISTED_IDS)),
      }),
    };
  }

  app.post('/jobs/bulk/preview', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'What a bulk action would act on: how many jobs match, the first ids; changes nothing', tags: ['jobs'], headers: TenantHeaders, body: BulkBody,
      response: { 200: BulkResult, 400: ErrorBody },
    },
  }, async (request) => {
    const { select, result } = bulkSelection(requireTenant(request), request.body);
    return result(await asTenantReader(ledger.pool, request.principal.tenants, select), null);
  });

  app.post('/jobs/bulk', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Cancel, replay or retry now every job matching a filter', tags: ['jobs'], headers: TenantOperatorHeaders, body: BulkBody,
      description: 'One transaction: the jobs\' transitions, their history and events, and one audit entry. POST /jobs/bulk/preview says first what it would act on.',
      response: { 200: BulkResult, 400: ErrorBody },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const op = operatorOf(request);
    const { action, filter, limit, select, result } = bulkSelection(tenantId, request.body);
    return runOperatorAction(ledger.pool, op, { action: `job.bulk_${action}`, tenantId, target: 'jobs' }, async (tx) => {
      const ids = await select(tx.client);
      const done = result(ids, await applyBulk(action, tenantId, ids.slice(0, limit), op, tx));
      return { result: done, details: { filter, matched: done.matched, applied: done.applied, more: done.more, jobIds: done.jobIds } };
    });
  });

  /** Runs one bulk action's transition on the selected jobs in the operator action's transaction; returns how many it changed. */
  async function applyBulk(action: BulkAction, tenantId: string, ids: string[], op: { actor: string; reason: string }, tx: Tx): Promise<number> {
    switch (action) {
      case 'cancel':
        return (await ledger.cancelMany(tenantId, ids, op.actor, op.reason, { tx, states: bulkStates('cancel') })).filter((o) => o.record).length;
      case 'replay':
        return (await ledger.replay(tenantId, ids, { priority: null, actor: op.actor, reason: op.reason, tx })).filter((o) => o.status === 'replayed').length;
      case 'retry':
        return (await ledger.retryNow(tenantId, ids, op.actor, op.reason, tx)).length;
    }
  }

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
