import { Type } from 'typebox';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import { CATCH_UP_POLICIES, SCHEDULE_NAME_PATTERN } from '../../schedules/schedules.ts';
import { listWatermarks } from '../../windows/windows.ts';
import type { ApiContext, App } from '../context.ts';
import { operatorOf } from '../operator.ts';
import { ErrorBody, IsoTime, OneOf, JobId, JobTypeName, Nullable, TenantHeaders, TenantOperatorHeaders } from '../schemas.ts';
import { reachableTenants, requireTenant } from '../tenant.ts';

const Name = Type.String({ pattern: SCHEDULE_NAME_PATTERN, description: 'Unique per tenant.' });
const CatchUp = OneOf(CATCH_UP_POLICIES,
  'Ticks missed while no server ran (later than ORCH_SCHEDULE_GRACE_MS): skip them, run the latest once, or run all (at most catchUpMax).');
const Fields = {
  jobType: JobTypeName,
  payload: Type.Optional(Type.Unknown({ description: 'A template: strings may use {{windowStart}}, {{windowEnd}}, {{windowIndex}}, {{tick}}, {{watermark}}, {{now}}, {{scheduleName}}.' })),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  maxAttempts: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 1000 }))),
  cron: Type.Optional(Nullable(Type.String({ maxLength: 256, description: 'Five fields (minute hour day month weekday), six with seconds first, or @daily-style.' }))),
  everyMs: Type.Optional(Nullable(Type.Integer({ description: 'A fixed interval instead of cron, from startsAt (or creation).' }))),
  timeZone: Type.Optional(Type.String({ maxLength: 64, description: 'IANA zone the cron expression is read in (default UTC).' })),
  startsAt: Type.Optional(Nullable(IsoTime)),
  endsAt: Type.Optional(Nullable(IsoTime)),
  enabled: Type.Optional(Type.Boolean()),
  catchUp: Type.Optional(CatchUp),
  catchUpMax: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
};
const CreateBody = Type.Object({ name: Name, ...Fields }, { additionalProperties: false });
const UpdateBody = Type.Object({ ...Fields, jobType: Type.Optional(JobTypeName) }, { additionalProperties: false, description: 'Fields left out keep their values.' });
const ScheduleSchema = Type.Object({
  id: Type.String(), tenantId: Type.String(), name: Type.String(), jobType: Type.String(), payload: Type.Unknown(), priority: Type.Integer(),
  maxAttempts: Nullable(Type.Integer()), cron: Nullable(Type.String()), everyMs: Nullable(Type.Integer()), timeZone: Type.String(),
  startsAt: Nullable(IsoTime), endsAt: Nullable(IsoTime), enabled: Type.Boolean(), catchUp: CatchUp, catchUpMax: Type.Integer(),
  nextTickAt: Nullable(IsoTime), lastTickAt: Nullable(IsoTime), lastJobId: Nullable(Type.String()), ticks: Type.Integer(),
  missedTicks: Type.Integer(), watermark: Nullable(IsoTime), createdBy: Type.String(), createdAt: IsoTime, updatedAt: IsoTime,
});
const Responses = { 200: ScheduleSchema, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const params = Type.Object({ name: Name });
const tags = ['schedules'];

/**
 * Schedules: recurring jobs of a tenant, by name. Reading needs orch:read;
 * every change orch:operate with a reason (audited). Ticks fire on the leader
 * (src/schedules/scheduler.ts); `trigger` runs the job once now.
 */
export function scheduleRoutes(app: App, ctx: ApiContext): void {
  const { schedules, ledger } = ctx;

  app.get('/schedules', {
    config: { scope: 'orch:read' },
    schema: { summary: 'Schedules of the tenant (or of every tenant the token sees)', tags, headers: TenantHeaders, response: { 200: Type.Object({ schedules: Type.Array(ScheduleSchema) }) } },
  }, async (request) => ({ schedules: await asTenantReader(ledger.pool, request.principal.tenants, (db) => schedules.list(db, reachableTenants(request))) }));

  app.get('/schedules/:name', {
    config: { scope: 'orch:read' },
    schema: { summary: 'One schedule: its next tick, ticks fired and missed, its watermark', tags, headers: TenantHeaders, params, response: Responses },
  }, async (request) => {
    const tenantId = requireTenant(request);
    return asTenantReader(ledger.pool, request.principal.tenants, (db) => schedules.get(db, tenantId, request.params.name));
  });

  app.post('/schedules', {
    config: { scope: 'orch:operate' },
    schema: { summary: 'Create a schedule', tags, headers: TenantOperatorHeaders, body: CreateBody, response: { ...Responses, 201: ScheduleSchema } },
  }, async (request, reply) => {
    const { name, ...spec } = request.body;
    const s = await schedules.create(requireTenant(request), name, spec, operatorOf(request));
    return reply.status(201).send(s);
  });

  app.patch('/schedules/:name', {
    config: { scope: 'orch:operate' },
    schema: { summary: 'Change a schedule (a new cron, interval, zone or start moves the next tick to the first after now)', tags, headers: TenantOperatorHeaders, params, body: UpdateBody, response: Responses },
  }, async (request) => schedules.update(requireTenant(request), request.params.name, request.body, operatorOf(request)));

  for (const action of ['pause', 'resume'] as const) {
    app.post(`/schedules/:name/${action}`, {
      config: { scope: 'orch:operate' },
      schema: {
        summary: action === 'pause' ? 'Stop ticking (no tick is counted missed while paused)' : 'Tick again from the next tick after now',
        tags, headers: TenantOperatorHeaders, params, response: Responses,
      },
    }, async (request) => schedules.setEnabled(requireTenant(request), request.params.name, action === 'resume', operatorOf(request)));
  }

  app.post('/schedules/:name/trigger', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Run the schedule\'s job once now (its ticks are unchanged)', tags, headers: TenantOperatorHeaders, params,
      response: { 200: Type.Object({ schedule: ScheduleSchema, jobId: JobId }), 400: ErrorBody, 404: ErrorBody },
    },
  }, async (request) => schedules.trigger(requireTenant(request), request.params.name, operatorOf(request)));

  app.delete('/schedules/:name', {
    config: { scope: 'orch:operate' },
    schema: { summary: 'Delete a schedule (the jobs it made stay)', tags, headers: TenantOperatorHeaders, params, response: Responses },
  }, async (request) => schedules.delete(requireTenant(request), request.params.name, operatorOf(request)));

  app.get('/watermarks', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Watermarks per tenant and job type: the end of the contiguous completed windows of its backfills and schedules', tags, headers: TenantHeaders,
      querystring: Type.Object({ jobType: Type.Optional(JobTypeName) }, { additionalProperties: false }),
      response: { 200: Type.Object({ watermarks: Type.Array(Type.Object({ tenantId: Type.String(), jobType: Type.String(), watermark: IsoTime, updatedAt: IsoTime })) }) },
    },
  }, async (request) => {
    const tenants = reachableTenants(request);
    const marks = await asTenantReader(ledger.pool, request.principal.tenants, (db) => listWatermarks(db, { jobType: request.query.jobType }));
    return { watermarks: tenants ? marks.filter((m) => tenants.includes(m.tenantId)) : marks };
  });
}
