import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AckOutcome, CompleteInput, FailInput, HeartbeatOutcome } from '../../ledger/types.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import {
  AckOutcomeSchema, AcksBody, ClaimBody, CompleteBody, ErrorBody, FailBody, HeartbeatBody, HeartbeatOutcomeSchema,
  HeartbeatsBody, JobId, LeaseId, LeaseSchema, manyPayloadsLimit, TenantId,
} from '../schemas.ts';
import { authorizeTenant, optionalTenant, reachableTenants, requireTenant } from '../tenant.ts';
import { ackActorOf, allowsJobType } from '../../auth/principal.ts';

const JobParams = Type.Object({ jobId: JobId });
const AckResponse = Type.Object({ jobId: Type.String(), status: Type.String(), state: Type.Union([Type.String(), Type.Null()]) });

/** A refused single ack or heartbeat becomes 404 or 409, with the reason as the error code. */
function refuse(outcome: AckOutcome | HeartbeatOutcome): never {
  if (outcome.status !== 'refused') throw new Error('refuse called on an applied outcome');
  if (outcome.reason === 'not_found') throw new ApiError(404, 'not_found', 'jobId', `job ${outcome.jobId} not found`);
  throw new ApiError(409, outcome.reason, 'leaseId', `lease refused: ${outcome.reason.replace('_', ' ')} (job is ${outcome.state})`);
}

/** A batch item's tenant: its own tenantId, else the request's X-Tenant-Id. */
function itemTenant(request: FastifyRequest, list: string) {
  const fallback = optionalTenant(request);
  return (own: string | undefined, i: number): string => {
    const tenant = own ?? fallback;
    if (tenant === undefined) throw new ApiError(400, 'tenant_required', `${list}[${i}].tenantId`, `${list}[${i}] names no tenant: give tenantId or X-Tenant-Id`);
    return authorizeTenant(request, tenant);
  };
}

function single(outcome: AckOutcome) {
  if (outcome.status === 'refused') refuse(outcome);
  return { jobId: outcome.jobId, status: outcome.status, state: outcome.state };
}

/**
 * The worker bridge: claim, heartbeat, complete, fail, and their batch forms.
 * A lease id is unguessable and names exactly one attempt, so it is what
 * authorises an ack here; a stale one is refused with 409 and changes nothing.
 */
