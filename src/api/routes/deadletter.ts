import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { Type, type Static } from 'typebox';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { operatorOf } from '../operator.ts';
import { ErrorBody, HistorySchema, IsoTime, JobId, JobSchema, JobTypeName, Nullable, OperatorHeaders, Uuid } from '../schemas.ts';
import { requireTenant } from '../tenant.ts';
import { actorOf } from '../../auth/principal.ts';
import type { ReplaySelection } from '../../recovery/replays.ts';
import { REPLAYABLE_STATES } from '../../ledger/types.ts';

const tags = ['deadletter'];
const JobIds = Type.Array(JobId, { minItems: 1, maxItems: 100_000 });
const MAX_MESSAGE = 128;

const Filter = Type.Object({
  jobType: Type.Optional(JobTypeName),
  errorClass: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_MESSAGE })),
  since: Type.Optional(IsoTime),
  until: Type.Optional(IsoTime),
}, { additionalProperties: false });
type Filter = Static<typeof Filter>;

const TypeStats = Type.Object({ jobType: Type.String(), depth: Type.Integer(), oldestAt: Nullable(IsoTime) });
const Cluster = Type.Object({
  jobType: Type.String(), errorClass: Type.String(), message: Type.String({ description: 'Normalised: ids, numbers and hex replaced by <id>, <n>, <hex>.' }),
  count: Type.Integer(), firstSeen: IsoTime, lastSeen: IsoTime,
});
const Stats = Type.Object({
  tenantId: Type.String(), depth: Type.Integer(), oldestAt: Nullable(IsoTime), byJobType: Type.Array(TypeStats), clusters: Type.Array(Cluster),
});
const Manifest = Type.Object({
  id: Uuid, tenantId: Type.String(), filter: Type.Unknown(), entries: Type.Integer(), bytes: Type.Integer(),
  sha256: Type.String(), actor: Type.String(), createdAt: IsoTime,
});
const Replay = Type.Object({
  id: Uuid, tenantId: Type.String(), selection: Type.Unknown(), state: Type.String(), total: Type.Integer(), done: Type.Integer(),
  created: Type.Integer(), skipped: Type.Integer(), priority: Nullable(Type.Integer()), actor: Type.String(), reason: Type.String(),
  createdAt: IsoTime, finishedAt: Nullable(IsoTime),
});
const ReplayBody = Type.Object({
  jobIds: Type.Optional(JobIds),
  filter: Type.Optional(Filter),
  snapshotId: Type.Optional(Uuid),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'Priority of the new jobs; default: the original\'s plus one.' })),
}, { additionalProperties: false });

/** A time range must run forwards: a filter the database would accept but that can select nothing is the client's mistake. */
function checkRange(f: Filter | undefined, prefix = ''): void {
  if (f?.since !== undefined && f.until !== undefined && Date.parse(f.since) >= Date.parse(f.until)) {
    throw new ApiError(400, 'invalid', `${prefix}until`, 'until must be after since');
  }
}

