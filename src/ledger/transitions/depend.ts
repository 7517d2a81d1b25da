import { prepared, type Queryable } from '../db.ts';
import { LedgerError } from '../errors.ts';
import { REPLAYABLE_STATES, type Actor, type EdgePolicy, type EnqueueCause, type EnqueueResult, type JobState } from '../types.ts';
import type { PreparedJob } from '../validate.ts';
import { enqueue } from './enqueue.ts';

/**
 * Counts the new dependents on existing parents and reads each parent's
 * latest state. A parent that was replayed stands for its latest replay (a
 * replay takes the original's place), so a dependent waits for that. The UPDATE locks the parent rows until the enqueue commits:
 * a parent ending meanwhile waits, then sees by its row's dependents count
 * that it must re-read the edges (orch.dependency_race); a parent that ended
 * before is read as ended here, and its dependent does not wait for it.
 */
const lockParentsStatement = prepared('lock_parents', `
WITH RECURSIVE chain (tenant_id, asked, id, n) AS (
  SELECT tenant_id, id, id, n FROM unnest($1::text[], $2::bigint[], $3::integer[]) AS x(tenant_id, id, n)
  UNION ALL
  SELECT c.tenant_id, c.asked, r.id, c.n FROM chain c JOIN orch.jobs r ON r.tenant_id = c.tenant_id AND r.replay_of = c.id
), latest AS (
  SELECT DISTINCT ON (tenant_id, asked) * FROM chain ORDER BY tenant_id, asked, id DESC
)
UPDATE orch.jobs p SET dependents = p.dependents + l.n
FROM latest l
WHERE p.tenant_id = l.tenant_id AND p.id = l.id
RETURNING p.tenant_id, l.asked::text AS asked, p.id::text AS id, p.state`);

const insertEdgesStatement = prepared('insert_edges', `
INSERT INTO orch.job_edges (tenant_id, parent_id, child_id, policy)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])`);

/** Ended without success (the states a replay starts from): what a dependent's edge policy applies to. */
const FAILED_ENDS: ReadonlySet<JobState> = new Set(REPLAYABLE_STATES);

/** Whether a parent in `state` no longer holds back a dependent over an edge with `policy`. */
const resolves = (state: JobState, policy: EdgePolicy) => state === 'succeeded' || (FAILED_ENDS.has(state) && policy === 'ignore');

const key = (tenantId: string, id: string) => `${tenantId}\u0000${id}`;

/**
 * Enqueues jobs with dependencies, inside the caller's transaction `db`:
 * parents are locked and read, each job starts `waiting` with the count of
 * parents it still waits for (or `queued` when none), and its edges are
 * stored. A parent that is missing (or another tenant's) is refused, and so
 * is one that already failed when the edge would cancel the job at once.
 * Batch-internal parents (`index`) are new jobs: nothing else can end them
 * before this transaction commits.
 */
export async function enqueueLinked(
  db: Queryable, inputs: PreparedJob[], actor: Actor, reason: string | null, cause: EnqueueCause, field: (i: number) => string,
): Promise<EnqueueResult[]> {
  const prefix = (i: number) => (field(i) ? `${field(i)}.` : '');
  const external = new Map<string, { tenantId: string; id: string; n: number }>();
  for (const input of inputs) {
    for (const d of input.dependsOn ?? []) {
      if (d.jobId === undefined) continue;
      const k = key(input.tenantId, d.jobId);
      const e = external.get(k);
      if (e) e.n++;
      else external.set(k, { tenantId: input.tenantId, id: d.jobId, n: 1 });
    }
  }
  const states = new Map<string, JobState>();
  const stands = new Map<string, string>();
  if (external.size > 0) {
    const parents = [...external.values()];
    const { rows } = await lockParentsStatement<{ tenant_id: string; asked: string; id: string; state: JobState }>(db, [
      parents.map((p) => p.tenantId), parents.map((p) => p.id), parents.map((p) => p.n),
    ]);
    for (const r of rows) {
      states.set(key(r.tenant_id, r.asked), r.state);
      stands.set(key(r.tenant_id, r.asked), r.id);
    }
  }
  const dependents = new Array<number>(inputs.length).fill(0);
  inputs.forEach((input, i) => {
    (input.dependsOn ?? []).forEach((d, k) => {
      const at = `${prefix(i)}dependsOn[${k}]`;
      if (d.index !== undefined) {
        if (d.index >= inputs.length || d.index === i) throw new LedgerError('unprocessable', at, `${at}: index ${d.index} names no other job of this batch`);
        dependents[d.index]!++;
        return;
      }
      const state = states.get(key(input.tenantId, d.jobId));
      if (state === undefined) throw new LedgerError('unprocessable', at, `${at}: job ${d.jobId} does not exist in tenant ${input.tenantId}`);
      if (FAILED_ENDS.has(state) && (d.onFailure ?? 'cancel') === 'cancel') {
        throw new LedgerError('unprocessable', at, `${at}: job ${d.jobId} already ended ${state}; a dependent would be canceled at once (onFailure ignore or wait)`);
      }
    });
  });
  const graphed = inputs.map((input, i): PreparedJob => {
    const pending = (input.dependsOn ?? []).filter((d) => d.index !== undefined || !resolves(states.get(key(input.tenantId, d.jobId))!, d.onFailure ?? 'cancel')).length;
    return { ...input, graph: { state: pending > 0 ? 'waiting' : 'queued', pendingParents: pending, dependents: dependents[i]! } };
  });
  const results = await enqueue(db, graphed, actor, reason, cause);
  const edges = { tenant: [] as string[], parent: [] as string[], child: [] as string[], policy: [] as string[] };
  inputs.forEach((input, i) => {
    // a job its idempotency key found already exists, with the dependencies it was given then
    if (!results[i]!.created) return;
    for (const d of input.dependsOn ?? []) {
      const parent = d.index !== undefined ? results[d.index]! : null;
      if (parent && !parent.created) {
        throw new LedgerError('conflict', `${prefix(i)}dependsOn`, `a parent in this batch already existed (idempotency key); enqueue it separately and depend on its id`);
      }
      edges.tenant.push(input.tenantId);
      edges.parent.push(parent ? parent.id : stands.get(key(input.tenantId, d.jobId!))!);
      edges.child.push(results[i]!.id);
      edges.policy.push(d.onFailure ?? 'cancel');
    }
  });
  if (edges.child.length > 0) await insertEdgesStatement(db, [edges.tenant, edges.parent, edges.child, edges.policy]);
  return results;
}