export function bridgeRoutes(app: App, ctx: ApiContext): void {
  const { ledger, dispatcher, config } = ctx;

  app.post('/claim', {
    config: { scope: 'orch:worker' },
    schema: {
      summary: 'Claim up to `limit` jobs of the given types, long-polling up to `waitMs`', tags: ['workers'],
      body: ClaimBody,
      response: { 200: Type.Object({ leases: Type.Array(LeaseSchema) }), 400: ErrorBody },
    },
  }, async (request, reply) => {
    const b = request.body;
    const denied = b.jobTypes.find((t) => !allowsJobType(request.principal, t));
    if (denied !== undefined) throw new ApiError(403, 'forbidden', 'jobTypes', `this token may not claim ${denied} jobs`);
    // Stop waiting when the client goes away ("close" on the request fires once its body is read, so watch the response).
    const ac = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableEnded) ac.abort();
    });
    const leases = await dispatcher.claim(
      { workerId: b.workerId, jobTypes: b.jobTypes, limit: b.limit ?? 1, tenantIds: reachableTenants(request), leaseMs: b.leaseMs, host: b.host, version: b.version },
      Math.min(b.waitMs ?? 0, config.maxClaimWaitMs),
      ac.signal,
      b.express,
    );
    return { leases };
  });

  app.post('/jobs/:jobId/heartbeat', {
    config: { scope: 'orch:worker' },
    schema: {
      summary: 'Renew a lease and report progress', tags: ['workers'], params: JobParams, body: HeartbeatBody,
      response: { 200: Type.Object({ jobId: Type.String(), leaseUntil: Type.String() }), 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
    },
  }, async (request) => {
    const [o] = await ledger.heartbeat([{ tenantId: requireTenant(request), jobId: request.params.jobId, ...request.body }]);
    if (o!.status !== 'ok') refuse(o!);
    return { jobId: o!.jobId, leaseUntil: o!.leaseUntil };
  });

  app.post('/jobs/:jobId/complete', {
    config: { scope: 'orch:worker' },
    bodyLimit: config.maxPayloadBytes + 64 * 1024,
    schema: {
      summary: 'Ack success, with a result and artifact references', tags: ['workers'], params: JobParams, body: CompleteBody,
      response: { 200: AckResponse, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
    },
  }, async (request) => {
    const b = request.body;
    const [o] = await ledger.complete([{ tenantId: requireTenant(request), jobId: request.params.jobId, leaseId: b.leaseId, result: b.result, artifacts: b.artifacts }], ackActorOf(request.principal));
    return single(o!);
  });

  app.post('/jobs/:jobId/fail', {
    config: { scope: 'orch:worker' },
    schema: {
      summary: 'Ack failure; retryable failures retry with backoff until attempts are spent', tags: ['workers'],
      params: JobParams, body: FailBody,
      response: { 200: AckResponse, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
    },
  }, async (request) => {
    const [o] = await ledger.fail([{ tenantId: requireTenant(request), jobId: request.params.jobId, leaseId: request.body.leaseId, error: request.body.error }], ackActorOf(request.principal));
    return single(o!);
  });

  app.post('/acks', {
    config: { scope: 'orch:worker' },
    bodyLimit: manyPayloadsLimit(config.maxPayloadBytes),
    schema: {
      summary: 'Ack many leases in one request; each gets its own outcome', tags: ['workers'], body: AcksBody,
      response: { 200: Type.Object({ results: Type.Array(AckOutcomeSchema) }), 400: ErrorBody },
    },
  }, async (request) => {
    const acks = request.body.acks;
    const tenantOf = itemTenant(request, 'acks');
    const completes: CompleteInput[] = [];
    const fails: FailInput[] = [];
    acks.forEach((a, i) => {
      const tenantId = tenantOf(a.tenantId, i);
      if (a.outcome === 'succeeded') completes.push({ tenantId, jobId: a.jobId, leaseId: a.leaseId, result: a.result, artifacts: a.artifacts });
      else fails.push({ tenantId, jobId: a.jobId, leaseId: a.leaseId, error: a.error });
    });
    const [c, f] = await Promise.all([ledger.complete(completes, ackActorOf(request.principal)), ledger.fail(fails, ackActorOf(request.principal))]);
    // Answer in request order: each statement returns its outcomes in its input order.
    let ci = 0;
    let fi = 0;
    return { results: acks.map((a) => (a.outcome === 'succeeded' ? c[ci++]! : f[fi++]!)) };
  });

  app.post('/releases', {
    config: { scope: 'orch:worker' },
    schema: {
      summary: 'Hand back leases the worker will not run (e.g. on shutdown); the attempt is not counted', tags: ['workers'],
      body: Type.Object({ leases: Type.Array(Type.Object({ tenantId: Type.Optional(TenantId), jobId: JobId, leaseId: LeaseId }, { additionalProperties: false }), { minItems: 1, maxItems: 10_000 }) }, { additionalProperties: false }),
      response: { 200: Type.Object({ results: Type.Array(AckOutcomeSchema) }), 400: ErrorBody },
    },
  }, async (request) => {
    const tenantOf = itemTenant(request, 'leases');
    return { results: await ledger.release(request.body.leases.map((l, i) => ({ ...l, tenantId: tenantOf(l.tenantId, i) })), ackActorOf(request.principal)) };
  });

  app.post('/heartbeats', {
    config: { scope: 'orch:worker' },
    schema: {
      summary: 'Renew many leases in one request', tags: ['workers'], body: HeartbeatsBody,
      response: { 200: Type.Object({ results: Type.Array(HeartbeatOutcomeSchema) }), 400: ErrorBody },
    },
  }, async (request) => {
    const tenantOf = itemTenant(request, 'leases');
    return { results: await ledger.heartbeat(request.body.leases.map((l, i) => ({ ...l, tenantId: tenantOf(l.tenantId, i) }))) };
  });
}
