import { randomUUID } from 'node:crypto';
import { notifyRunnable } from '../channel.ts';
import { prepared, type Queryable } from '../db.ts';
import { recordTransitions } from './history.ts';
import type { Actor, EnqueueCause, EnqueueResult, JobState } from '../types.ts';
import type { PreparedJob } from '../validate.ts';

const RETURNED = 'id, tenant_id, job_type, idempotency_key, state';
interface EnqueuedRow { id: string; tenant_id: string; job_type: string; idempotency_key: string | null; state: JobState }

/** A job of a graph (dependencies, a workflow's step) starts waiting or queued as depend.ts decided; others queued. */
const GRAPH_COLUMNS = 'state, pending_parents, dependents, has_parents, workflow_id, step_name';
const GRAPH_VALUES = "coalesce(i.state, 'queued'), coalesce(i.pending_parents, 0), coalesce(i.dependents, 0), coalesce(i.has_parents, false), i.workflow_id, i.step_name";


/**
 * (none) -> queued, for a batch, in one statement: jobs, their first history
 * row and the wake-up notification commit together or not at all. A job whose
 * idempotency key already exists for its tenant and type is not inserted; the
 * existing job is returned with created=false.
 */
const enqueueStatement = prepared('enqueue', `
WITH input AS (
  SELECT * FROM json_to_recordset($1::json) AS i(
    tenant_id text, job_type text, payload jsonb, priority integer, run_after timestamptz,
    max_attempts integer, idempotency_key text, correlation_id text, ord bigint,
    state orch.job_state, pending_parents integer, dependents integer, has_parents boolean, workflow_id uuid, step_name text)
), types AS (
  SELECT name, max_attempts FROM orch.job_types WHERE name IN (SELECT DISTINCT job_type FROM input)
), plain AS (
  -- Jobs without an idempotency key cannot conflict: a plain insert skips speculative insertion.
  INSERT INTO orch.jobs (tenant_id, job_type, payload, priority, run_after, max_attempts, correlation_id, history, ${GRAPH_COLUMNS})
  SELECT i.tenant_id, i.job_type, coalesce(i.payload, 'null'::jsonb), coalesce(i.priority, 0), coalesce(i.run_after, now()),
         coalesce(i.max_attempts, t.max_attempts), i.correlation_id, ARRAY[$4::uuid], ${GRAPH_VALUES}
  FROM input i JOIN types t ON t.name = i.job_type
  WHERE i.idempotency_key IS NULL ORDER BY i.ord
  RETURNING id, tenant_id, job_type, idempotency_key, state, run_after
), keyed AS (
  INSERT INTO orch.jobs (tenant_id, job_type, payload, priority, run_after, max_attempts, idempotency_key, correlation_id, history, ${GRAPH_COLUMNS})
  SELECT i.tenant_id, i.job_type, coalesce(i.payload, 'null'::jsonb), coalesce(i.priority, 0), coalesce(i.run_after, now()),
         coalesce(i.max_attempts, t.max_attempts), i.idempotency_key, i.correlation_id, ARRAY[$4::uuid], ${GRAPH_VALUES}
  FROM input i JOIN types t ON t.name = i.job_type
  WHERE i.idempotency_key IS NOT NULL ORDER BY i.ord
  ON CONFLICT (tenant_id, job_type, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING id, tenant_id, job_type, idempotency_key, state, run_after
), ins AS (
  SELECT * FROM plain UNION ALL SELECT * FROM keyed
), entries AS (
  SELECT id, tenant_id, job_type, NULL::orch.job_state AS from_state, state AS to_state, 0 AS attempt,
         NULL::uuid AS lease_id, NULL::jsonb AS error FROM ins
), ${recordTransitions('entries', '$4::uuid', '$2', '$3', '$5')}, wake AS (
  ${notifyRunnable('ins', "run_after <= now() AND state = 'queued'")}
)
SELECT ins.id, ins.tenant_id, ins.job_type, ins.idempotency_key, ins.state, (SELECT count(*) FROM wake) AS woken
FROM ins ORDER BY ins.id`);

const existingStatement = prepared('enqueue_existing', `
SELECT ${RETURNED} FROM orch.jobs
WHERE (tenant_id, job_type, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`);

const toResult = (r: EnqueuedRow, created: boolean): EnqueueResult => ({
  id: r.id, tenantId: r.tenant_id, jobType: r.job_type, state: r.state, created,
});

const key = (tenantId: string, jobType: string, k: string) => `${tenantId}\u0000${jobType}\u0000${k}`;

/**
 * Inputs come from prepareJob, and their job types must exist (JobTypes.ensure).
 * `db` may be a caller's client inside its own transaction: then the jobs
 * become visible (and claimers are woken) only when that transaction commits.
 */
