import { createHash } from 'node:crypto';
import type { Queryable } from '../ledger/db.ts';
import type { JobState, TransitionCause } from '../ledger/types.ts';

/** Every event type the orchestrator emits (see schemas/orch.event.v1.json and docs/events.md). */
export const EVENT_TYPES = [
  'job.enqueued', 'job.leased', 'job.progress', 'job.succeeded', 'job.retry_scheduled', 'job.dead_lettered', 'job.canceled',
  'job.timed_out', 'job.replayed', 'lease.expired', 'lease.released', 'jobtype.paused', 'jobtype.resumed', 'quota.changed', 'dlq.cleared',
  'schedule.ticked', 'schedule.changed', 'backfill.progress', 'backfill.changed', 'watermark.advanced',
  'job.waiting', 'job.ready', 'workflow.started', 'workflow.finished',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The `orch.event.v1` envelope. */
export interface OrchEvent {
  schema: 'orch.event.v1';
  eventId: string;
  eventType: EventType;
  occurredAt: string;
  tenantId: string;
  correlationId: string | null;
  actor: { subject: string; scopes: string[] };
  job: { id: string; type: string; attempt: number; leaseId: string | null; status: JobState; reason: string | null } | null;
  /** Event-specific details: progress, the control changed, the error. */
  data: Record<string, unknown> | null;
  idempotencyKey: string;
}

/** Position of an event in the outbox: the row's (xid, seq) and the event's index in it. Sortable, and the SSE event id. */
export interface EventCursor { xid: string; seq: string; index: number }
export const formatCursor = (c: EventCursor) => `${c.xid}-${c.seq}-${c.index}`;
export function parseCursor(s: string): EventCursor | null {
  const m = /^(\d{1,20})-(\d{1,19})-(\d{1,9})$/.exec(s);
  // xid8 is unsigned 64-bit, seq a bigint: anything larger is no position of this stream
  if (!m || BigInt(m[1]!) > 2n ** 64n - 1n || BigInt(m[2]!) > 2n ** 63n - 1n) return null;
  return { xid: m[1]!, seq: m[2]!, index: Number(m[3]) };
}

/** A stored outbox row: a history batch to expand, or events written inline. */
export interface OutboxRow {
  xid: string;
  seq: string;
  tenant_id: string;
  batch_id: string | null;
  events: InlineEvent[] | null;
  at: Date;
}

/** An event stored inline (progress, operator controls); the envelope is completed on expansion. */
export interface InlineEvent {
  type: EventType;
  at: string;
  actor: string;
  jobId?: string;
  jobType?: string;
  attempt?: number;
  leaseId?: string | null;
  status?: JobState;
  correlationId?: string | null;
  target?: string;
  data?: Record<string, unknown>;
}

/** An event and where it sits in the outbox. */
export interface PositionedEvent { cursor: EventCursor; event: OrchEvent }

/**
 * A UUIDv7 made from the row's time and a hash of its position, so that
 * publishing the same event again yields the same id (JetStream's duplicate
 * window drops the copy) and ids still sort by time.
 */
function eventId(atMs: number, c: EventCursor): string {
  const h = createHash('sha256').update(formatCursor(c)).digest();
  const b = Buffer.alloc(16);
  b.writeUIntBE(atMs, 0, 6);
  h.copy(b, 6, 0, 10);
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  const x = b.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The event type of one job transition, from what made it (its cause) and where it went. */
export function transitionEventType(cause: TransitionCause, to: JobState): EventType {
  switch (cause) {
    case 'enqueued': case 'scheduled': case 'backfilled': return to === 'waiting' ? 'job.waiting' : 'job.enqueued';
    case 'replayed': return 'job.replayed';
    case 'dependencies_met': return 'job.ready';
    case 'dependency_failed': return 'job.canceled';
    case 'claimed': return 'job.leased';
    case 'dlq_cleared': return 'dlq.cleared';
    case 'lease_expired': return to === 'queued' ? 'lease.expired' : 'job.dead_lettered';
    case 'force_released': case 'worker_lost': case 'worker_released': return to === 'queued' ? 'lease.released' : 'job.dead_lettered';
    case 'worker_completed': return 'job.succeeded';
    case 'worker_failed': return to === 'failed' ? 'job.retry_scheduled' : 'job.dead_lettered';
    // its retry, rescheduled to now
    case 'operator_retried': return 'job.retry_scheduled';
    case 'operator_canceled': return 'job.canceled';
    case 'timed_out': return 'job.timed_out';
  }
}

/** Actors are "kind:subject" strings; operator actions carry the scopes of their token once tokens exist. */
const actorOf = (actor: string) => ({ subject: actor, scopes: [] as string[] });

interface TransitionEntry {
  batch_id: string; tenant_id: string; job_id: string; from_state: JobState | null; to_state: JobState; attempt: number; lease_id: string | null;
  actor: string; reason: string | null; cause: TransitionCause; error: { class?: string } | null; job_type: string; correlation_id: string | null; replay_of: string | null;
  n: number;
}

/**
 * One batch (one statement's transitions) can touch several tenants; each
 * tenant's outbox row names the batch and must expand to that tenant's
 * entries only, or one tenant's events show in another's stream.
 */
const batchKey = (batchId: string, tenantId: string) => `${batchId}/${tenantId}`;

/**
 * Expands outbox rows into events, in row order and, within a row, in the
 * order of its batch. One query reads every history batch the rows name
 * (with each entry's job type) and, through a partial index, the correlation
 * id and replay origin of the few jobs that have one.
 */
export async function expand(db: Queryable, rows: OutboxRow[]): Promise<PositionedEvent[]> {
  return [...await expandEach(db, rows)];
}

/**
 * The same events, each envelope made only when the iteration reaches it: a
 * drain's rows hold hundreds of thousands of events, and building them in one
 * go held the event loop for over a second (the leader missed its renewal).
 */
export async function expandEach(db: Queryable, rows: OutboxRow[]): Promise<Iterable<PositionedEvent>> {
  const batched = rows.filter((r) => r.batch_id !== null);
  const entries = new Map<string, TransitionEntry[]>();
  if (batched.length > 0) {
    const { rows: es } = await db.query<TransitionEntry>(
      `WITH e AS (
         SELECT t.batch_id, t.tenant_id, e.job_id, e.from_state, e.to_state, e.attempt, e.lease_id, t.actor, t.reason, t.cause, e.error, e.job_type, e.n
         FROM unnest($1::uuid[], $2::text[]) AS b(batch_id, tenant_id)
         JOIN orch.job_transitions t ON t.batch_id = b.batch_id AND t.tenant_id = b.tenant_id
         CROSS JOIN LATERAL unnest(t.job_ids, t.from_states, t.to_states, t.attempts, t.lease_ids, t.errors, t.job_types)
           WITH ORDINALITY AS e(job_id, from_state, to_state, attempt, lease_id, error, job_type, n)
       )
       SELECT e.batch_id, e.tenant_id, e.job_id, e.from_state, e.to_state, e.attempt, e.lease_id, e.actor, e.reason, e.cause, e.error, e.job_type, e.n,
              x.correlation_id, x.replay_of
       FROM e LEFT JOIN LATERAL (
         -- a probe of the partial index holding only jobs with a correlation id or a replay origin
         SELECT j.correlation_id, j.replay_of FROM orch.jobs j
         WHERE j.tenant_id = e.tenant_id AND j.id = e.job_id AND (j.correlation_id IS NOT NULL OR j.replay_of IS NOT NULL)
       ) x ON true`,
      [batched.map((r) => r.batch_id), batched.map((r) => r.tenant_id)]);
    for (const e of es) {
      const key = batchKey(e.batch_id, e.tenant_id);
      let list = entries.get(key);
      if (!list) entries.set(key, (list = []));
      list.push(e);
    }
  }
  return envelopes(rows, entries);
}

function* envelopes(rows: OutboxRow[], entries: Map<string, TransitionEntry[]>): Generator<PositionedEvent> {
  for (const r of rows) {
    const atMs = r.at.getTime();
    if (r.batch_id !== null) {
      const list = (entries.get(batchKey(r.batch_id, r.tenant_id)) ?? []).sort((a, b) => a.n - b.n);
      for (const [index, e] of list.entries()) {
        const cursor = { xid: r.xid, seq: r.seq, index };
        const type = transitionEventType(e.cause, e.to_state);
        yield {
          cursor,
          event: {
            schema: 'orch.event.v1', eventId: eventId(atMs, cursor), eventType: type, occurredAt: r.at.toISOString(), tenantId: r.tenant_id,
            correlationId: e.correlation_id, actor: actorOf(e.actor),
            job: { id: e.job_id, type: e.job_type, attempt: e.attempt, leaseId: e.lease_id, status: e.to_state, reason: e.reason },
            data: e.error ? { error: e.error, ...(e.replay_of ? { replayOf: e.replay_of } : {}) } : e.replay_of ? { replayOf: e.replay_of } : null,
            idempotencyKey: `orch-${type}-${e.job_id}-${e.attempt}`,
          },
        };
      }
      continue;
    }
    for (const [index, e] of (r.events ?? []).entries()) {
      const cursor = { xid: r.xid, seq: r.seq, index };
      const job = e.jobId !== undefined
        ? { id: e.jobId, type: e.jobType!, attempt: e.attempt ?? 0, leaseId: e.leaseId ?? null, status: e.status ?? 'leased', reason: null }
        : null;
      yield {
        cursor,
        event: {
          schema: 'orch.event.v1', eventId: eventId(atMs, cursor), eventType: e.type, occurredAt: e.at, tenantId: r.tenant_id,
          correlationId: e.correlationId ?? null, actor: actorOf(e.actor), job, data: { ...(e.target ? { target: e.target } : {}), ...e.data },
          idempotencyKey: job ? `orch-${e.type}-${job.id}-${job.attempt}` : `orch-${e.type}-${e.target ?? r.tenant_id}-${r.seq}`,
        },
      };
    }
  }
}

/**
 * Writes events that are no job transition (a schedule's tick, a backfill's
 * progress, a watermark) as one outbox row per tenant, in the caller's
 * transaction: they are published exactly when the change they report commits.
 */
export async function appendEvents(db: Queryable, events: (InlineEvent & { tenantId: string })[]): Promise<void> {
  const byTenant = new Map<string, InlineEvent[]>();
  for (const { tenantId, ...e } of events) {
    let list = byTenant.get(tenantId);
    if (!list) byTenant.set(tenantId, (list = []));
    list.push(e);
  }
  if (byTenant.size === 0) return;
  await db.query('INSERT INTO orch.outbox (tenant_id, events) SELECT * FROM unnest($1::text[], $2::jsonb[])',
    [[...byTenant.keys()], [...byTenant.values()].map((list) => JSON.stringify(list))]);
}

const ROW_COLUMNS = 'xid::text AS xid, seq::text AS seq, tenant_id, batch_id, events, at';

/**
 * Outbox rows after `after` (exclusive of that row: its later events are the
 * caller's to pick from the expansion), in (xid, seq) order, only from
 * transactions older than every running one, so none can appear behind the
 * cursor later. `pendingOnly` limits to rows JetStream has not acknowledged.
 */
export async function readOutbox(
  db: Queryable, opts: { after?: { xid: string; seq: string } | null; limit: number; pendingOnly?: boolean; tenantId?: string },
): Promise<OutboxRow[]> {
  const params: unknown[] = [opts.limit];
  const where = ['xid < pg_snapshot_xmin(pg_current_snapshot())'];
  if (opts.pendingOnly) where.push('published_at IS NULL');
  if (opts.after) where.push(`(xid, seq) >= ($${params.push(opts.after.xid)}::xid8, $${params.push(opts.after.seq)}::bigint)`);
  if (opts.tenantId !== undefined) where.push(`tenant_id IN ($${params.push(opts.tenantId)}, '*')`);
  const { rows } = await db.query<OutboxRow>(
    `SELECT ${ROW_COLUMNS} FROM orch.outbox WHERE ${where.join(' AND ')} ORDER BY xid, seq LIMIT $1`, params);
  return rows;
}