/** The dead-letter queue: stats and clusters, listing, snapshots, clear-after-snapshot, replay. */
export function deadLetterRoutes(app: App, ctx: ApiContext): void {
  const { deadLetters, snapshots, replays, nudgeReplays } = ctx.recovery;

  app.get('/deadletter/stats', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'DLQ depth per job type, oldest entry, top error clusters', tags,
      querystring: Type.Object({ clusters: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 20 })) }, { additionalProperties: false }),
      response: { 200: Stats, 400: ErrorBody },
    },
  }, async (request) => deadLetters.stats(requireTenant(request), request.query.clusters ?? 20));

  app.get('/deadletter/summary', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'One line per job type: depth, oldest entry, its largest error cluster', tags,
      response: {
        200: Type.Object({
          tenantId: Type.String(), depth: Type.Integer(), oldestAt: Nullable(IsoTime),
          jobTypes: Type.Array(Type.Object({ ...TypeStats.properties, topCluster: Nullable(Cluster) })),
        }),
        400: ErrorBody,
      },
    },
  }, async (request) => {
    const s = await deadLetters.stats(requireTenant(request), 1000);
    return {
      tenantId: s.tenantId, depth: s.depth, oldestAt: s.oldestAt,
      jobTypes: s.byJobType.map((t) => ({ ...t, topCluster: s.clusters.find((c) => c.jobType === t.jobType) ?? null })),
    };
  });

  app.get('/deadletter', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Dead-lettered jobs, newest first', tags,
      querystring: Type.Object({
        ...Filter.properties,
        cursor: Type.Optional(JobId),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
      }, { additionalProperties: false }),
      response: {
        200: Type.Object({ entries: Type.Array(Type.Object({ job: JobSchema, replayJobId: Nullable(JobId) })), nextCursor: Nullable(JobId) }),
        400: ErrorBody,
      },
    },
  }, async (request) => {
    const { limit, ...f } = request.query;
    checkRange(f);
    return deadLetters.list(requireTenant(request), { ...f, limit: limit ?? 50 });
  });

  app.post('/deadletter/snapshots', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Snapshot dead letters (job, payload, history, last error) as NDJSON with a manifest', tags,
      description: 'Returns the manifest; download the file from /deadletter/snapshots/{id}/download. The same entries always give the same bytes.',
      body: Type.Object({ ...Filter.properties, jobIds: Type.Optional(JobIds) }, { additionalProperties: false }),
      response: { 201: Manifest, 400: ErrorBody },
    },
  }, async (request, reply) => {
    checkRange(request.body);
    const manifest = await snapshots.create(requireTenant(request), request.body, { actor: actorOf(request.principal), reason: null, ticket: null, requestId: request.id });
    return reply.status(201).send(manifest);
  });

  app.get('/deadletter/snapshots', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Snapshots, newest first', tags,
      querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ snapshots: Type.Array(Manifest) }), 400: ErrorBody },
    },
  }, async (request) => ({ snapshots: await snapshots.list(requireTenant(request), request.query.limit ?? 50) }));

  app.get('/deadletter/snapshots/:snapshotId', {
    config: { scope: 'orch:read' },
    schema: { summary: 'A snapshot\'s manifest', tags, params: Type.Object({ snapshotId: Uuid }), response: { 200: Manifest, 400: ErrorBody, 404: ErrorBody } },
  }, async (request) => snapshots.get(requireTenant(request), request.params.snapshotId));

  app.get('/deadletter/snapshots/:snapshotId/download', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'A snapshot\'s NDJSON file (one dead letter per line)', tags, params: Type.Object({ snapshotId: Uuid }),
      produces: ['application/x-ndjson'], response: { 200: Type.String({ description: 'NDJSON' }), 400: ErrorBody, 404: ErrorBody },
    },
  }, async (request, reply) => {
    const tenantId = requireTenant(request);
    const manifest = await snapshots.get(tenantId, request.params.snapshotId);
    // A stream is sent as it is (no serialisation); the type provider only knows the JSON bodies.
    return (reply as FastifyReply)
      .header('content-type', 'application/x-ndjson')
      .header('content-disposition', `attachment; filename="dlq-snapshot-${manifest.id}.ndjson"`)
      .header('x-snapshot-sha256', manifest.sha256)
      .send(Readable.from(snapshots.download(tenantId, manifest.id)));
  });

  app.post('/deadletter/clear', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Remove from the DLQ the entries a snapshot holds (all, or the given ones); nothing else', tags, headers: OperatorHeaders,
      description: 'Needs X-Operator-Reason; recorded in the audit log and each job\'s history. Cleared jobs keep their rows and history (state cleared).',
      body: Type.Object({ snapshotId: Uuid, jobIds: Type.Optional(JobIds) }, { additionalProperties: false }),
      response: {
        200: Type.Object({ snapshotId: Uuid, cleared: Type.Integer(), alreadyGone: Type.Integer(), notInSnapshot: Type.Array(JobId) }),
        400: ErrorBody, 404: ErrorBody,
      },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const op = operatorOf(request);
    return snapshots.clear(tenantId, request.body.snapshotId, request.body.jobIds, op);
  });

  app.post('/deadletter/replay', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Replay jobs as new jobs (by ids, by DLQ filter, or by snapshot id)', tags, headers: OperatorHeaders, body: ReplayBody,
      description: 'Give exactly one of jobIds, filter, snapshotId. Each job is replayed at most once, ever. '
        + 'A replay of up to ORCH_REPLAY_BATCH_SIZE jobs finishes in the request (200); larger ones run in the background (202): follow /deadletter/replays/{id}.',
      response: { 200: Replay, 202: Replay, 400: ErrorBody, 404: ErrorBody },
    },
  }, async (request, reply) => {
    const tenantId = requireTenant(request);
    const { jobIds, filter, snapshotId, priority } = request.body;
    const given = [jobIds && { jobIds }, filter && { filter }, snapshotId && { snapshotId }].filter((s) => s !== undefined);
    if (given.length !== 1) throw new ApiError(400, 'invalid', 'body', 'give exactly one of jobIds, filter, snapshotId');
    checkRange(filter, 'filter.');
    const op = operatorOf(request);
    const { replay } = await replays.create(tenantId, given[0] as ReplaySelection, priority ?? null, op);
    if (replay.state === 'done') return reply.status(200).send(replay);
    nudgeReplays();
    return reply.status(202).send(replay);
  });

  app.get('/deadletter/replays', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Replays, newest first', tags,
      querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ replays: Type.Array(Replay) }), 400: ErrorBody },
    },
  }, async (request) => ({ replays: await replays.list(requireTenant(request), request.query.limit ?? 50) }));

  app.get('/deadletter/replays/:replayId', {
    config: { scope: 'orch:read' },
    schema: { summary: 'A replay\'s progress', tags, params: Type.Object({ replayId: Uuid }), response: { 200: Replay, 400: ErrorBody, 404: ErrorBody } },
  }, async (request) => replays.get(requireTenant(request), request.params.replayId));

  app.post('/jobs/:jobId/replay', {
    config: { scope: 'orch:operate' },
    schema: {
      summary: 'Replay one ended job (dead-lettered, cleared, canceled or timed out) as a new job', tags: ['jobs'], headers: OperatorHeaders,
      description: 'Idempotent: replaying a job again returns the job its first replay created (200 both times).',
      params: Type.Object({ jobId: JobId }),
      body: Type.Optional(Type.Object({ priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })) }, { additionalProperties: false })),
      response: {
        200: Type.Object({ status: Type.String(), job: JobSchema, history: Type.Array(HistorySchema) }),
        400: ErrorBody, 404: ErrorBody, 409: ErrorBody,
      },
    },
  }, async (request) => {
    const tenantId = requireTenant(request);
    const op = operatorOf(request);
    const { jobId } = request.params;
    // Checked first so that a refused request leaves no replay record or audit entry behind.
    const original = await ctx.ledger.getJob(tenantId, jobId);
    if (!original) throw new ApiError(404, 'not_found', 'jobId', `job ${jobId} not found`);
    const notReplayable = (state: string) =>
      new ApiError(409, 'conflict', 'jobId', `job ${jobId} is ${state}; only dead-lettered, cleared, canceled or timed-out jobs can be replayed`);
    if (!(REPLAYABLE_STATES as readonly string[]).includes(original.state)) throw notReplayable(original.state);
    const outcome = (await replays.create(tenantId, { jobIds: [jobId] }, request.body?.priority ?? null, op)).outcomes?.[0];
    if (!outcome || outcome.status === 'not_found') throw new ApiError(404, 'not_found', 'jobId', `job ${jobId} not found`);
    if (outcome.status === 'not_replayable') throw notReplayable(outcome.state);
    const job = (await ctx.ledger.getJob(tenantId, outcome.replayJobId))!;
    return { status: outcome.status, job, history: await ctx.ledger.getHistory(tenantId, job.id) };
  });
}