export async function enqueue(
  db: Queryable, inputs: PreparedJob[], actor: Actor, reason: string | null = null, cause: EnqueueCause = 'enqueued',
): Promise<EnqueueResult[]> {
  if (inputs.length === 0) return [];
  // Written by hand: this runs for every job of every batch. Payloads were serialised during
  // validation; tenant and job type match [A-Za-z0-9_-] patterns, so they need no escaping.
  let spec = '[';
  inputs.forEach((j, ord) => {
    let o = `{"ord":${ord},"payload":${j.payloadJson},"tenant_id":"${j.tenantId}","job_type":"${j.jobType}"`;
    if (j.priority !== undefined) o += `,"priority":${j.priority}`;
    if (j.runAfter !== undefined) o += `,"run_after":"${j.runAfter.toISOString()}"`;
    if (j.maxAttempts !== undefined) o += `,"max_attempts":${j.maxAttempts}`;
    if (j.idempotencyKey !== undefined) o += `,"idempotency_key":${JSON.stringify(j.idempotencyKey)}`;
    if (j.correlationId !== undefined) o += `,"correlation_id":${JSON.stringify(j.correlationId)}`;
    if (j.graph) {
      o += `,"state":"${j.graph.state}","pending_parents":${j.graph.pendingParents},"dependents":${j.graph.dependents}`
        + `,"has_parents":${(j.dependsOn?.length ?? 0) > 0}`;
    }
    if (j.workflowId !== undefined) o += `,"workflow_id":${JSON.stringify(j.workflowId)},"step_name":${JSON.stringify(j.stepName ?? null)}`;
    spec += (ord === 0 ? '' : ',') + o + '}';
  });
  spec += ']';
  const { rows } = await enqueueStatement<EnqueuedRow>(db, [spec, actor, reason, randomUUID(), cause]);
  // Within each insert (plain, keyed) identity values grow in insertion order, which follows input order.
  const plainRows = rows.filter((r) => r.idempotency_key === null);
  const keyedRows = rows.filter((r) => r.idempotency_key !== null);
  const results: (EnqueueResult | undefined)[] = new Array(inputs.length);
  const byKey = new Map<string, EnqueueResult>();
  let nextPlain = 0;
  let nextKeyed = 0;
  inputs.forEach((input, i) => {
    if (input.idempotencyKey === undefined) {
      results[i] = toResult(plainRows[nextPlain++]!, true);
      return;
    }
    const k = key(input.tenantId, input.jobType, input.idempotencyKey);
    const row = keyedRows[nextKeyed];
    if (byKey.has(k)) {
      results[i] = { ...byKey.get(k)!, created: false };
    } else if (row && row.idempotency_key === input.idempotencyKey && row.tenant_id === input.tenantId && row.job_type === input.jobType) {
      results[i] = toResult(row, true);
      nextKeyed++;
      byKey.set(k, results[i]!);
    }
  });
  const missing = inputs.map((input, i) => ({ input, i })).filter(({ i }) => results[i] === undefined);
  if (missing.length > 0) {
    const existing = await existingStatement<EnqueuedRow>(db, [
      missing.map((m) => m.input.tenantId),
      missing.map((m) => m.input.jobType),
      missing.map((m) => m.input.idempotencyKey!),
    ]);
    const found = new Map(existing.rows.map((r) => [key(r.tenant_id, r.job_type, r.idempotency_key!), r]));
    for (const { input, i } of missing) {
      const row = found.get(key(input.tenantId, input.jobType, input.idempotencyKey!));
      if (!row) throw new Error(`enqueue: job with idempotency key ${input.idempotencyKey} neither inserted nor found`);
      results[i] = toResult(row, false);
    }
  }
  return results as EnqueueResult[];
}

/** The inputs that would create a job: those without an idempotency key, or whose key is not taken yet. */
export async function withoutExisting(db: Queryable, inputs: PreparedJob[]): Promise<PreparedJob[]> {
  const keyed = inputs.filter((i) => i.idempotencyKey !== null && i.idempotencyKey !== undefined);
  if (keyed.length === 0) return inputs;
  const { rows } = await existingStatement<EnqueuedRow>(db, [
    keyed.map((i) => i.tenantId), keyed.map((i) => i.jobType), keyed.map((i) => i.idempotencyKey!),
  ]);
  const taken = new Set(rows.map((r) => key(r.tenant_id, r.job_type, r.idempotency_key!)));
  return inputs.filter((i) => !i.idempotencyKey || !taken.has(key(i.tenantId, i.jobType, i.idempotencyKey)));
}
