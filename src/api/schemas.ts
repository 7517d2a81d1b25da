import { Type, type Static, type TLiteral, type TSchema, type TUnion } from 'typebox';
import { JOB_TYPE_PATTERN } from '../ledger/job-types.ts';
import { MAX_DEPENDENCIES, MAX_KEY_LENGTH, MAX_PRIORITY, TENANT_PATTERN } from '../ledger/validate.ts';
import { EDGE_POLICIES, TRANSITION_CAUSES, type TransitionCause } from '../ledger/types.ts';

/** Request and response shapes of the HTTP API; the OpenAPI document is generated from these. */

/** Body limit of a request carrying many jobs or results (a batch, acks, a workflow): 64 payloads' worth, at most 256 MiB. */
export const manyPayloadsLimit = (maxPayloadBytes: number) => Math.min(256 * 1024 * 1024, maxPayloadBytes * 64);

export const JobId = Type.String({ pattern: '^[1-9][0-9]{0,17}$', description: 'Job id (decimal string).' });
export const LeaseId = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
export const JobTypeName = Type.String({ pattern: JOB_TYPE_PATTERN });
export const WorkerId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._:@/-]*$' });
export const JobStateSchema = Type.Union([
  Type.Literal('queued'), Type.Literal('leased'), Type.Literal('succeeded'), Type.Literal('failed'),
  Type.Literal('dead_lettered'), Type.Literal('canceled'), Type.Literal('timed_out'), Type.Literal('cleared'), Type.Literal('waiting'),
]);
export const IsoTime = Type.String({ format: 'date-time' });
/** One of a list of strings (the const arrays of the domain modules), typed as their union. */
export const OneOf = <const T extends readonly string[]>(values: T, description?: string) =>
  Type.Union(values.map((v) => Type.Literal(v)), description ? { description } : {}) as unknown as TUnion<{ -readonly [K in keyof T]: TLiteral<T[K]> }>;
export const Uuid = Type.String({ format: 'uuid' });
/**
 * A value or null. Null first: the server's ajv coerces types, and with a number first it would
 * turn null into 0.
 */
export const Nullable = <T extends TSchema>(t: T) => Type.Union([Type.Null(), t]);
const NullableIso = Nullable(IsoTime);

export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    field: Type.Union([Type.String(), Type.Null()]),
  }),
});

export const EnqueueBody = Type.Object({
  jobType: JobTypeName,
  payload: Type.Optional(Type.Unknown()),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PRIORITY, description: 'Higher runs first.' })),
  runAfter: Type.Optional(IsoTime),
  delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 366 * 24 * 3600 * 1000 })),
  maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_KEY_LENGTH })),
  correlationId: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_KEY_LENGTH })),
  dependsOn: Type.Optional(Type.Array(Type.Union([JobId, Type.Object({
    jobId: JobId,
    onFailure: Type.Optional(OneOf(EDGE_POLICIES, 'When this parent ends dead-lettered, canceled or timed out: cancel this job (default), ignore it and run, or wait for a replay of the parent.')),
  }, { additionalProperties: false })]), {
    maxItems: MAX_DEPENDENCIES,
    description: 'Jobs of the same tenant this one waits for (state waiting) before it is queued: ids, or { jobId, onFailure }.',
  })),
}, {
  additionalProperties: false,
  examples: [{ jobType: 'send-invoice', payload: { invoiceId: 'inv-1042' }, priority: 5, maxAttempts: 5, idempotencyKey: 'invoice-inv-1042', correlationId: 'order-77' }],
});
export type EnqueueBody = Static<typeof EnqueueBody>;

export const EnqueuedRef = Type.Object({
  id: JobId, jobType: Type.String(), state: JobStateSchema, created: Type.Boolean(),
});

export const ErrorInfoSchema = Type.Object({
  class: Type.String({ minLength: 1, maxLength: 128 }),
  message: Type.String({ maxLength: 8192 }),
  retryable: Type.Optional(Type.Boolean({ description: 'false sends the job straight to the dead-letter state.' })),
  details: Type.Optional(Type.Unknown()),
}, { additionalProperties: false });

export const ArtifactSchema = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  uri: Type.String({ minLength: 1, maxLength: 2048 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
}, { additionalProperties: false });

