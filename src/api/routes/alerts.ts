import { Type } from 'typebox';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import { ALERT_NAMES, evaluate, jobTypeGauges, readAlertInputs } from '../../metrics/alert-conditions.ts';
import { throughput } from '../../metrics/history.ts';
import type { ApiContext, App } from '../context.ts';
import { ErrorBody, IsoTime, OneOf } from '../schemas.ts';
import { requireTenant } from '../tenant.ts';

const Severity = Type.Union([Type.Literal('warning'), Type.Literal('critical'), Type.Literal('page')]);
const AlertHealth = Type.Object({
  alert: OneOf(ALERT_NAMES),
  state: Type.Union([Type.Literal('ok'), Type.Literal('firing')], { description: 'firing: the condition holds now (the rule\'s `for:` is not waited out)' }),
  labels: Type.Array(Type.String(), { description: 'The labels its alerts carry besides severity.' }),
  rules: Type.Array(Type.Object({
    severity: Severity,
    for: Type.Union([Type.Null(), Type.String()], { description: 'The rule\'s `for:` in alerts.yaml, not applied here.' }),
    condition: Type.String(),
  })),
  firing: Type.Array(Type.Object({ severity: Severity, labels: Type.Record(Type.String(), Type.String()), value: Type.Number() })),
});
const JobTypeGauges = Type.Object({
  jobType: Type.String(), queued: Type.Integer(), throttled: Type.Integer(), paused: Type.Integer(), leased: Type.Integer(),
  waiting: Type.Integer(), deadLettered: Type.Integer(), oldestQueuedAgeSeconds: Type.Number(), leases: Type.Integer(),
  oldestHeartbeatAgeSeconds: Type.Number(), workers: Type.Integer(),
});
const Series = Type.Array(Type.Integer());

/** The alert conditions of alerts.yaml evaluated now for the caller's tenant, and the history per minute behind the console's charts. */
export function alertRoutes(app: App, ctx: ApiContext): void {
  const { ledger, config } = ctx;

  app.get('/alerts', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Each alert of alerts.yaml: does its condition hold now for the tenant, for which labels, with what value', tags: ['alerts'],
      description: 'The same thresholds and windows as the Prometheus rules, from the queue, lease and cluster gauges and the job history, '
        + 'without the rules\' `for:` durations: "firing" means the condition holds now, not that Prometheus has fired. '
        + 'Job-type-wide alerts (error cluster, burn rate, lease stall) are evaluated over the tenant\'s own jobs.',
      response: {
        200: Type.Object({
          tenantId: Type.String(), evaluatedAt: IsoTime, alerts: Type.Array(AlertHealth), jobTypes: Type.Array(JobTypeGauges),
          cluster: Type.Object({ replicasUp: Type.Integer(), leading: Type.Boolean({ description: 'a replica leads now' }) }),
        }),
        400: ErrorBody,
      },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const status = await ctx.cluster.status();
    const cluster = { replicasUp: status.replicas.filter((r) => r.state === 'up').length, leading: status.leader?.live ?? false };
    const inputs = await asTenantReader(ledger.pool, [tenantId], (db) => readAlertInputs(db, {
      tenantId, cluster, scheduleGraceMs: config.maintenance.scheduleGraceMs, maxQueuedPerTenant: config.maxQueuedPerTenant,
    }));
    return { tenantId, evaluatedAt: new Date().toISOString(), alerts: evaluate(inputs), jobTypes: jobTypeGauges(inputs), cluster };
  });

  app.get('/stats/throughput', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Per job type and minute: attempts succeeded, failed (will retry) and dead-lettered, and jobs waiting', tags: ['alerts'],
      querystring: Type.Object({
        minutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 360, default: 60, description: 'How many minutes back, the current one included.' })),
      }, { additionalProperties: false }),
      response: {
        200: Type.Object({
          tenantId: Type.String(),
          times: Type.Array(IsoTime, { description: 'Start of each minute, oldest first.' }),
          jobTypes: Type.Array(Type.Object({ jobType: Type.String(), succeeded: Series, failed: Series, deadLettered: Series, waiting: Series })),
        }),
        400: ErrorBody,
      },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const result = await asTenantReader(ledger.pool, [tenantId], (db) => throughput(db, request.query.minutes ?? 60));
    return { tenantId, ...result };
  });
}
