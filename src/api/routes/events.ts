import { Type } from 'typebox';
import { EVENT_TYPES, parseCursor } from '../../events/envelope.ts';
import type { ApiContext, App } from '../context.ts';
import { ApiError } from '../errors.ts';
import { ErrorBody, JobId, JobTypeName } from '../schemas.ts';
import { requireTenant } from '../tenant.ts';

/** The live event stream (Server-Sent Events) of the caller's tenant. */
export function eventRoutes(app: App, ctx: ApiContext): void {
  app.get('/stream', {
    config: { scope: 'orch:read' },
    schema: {
      summary: 'Live events (Server-Sent Events), resumable with Last-Event-ID', tags: ['events'],
      description: 'Each SSE message: id = the event\'s outbox position, event = its type, data = the orch.event.v1 envelope. '
        + 'Reconnect with Last-Event-ID to receive what was missed (within ORCH_OUTBOX_RETENTION_MS). Comment lines every ORCH_SSE_HEARTBEAT_MS.',
      querystring: Type.Object({
        jobType: Type.Optional(JobTypeName),
        jobId: Type.Optional(JobId),
        eventType: Type.Optional(Type.Array(Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))), { maxItems: EVENT_TYPES.length })),
      }, { additionalProperties: false }),
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 64 })) }),
      produces: ['text/event-stream'],
      response: { 400: ErrorBody },
    },
  }, async (request, reply) => {
    const tenantId = requireTenant(request);
    const last = request.headers['last-event-id'];
    const from = typeof last === 'string' && last !== '' ? parseCursor(last) : null;
    if (typeof last === 'string' && last !== '' && !from) throw new ApiError(400, 'invalid', 'Last-Event-ID', 'Last-Event-ID is not an event id of this stream');
    const q = request.query;
    reply.hijack();
    await ctx.events.stream.serve(reply.raw, { tenantId, jobType: q.jobType, jobId: q.jobId, eventTypes: q.eventType }, from);
  });
}
