import { Type } from 'typebox';
import { sees } from '../../auth/principal.ts';
import { MAX_BOOST_MS } from '../../flow/quotas.ts';
import type { ApiContext, App } from '../context.ts';
import { operatorOf } from '../operator.ts';
import { ErrorBody, IsoTime, Nullable, OperatorHeaders, QuotaScope } from '../schemas.ts';

const Limits = {
  maxActive: Nullable(Type.Integer({ description: 'Concurrency cap: leased jobs at once.' })),
  ratePerSecond: Nullable(Type.Number({ description: 'Token bucket refill per second.' })),
  burst: Nullable(Type.Number({ description: 'Token bucket capacity (at least 1 and at least ratePerSecond).' })),
  maxPerHour: Nullable(Type.Integer({ description: 'Claims per hourly window.' })),
};
const LimitsSchema = Type.Object(Limits);
const QuotaSchema = Type.Object({
  tenantId: Type.String(), jobType: Type.String(), ...Limits, weight: Type.Integer(), paused: Type.Boolean(),
  boost: Nullable(Type.Object({
    ...Limits, until: IsoTime, reason: Nullable(Type.String()), ticket: Nullable(Type.String()), actor: Nullable(Type.String()),
  })),
  reason: Type.String(), ticket: Nullable(Type.String()), actor: Type.String(), updatedAt: IsoTime,
});
const QuotaUseSchema = Type.Object({
  tenantId: Type.String(), jobType: Type.String(), limits: LimitsSchema, boostedUntil: Nullable(IsoTime),
  paused: Type.Boolean(), active: Type.Integer(), tokensLeft: Nullable(Type.Number()), usedThisHour: Type.Integer(),
  throttledCount: Type.Integer(),
  throttledBy: Nullable(Type.Union([Type.Literal('rate'), Type.Literal('concurrency'), Type.Literal('quota'), Type.Literal('paused')])),
  nextEligibleAt: Nullable(IsoTime),
});
const QuotaChangeBody = Type.Object({
  maxActive: Type.Optional(Limits.maxActive),
  ratePerSecond: Type.Optional(Limits.ratePerSecond),
  burst: Type.Optional(Limits.burst),
  maxPerHour: Type.Optional(Limits.maxPerHour),
  weight: Type.Optional(Type.Integer({ description: 'Share when tenants compete for a type (1 to 1000).' })),
}, { additionalProperties: false, description: 'Fields left out keep their values; null removes a limit.' });
const BoostBody = Type.Object({
  factor: Type.Optional(Type.Number({ description: 'Multiplies rate, burst and concurrency cap (above 1, at most 100).' })),
  maxActive: Type.Optional(Type.Integer()),
  ratePerSecond: Type.Optional(Type.Number()),
  burst: Type.Optional(Type.Number()),
  durationSeconds: Type.Integer({ minimum: 1, maximum: MAX_BOOST_MS / 1000, description: 'How long the boost lasts; the previous limits return by themselves after it.' }),
}, { additionalProperties: false });
const Responses = { 200: QuotaSchema, 400: ErrorBody, 404: ErrorBody };
const params = QuotaScope;

/**
 * Quotas per (tenant, job type): concurrency cap, token bucket, hourly
 * count, weight; pause/resume; temporary boosts. Every change needs
 * X-Operator-Reason and X-Operator-Ticket and is audited.
 */
export function quotaRoutes(app: App, ctx: ApiContext): void {
  const { quotas, pauses, metrics } = ctx;
  const tags = ['quotas'];

  app.get('/quotas', {
    config: { scope: 'orch:read' },
    schema: { summary: 'Quotas and their limits', tags, response: { 200: Type.Object({ quotas: Type.Array(QuotaSchema) }) } },
  }, async (request) => ({ quotas: (await quotas.list()).filter((q) => sees(request.principal, q.tenantId)) }));

  app.get('/quotas/summary', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'What each quota is using now: active leases, tokens left, throttled count, next eligible time', tags,
      response: { 200: Type.Object({ quotas: Type.Array(QuotaUseSchema) }) },
    },
  }, async (request) => ({ quotas: (await quotas.summary()).filter((q) => sees(request.principal, q.tenantId)) }));

  app.get('/quotas/:tenantId/:jobType', {
    config: { scope: 'orch:read' },
    schema: { summary: 'One quota', tags, params, response: Responses },
  }, async (request) => quotas.get(request.params.tenantId, request.params.jobType));

  app.put('/quotas/:tenantId/:jobType', {
    config: { scope: 'orch:quota' },
    schema: { summary: 'Create a quota or change its limits', tags, params, headers: OperatorHeaders, body: QuotaChangeBody, response: Responses },
  }, async (request) => {
    const op = operatorOf(request);
    const quota = await quotas.set(request.params.tenantId, request.params.jobType, request.body, op);
    metrics.knowPairs([quota]);
    return quota;
  });

  app.delete('/quotas/:tenantId/:jobType', {
    config: { scope: 'orch:quota' },
    schema: { summary: 'Remove a quota', tags, params, headers: OperatorHeaders, response: Responses },
  }, async (request) => quotas.remove(request.params.tenantId, request.params.jobType, operatorOf(request)));

  for (const action of ['pause', 'resume'] as const) {
    app.post(`/quotas/:tenantId/:jobType/${action}`, {
      config: { scope: 'orch:quota' },
      schema: {
        summary: `${action === 'pause' ? 'Pause' : 'Resume'} dispatch of all the work the quota covers (the same dispatch pause as /jobtypes/{name}/${action})`,
        tags, params, headers: OperatorHeaders, response: Responses,
      },
    }, async (request) => {
      const { tenantId, jobType } = request.params;
      await quotas.get(tenantId, jobType);
      await (action === 'pause' ? pauses.pause(tenantId, jobType, operatorOf(request)) : pauses.resume(tenantId, jobType, operatorOf(request)));
      return quotas.get(tenantId, jobType);
    });
  }

  app.post('/quotas/:tenantId/:jobType/boost', {
    config: { scope: 'orch:quota' },
    schema: {
      summary: 'Raise rate and/or concurrency for a bounded time; the previous limits return by themselves', tags, params,
      headers: OperatorHeaders, body: BoostBody, response: Responses,
    },
  }, async (request) => {
    const op = operatorOf(request);
    const { durationSeconds, ...rest } = request.body;
    return quotas.boost(request.params.tenantId, request.params.jobType, { ...rest, durationMs: durationSeconds * 1000 }, op);
  });

  app.post('/quotas/:tenantId/:jobType/restore', {
    config: { scope: 'orch:quota' },
    schema: { summary: 'End a boost early', tags, params, headers: OperatorHeaders, response: Responses },
  }, async (request) => quotas.restore(request.params.tenantId, request.params.jobType, operatorOf(request)));
}