export const JobSchema = Type.Object({
  id: JobId,
  tenantId: Type.String(),
  jobType: Type.String(),
  state: JobStateSchema,
  priority: Type.Integer(),
  payload: Type.Unknown(),
  runAfter: IsoTime,
  attempt: Type.Integer(),
  maxAttempts: Type.Integer(),
  idempotencyKey: Type.Union([Type.String(), Type.Null()]),
  correlationId: Type.Union([Type.String(), Type.Null()]),
  replayOf: Type.Union([Type.String(), Type.Null()]),
  leaseId: Type.Union([Type.String(), Type.Null()]),
  leaseUntil: NullableIso,
  workerId: Type.Union([Type.String(), Type.Null()]),
  heartbeatAt: NullableIso,
  startedAt: NullableIso,
  deadlineAt: NullableIso,
  progress: Type.Union([Type.Number(), Type.Null()]),
  progressMessage: Type.Union([Type.String(), Type.Null()]),
  result: Type.Unknown(),
  artifacts: Type.Union([Type.Array(ArtifactSchema), Type.Null()]),
  lastError: Type.Union([Type.Unknown(), Type.Null()]),
  createdAt: IsoTime,
  updatedAt: IsoTime,
  finishedAt: NullableIso,
  paused: Type.Boolean({ description: 'Queued but held back by a dispatch pause.' }),
  workflowId: Nullable(Uuid),
  stepName: Nullable(Type.String()),
  pendingParents: Type.Integer({ description: 'While waiting: the parents it still waits for.' }),
});

export const HistorySchema = Type.Object({
  at: IsoTime,
  from: Type.Union([JobStateSchema, Type.Null()]),
  to: JobStateSchema,
  attempt: Type.Integer(),
  leaseId: Type.Union([Type.String(), Type.Null()]),
  actor: Type.String(),
  cause: Type.Unsafe<TransitionCause>(Type.String({ enum: [...TRANSITION_CAUSES], description: 'What made the transition; reason is the note recorded with it.' })),
  reason: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([Type.Unknown(), Type.Null()]),
});

export const LeaseSchema = Type.Object({
  jobId: JobId,
  leaseId: LeaseId,
  leaseUntil: IsoTime,
  leaseMs: Type.Integer(),
  attempt: Type.Integer(),
  maxAttempts: Type.Integer(),
  idempotencyKey: Type.String(),
  tenantId: Type.String(),
  jobType: Type.String(),
  priority: Type.Integer(),
  payload: Type.Unknown(),
  correlationId: Type.Union([Type.String(), Type.Null()]),
  deadlineAt: NullableIso,
  parents: Type.Optional(Type.Record(Type.String(), Type.Unknown(), {
    description: 'For a job that waited for others: each parent\'s result by step name (job id outside a workflow); over 64 KiB each or 1 MiB in all, { truncated, jobId, bytes }.',
  })),
});

export const TenantId = Type.String({ pattern: TENANT_PATTERN });

export const ClaimBody = Type.Object({
  workerId: WorkerId,
  jobTypes: Type.Array(JobTypeName, { minItems: 1, maxItems: 100 }),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 1 })),
  waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 300_000, description: 'Long-poll: wait up to this long for work.' })),
  leaseMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 24 * 3600 * 1000 })),
  host: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9._:-]+$', description: 'Shown in the worker registry.' })),
  version: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._+-]+$', description: 'Worker version, shown in the worker registry.' })),
  express: Type.Optional(Type.Object({
    exceptTenants: Type.Array(TenantId, { maxItems: 1000, description: 'Tenants the worker\'s bulk claims already serve.' }),
  }, {
    additionalProperties: false,
    description: 'An express claim (a worker whose bulk claims come back full keeps one open): waits up to waitMs for jobs that become runnable in a tenant not in exceptTenants, then claims only those tenants\' jobs.',
  })),
}, { additionalProperties: false });

/** In batches, each item names its lease's tenant (a worker may serve several); it defaults to X-Tenant-Id. */
const LeaseRefProps = { tenantId: Type.Optional(TenantId), jobId: JobId, leaseId: LeaseId };
const Progress = Type.Number({ minimum: 0, maximum: 1 });
const ProgressMessage = Type.String({ maxLength: 1024 });

