import { Type } from 'typebox';
import { runOperatorAction } from '../../audit/operator-action.ts';
import { listBlockingLocks, listLeases } from '../../recovery/leases.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { operatorOf } from '../operator.ts';
import { asTenantReader } from '../../auth/tenant-scope.ts';
import { ErrorBody, IsoTime, JobId, JobTypeName, LeaseId, Nullable, OperatorHeaders, WorkerId } from '../schemas.ts';
import { reachableTenants, requireTenant } from '../tenant.ts';

/** Most leases one force release takes. */
const MAX_RELEASE = 10_000;

const LeaseView = Type.Object({
  jobId: JobId, tenantId: Type.String(), jobType: Type.String(), leaseId: Type.String(), workerId: Nullable(Type.String()),
  attempt: Type.Integer(), startedAt: IsoTime, leaseUntil: IsoTime, ageSeconds: Type.Number(), heartbeatAgeSeconds: Type.Number(),
  progress: Nullable(Type.Number()), progressMessage: Nullable(Type.String()), stuck: Type.Boolean(),
});
const LockView = Type.Object({
  pid: Type.Integer(), role: Type.String(), blockedBy: Type.Array(Type.Integer()), state: Nullable(Type.String()),
  waitEvent: Nullable(Type.String()), transactionSeconds: Nullable(Type.Number()), application: Nullable(Type.String()),
  relations: Type.Array(Type.String()), query: Nullable(Type.String()),
});
const WorkerView = Type.Object({
  workerId: Type.String(), tenantId: Type.String({ description: 'The tenant it claims for; "*" for a worker claiming for every tenant.' }),
  host: Nullable(Type.String()), version: Nullable(Type.String()), jobTypes: Type.Array(Type.String()),
  firstSeen: IsoTime, lastSeen: IsoTime, silentSeconds: Type.Number(),
  status: Type.Union([Type.Literal('active'), Type.Literal('stopped'), Type.Literal('lost')]),
  lostAt: Nullable(IsoTime), stoppedAt: Nullable(IsoTime), inFlight: Type.Integer(),
});

/** Leases (stuck first, with the PostgreSQL locks that block the ledger), force release, and the worker registry. */
export function leaseRoutes(app: App, ctx: ApiContext): void {
  const { ledger, config } = ctx;

  app.get('/leases', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Active leases, stuck ones first, and the PostgreSQL lock waits on the ledger', tags: ['leases'],
      querystring: Type.Object({
        jobType: Type.Optional(JobTypeName),
        workerId: Type.Optional(WorkerId),
        stuckAfterMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 24 * 3600 * 1000, description: 'Default ORCH_LEASE_STUCK_AFTER_MS.' })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 100 })),
      }, { additionalProperties: false }),
      response: {
        200: Type.Object({ leases: Type.Array(LeaseView), stuck: Type.Integer(), stuckAfterMs: Type.Integer(), locks: Type.Array(LockView) }),
        400: ErrorBody,
      },
    },
  }, async (request) => {
    const q = request.query;
    const stuckAfterMs = q.stuckAfterMs ?? config.leaseStuckAfterMs;
    const [leases, locks] = await Promise.all([
      asTenantReader(ledger.pool, request.principal.tenants, (db) => listLeases(db, { tenantId: requireTenant(request), jobType: q.jobType, workerId: q.workerId, stuckAfterMs, limit: q.limit ?? 100 })),
      listBlockingLocks(ledger.pool),
    ]);
    return { leases, stuck: leases.filter((l) => l.stuck).length, stuckAfterMs, locks };
  });

  app.post('/leases/release', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Force release leases: the jobs go back to the queue (or dead-letter when attempts are spent)', tags: ['leases'], headers: OperatorHeaders,
      description: 'Select by leaseIds, jobIds, workerIds and/or stuck (heartbeat older than stuckAfterMs); a lease matching any is released. '
        + 'Needs X-Operator-Reason, recorded in each job\'s history and the audit log. The old holder\'s late ack or heartbeat is refused.',
      body: Type.Object({
        leaseIds: Type.Optional(Type.Array(LeaseId, { minItems: 1, maxItems: MAX_RELEASE })),
        jobIds: Type.Optional(Type.Array(JobId, { minItems: 1, maxItems: MAX_RELEASE })),
        workerIds: Type.Optional(Type.Array(WorkerId, { minItems: 1, maxItems: 1000 })),
        stuck: Type.Optional(Type.Boolean()),
        stuckAfterMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 24 * 3600 * 1000 })),
      }, { additionalProperties: false }),
      response: {
        200: Type.Object({ released: Type.Integer(), jobs: Type.Array(Type.Object({ jobId: JobId, jobType: Type.String(), state: Type.String() })) }),
        400: ErrorBody,
      },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const b = request.body;
    if (!b.leaseIds && !b.jobIds && !b.workerIds && !b.stuck) {
      throw new ApiError(400, 'invalid', 'body', 'select leases: give leaseIds, jobIds, workerIds or stuck: true');
    }
    if (b.stuckAfterMs !== undefined && !b.stuck) throw new ApiError(400, 'invalid', 'stuckAfterMs', 'stuckAfterMs needs stuck: true');
    const op = operatorOf(request);
    const records = await runOperatorAction(ledger.pool, op, { action: 'lease.release', tenantId, target: 'leases' }, async (tx) => {
      const taken = await ledger.forceRelease({
        tenantId, leaseIds: b.leaseIds, jobIds: b.jobIds, workerIds: b.workerIds,
        stuckAfterMs: b.stuck ? b.stuckAfterMs ?? config.leaseStuckAfterMs : undefined,
      }, MAX_RELEASE, op.actor, op.reason, 'force_released', tx);
      const selector = { leaseIds: b.leaseIds?.length, jobIds: b.jobIds?.length, workerIds: b.workerIds, stuck: b.stuck ?? false };
      return { result: taken, details: { selector, released: taken.length } };
    });
    return { released: records.length, jobs: records.map((r) => ({ jobId: r.jobId, jobType: r.jobType, state: r.to })) };
  });

  app.get('/workers', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Workers seen: job types, host, version, last heartbeat, leases held; lost ones marked', tags: ['workers'],
      response: { 200: Type.Object({ workers: Type.Array(WorkerView), lostAfterMs: Type.Integer() }), 400: ErrorBody },
    },
  }, async (request) => {
    const tenants = reachableTenants(request);
    const workers = await asTenantReader(ledger.pool, tenants ?? '*', (db) => ledger.workers.list(db, tenants));
    return { workers, lostAfterMs: config.workerLostAfterMs };
  });

  app.post('/workers/:workerId/stopped', {
    config: { scope: 'orch:worker' },
    schema: {
      summary: 'A worker says it stopped (its leases handed back): shown as stopped, never reported lost', tags: ['workers'],
      params: Type.Object({ workerId: WorkerId }),
      response: { 200: Type.Object({ stopped: Type.Integer({ description: 'Registry records marked stopped.' }) }), 400: ErrorBody },
    },
  }, async (request) => ({ stopped: await ledger.workers.stopped(request.params.workerId, reachableTenants(request)) }));
}