export const HeartbeatBody = Type.Object({
  leaseId: LeaseId,
  progress: Type.Optional(Progress),
  message: Type.Optional(ProgressMessage),
}, { additionalProperties: false });

export const HeartbeatsBody = Type.Object({
  leases: Type.Array(Type.Object({ ...LeaseRefProps, progress: Type.Optional(Progress), message: Type.Optional(ProgressMessage) }, { additionalProperties: false }), { minItems: 1, maxItems: 10_000 }),
}, { additionalProperties: false });

export const CompleteBody = Type.Object({
  leaseId: LeaseId,
  result: Type.Optional(Type.Unknown()),
  artifacts: Type.Optional(Type.Array(ArtifactSchema, { maxItems: 1000 })),
}, { additionalProperties: false });

export const FailBody = Type.Object({
  leaseId: LeaseId,
  error: ErrorInfoSchema,
}, { additionalProperties: false });

export const AckItem = Type.Union([
  Type.Object({
    ...LeaseRefProps, outcome: Type.Literal('succeeded'),
    result: Type.Optional(Type.Unknown()), artifacts: Type.Optional(Type.Array(ArtifactSchema, { maxItems: 1000 })),
  }, { additionalProperties: false }),
  Type.Object({ ...LeaseRefProps, outcome: Type.Literal('failed'), error: ErrorInfoSchema }, { additionalProperties: false }),
]);
export const AcksBody = Type.Object({ acks: Type.Array(AckItem, { minItems: 1, maxItems: 10_000 }) }, { additionalProperties: false });

export const AckOutcomeSchema = Type.Object({
  jobId: Type.String(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('duplicate'), Type.Literal('refused')]),
  state: Type.Union([JobStateSchema, Type.Null()]),
  reason: Type.Optional(Type.String()),
});

export const HeartbeatOutcomeSchema = Type.Object({
  jobId: Type.String(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('refused')]),
  leaseUntil: Type.Optional(IsoTime),
  reason: Type.Optional(Type.String()),
  state: Type.Optional(Type.Union([JobStateSchema, Type.Null()])),
});

export const JobTypeSettingsBody = Type.Object({
  maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  backoffBaseMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600 * 1000 })),
  backoffMaxMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 24 * 3600 * 1000 })),
  backoffJitter: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  leaseMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 24 * 3600 * 1000 })),
  timeoutMs: Type.Optional(Type.Union([Type.Integer({ minimum: 1000, maximum: 30 * 24 * 3600 * 1000 }), Type.Null()])),
}, { additionalProperties: false });

export const JobTypeSchema = Type.Object({
  name: Type.String(),
  maxAttempts: Type.Integer(),
  backoffBaseMs: Type.Integer(),
  backoffMaxMs: Type.Integer(),
  backoffJitter: Type.Number(),
  leaseMs: Type.Integer(),
  timeoutMs: Type.Union([Type.Integer(), Type.Null()]),
  implicit: Type.Boolean(),
  createdAt: IsoTime,
  updatedAt: IsoTime,
});

export const OperatorHeaders = Type.Object({
  'x-operator-reason': Type.Optional(Type.String({ description: 'Required: why (at most 256 characters).' })),
  'x-operator-ticket': Type.Optional(Type.String({ description: 'Ticket reference (at most 128 characters); required for quota and backfill actions.' })),
});
export const TenantHeaders = Type.Object({ 'x-tenant-id': Type.Optional(Type.String({ description: 'Tenant (or X-Stella-Tenant).' })) });
/** The tenant an operator acts for, and why. */
export const TenantOperatorHeaders = Type.Object({ ...TenantHeaders.properties, ...OperatorHeaders.properties });

const anyOr = (pattern: string) => `^(?:\\*|${pattern.slice(1, -1)})$`;
/** A quota's scope: a tenant or "*" (every tenant together), a job type or "*". */
export const QuotaScope = Type.Object({
  tenantId: Type.String({ pattern: anyOr(TENANT_PATTERN), description: 'Tenant, or "*" for all tenants together.' }),
  jobType: Type.String({ pattern: anyOr(JOB_TYPE_PATTERN), description: 'Job type, or "*" for all job types together.' }),
});
