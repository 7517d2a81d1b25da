import type pg from 'pg';
import { runOperatorAction } from '../audit/operator-action.ts';
import type { OperatorAction } from '../audit/audit-log.ts';
import { appendEvents } from '../events/envelope.ts';
import type { Queryable } from '../ledger/db.ts';
import { LedgerError } from '../ledger/errors.ts';
import { inTransaction, type Ledger } from '../ledger/ledger.ts';
import { iso, JOB_COLUMNS, toJob, type JobRow } from '../ledger/rows.ts';
import { CANCELABLE_STATES, EDGE_POLICIES, REPLAYABLE_STATES, type Actor, type EdgePolicy, type EnqueueInput, type Job } from '../ledger/types.ts';
import { checkText } from '../ledger/validate.ts';

export const WORKFLOW_STATES = ['running', 'succeeded', 'failed', 'canceled'] as const;
export type WorkflowState = (typeof WORKFLOW_STATES)[number];

/** Bounds of one submission: more is a 400. */
export const MAX_STEPS = 5000;
export const MAX_EDGES = 50_000;
export const STEP_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
const STEP_NAME = new RegExp(STEP_NAME_PATTERN);

export interface StepDependency { step: string; onFailure?: EdgePolicy }

export interface WorkflowStepSpec {
  name: string;
  jobType: string;
  payload?: unknown;
  priority?: number;
  maxAttempts?: number;
  /** Steps this one waits for: names, or { step, onFailure }. */
  dependsOn?: (string | StepDependency)[];
}

export interface WorkflowSpec {
  name: string;
  /** A second submission with the same key returns the first workflow. */
  idempotencyKey?: string;
  correlationId?: string;
  steps: WorkflowStepSpec[];
}

export interface Workflow {
  id: string;
  tenantId: string;
  name: string;
  state: WorkflowState;
  stepCount: number;
  /** Steps not ended yet; and steps whose latest run ended without success. */
  openSteps: number;
  failedSteps: number;
  cancelRequested: boolean;
  actor: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface WorkflowStep {
  name: string;
  /** The step's latest job (a replay replaces it); `runs` counts its jobs. */
  job: Job;
  runs: number;
  dependsOn: { step: string; onFailure: EdgePolicy }[];
}

export interface WorkflowDetail extends Workflow {
  steps: WorkflowStep[];
  /** The results of the sink steps (those nothing depends on), by step name. */
  result: Record<string, unknown>;
}

interface WorkflowRow {
  id: string; tenant_id: string; name: string; state: WorkflowState; steps: number; open_steps: number; bad_steps: number;
  cancel_requested: boolean; actor: string; created_at: Date; updated_at: Date; finished_at: Date | null;
}

const toWorkflow = (r: WorkflowRow): Workflow => ({
  id: r.id, tenantId: r.tenant_id, name: r.name, state: r.state, stepCount: r.steps, openSteps: r.open_steps, failedSteps: r.bad_steps,
  cancelRequested: r.cancel_requested, actor: r.actor, createdAt: r.created_at.toISOString(), updatedAt: r.updated_at.toISOString(),
  finishedAt: iso(r.finished_at),
});

const normalise = (d: string | StepDependency): StepDependency => (typeof d === 'string' ? { step: d } : d);

/**
 * Checks a workflow as a graph and returns its steps in an order where every
 * step comes after the steps it depends on. Bounds are 400s (`invalid`);
 * a graph that cannot run (a duplicate or unknown step, a cycle) is a 422
 * naming the steps.
 */
export function planWorkflow(spec: WorkflowSpec): WorkflowStepSpec[] {
  checkText(spec.name, 'name');
  if (spec.name.length < 1 || spec.name.length > 128) throw new LedgerError('invalid', 'name', 'name must be 1 to 128 characters');
  if (!Array.isArray(spec.steps) || spec.steps.length < 1 || spec.steps.length > MAX_STEPS) {
    throw new LedgerError('invalid', 'steps', `steps must hold 1 to ${MAX_STEPS} steps`);
  }
  const edges = spec.steps.reduce((n, s) => n + (s.dependsOn?.length ?? 0), 0);
  if (edges > MAX_EDGES) throw new LedgerError('invalid', 'steps', `the steps hold ${edges} dependencies, over the limit of ${MAX_EDGES}`);
  const byName = new Map<string, WorkflowStepSpec>();
  const duplicates = new Set<string>();
  spec.steps.forEach((s, i) => {
    if (typeof s.name !== 'string' || !STEP_NAME.test(s.name)) throw new LedgerError('invalid', `steps[${i}].name`, `steps[${i}].name must match ${STEP_NAME_PATTERN}`);
    if (byName.has(s.name)) duplicates.add(s.name);
    byName.set(s.name, s);
  });
  if (duplicates.size > 0) throw new LedgerError('unprocessable', 'steps', `duplicate step names: ${[...duplicates].join(', ')}`);
  spec.steps.forEach((s, i) => {
    const seen = new Set<string>();
    (s.dependsOn ?? []).map(normalise).forEach((d, k) => {
      const at = `steps[${i}].dependsOn[${k}]`;
      if (!byName.has(d.step)) throw new LedgerError('unprocessable', at, `step ${s.name} depends on unknown step ${d.step}`);
      if (seen.has(d.step)) throw new LedgerError('unprocessable', at, `step ${s.name} depends on ${d.step} twice`);
      if (d.onFailure !== undefined && !EDGE_POLICIES.includes(d.onFailure)) {
        throw new LedgerError('invalid', `${at}.onFailure`, `${at}.onFailure must be one of ${EDGE_POLICIES.join(', ')}`);
      }
      seen.add(d.step);
    });
  });
  // depth-first, parents before children; a step met again while on the path closes a cycle
  const order: WorkflowStepSpec[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (name: string): void => {
    const st = state.get(name);
    if (st === 'done') return;
    if (st === 'open') {
      const cycle = [...path.slice(path.indexOf(name)), name];
      throw new LedgerError('unprocessable', 'steps', `the steps form a cycle: ${cycle.join(' -> ')}`);
    }
    state.set(name, 'open');
    path.push(name);
    const step = byName.get(name)!;
    for (const d of (step.dependsOn ?? []).map(normalise)) visit(d.step);
    path.pop();
    state.set(name, 'done');
    order.push(step);
  };
  for (const s of spec.steps) visit(s.name);
  return order;
}

/**
 * Workflows: a graph of jobs submitted at once (src/ledger/transitions/depend.ts
 * stores its edges; the statements that end a step release or cancel its
 * dependents and count the workflow down, history.ts). Cancel and retry are
 * operator actions (orch:operate, with a reason), audited.
 */
export class Workflows {
  constructor(private readonly pool: pg.Pool, private readonly ledger: Ledger) {}

  /** Stores the workflow and enqueues its steps in one transaction; `created` false when its idempotency key found an earlier one. */
  async submit(tenantId: string, spec: WorkflowSpec, actor: Actor): Promise<{ workflow: WorkflowDetail; created: boolean }> {
    const order = planWorkflow(spec);
    if (spec.idempotencyKey !== undefined) checkText(spec.idempotencyKey, 'idempotencyKey');
    const { id, created } = await inTransaction(this.pool, async (tx) => {
      const { rows } = await tx.client.query<{ id: string }>(
        `INSERT INTO orch.workflows (tenant_id, name, steps, open_steps, idempotency_key, actor) VALUES ($1, $2, $3, $3, $4, $5)
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id`,
        [tenantId, spec.name, order.length, spec.idempotencyKey ?? null, actor]);
      if (rows.length === 0) {
        const found = await tx.client.query<{ id: string }>('SELECT id FROM orch.workflows WHERE tenant_id = $1 AND idempotency_key = $2', [tenantId, spec.idempotencyKey]);
        return { id: found.rows[0]!.id, created: false };
      }
      const workflowId = rows[0]!.id;
      const index = new Map(order.map((s, i) => [s.name, i]));
      const inputs = order.map((s): EnqueueInput => ({
        tenantId, jobType: s.jobType, payload: s.payload ?? null, priority: s.priority, maxAttempts: s.maxAttempts,
        correlationId: spec.correlationId, workflowId, stepName: s.name,
        dependsOn: (s.dependsOn ?? []).map(normalise).map((d) => ({ index: index.get(d.step)!, onFailure: d.onFailure ?? 'cancel' })),
      }));
      await this.ledger.enqueue(inputs, { actor, tx });
      await appendEvents(tx.client, [{
        tenantId, type: 'workflow.started', at: new Date().toISOString(), actor, target: workflowId,
        data: { workflowId, name: spec.name, steps: order.length },
      }]);
      return { id: workflowId, created: true };
    });
    return { workflow: (await this.get(this.pool, tenantId, id))!, created };
  }

  /** Newest first, keyset-paged by (createdAt, id). */
  async list(
    db: Queryable, tenants: string[] | undefined, opts: { state?: WorkflowState; limit: number; before?: { createdAt: string; id: string } },
  ): Promise<Workflow[]> {
    const { rows } = await db.query<WorkflowRow>(
      `SELECT * FROM orch.workflows
       WHERE ($1::text[] IS NULL OR tenant_id = ANY($1)) AND ($2::text IS NULL OR state = $2)
         AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
       ORDER BY created_at DESC, id DESC LIMIT $3`,
      [tenants ?? null, opts.state ?? null, opts.limit, opts.before?.createdAt ?? null, opts.before?.id ?? null]);
    return rows.map(toWorkflow);
  }

  /** A workflow with each step's latest job, its dependencies and the sinks' results; null when not found. */
  async get(db: Queryable, tenantId: string, id: string): Promise<WorkflowDetail | null> {
    const { rows: [w] } = await db.query<WorkflowRow>('SELECT * FROM orch.workflows WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    if (!w) return null;
    const { rows: jobs } = await db.query<JobRow & { runs: string }>(
      LATEST_STEPS, [tenantId, id]);
    const { rows: edges } = await db.query<{ child: string; parent: string; policy: EdgePolicy }>(
      `SELECT c.step_name AS child, p.step_name AS parent, e.policy
       FROM orch.jobs c JOIN orch.job_edges e ON e.tenant_id = c.tenant_id AND e.child_id = c.id
       JOIN orch.jobs p ON p.tenant_id = e.tenant_id AND p.id = e.parent_id
       WHERE c.tenant_id = $1 AND c.id = ANY($2::bigint[])`, [tenantId, jobs.map((j) => j.id)]);
    const parents = new Map<string, { step: string; onFailure: EdgePolicy }[]>();
    const hasChildren = new Set<string>();
    for (const e of edges) {
      let list = parents.get(e.child);
      if (!list) parents.set(e.child, (list = []));
      list.push({ step: e.parent, onFailure: e.policy });
      hasChildren.add(e.parent);
    }
    const steps = jobs.map((r) => ({ name: r.step_name!, job: toJob(r), runs: Number(r.runs), dependsOn: parents.get(r.step_name!) ?? [] }));
    const result = Object.fromEntries(steps.filter((s) => !hasChildren.has(s.name)).map((s) => [s.name, s.job.result]));
    return { ...toWorkflow(w), steps, result };
  }

  /**
   * Cancels the steps not started (waiting, queued, or waiting to retry) at
   * once; running ones finish, or are canceled too with `includeRunning`.
   * The workflow ends canceled when its last step ends.
   */
  async cancel(tenantId: string, id: string, op: OperatorAction, includeRunning: boolean): Promise<WorkflowDetail> {
    await runOperatorAction(this.pool, op, what('workflow.cancel', tenantId, id), async (tx) => {
      const w = await lockWorkflow(tx.client, tenantId, id);
      if (w.state !== 'running') throw new LedgerError('conflict', 'state', `workflow ${id} is already ${w.state}`);
      await tx.client.query('UPDATE orch.workflows SET cancel_requested = true, updated_at = now() WHERE id = $1', [id]);
      const states = includeRunning ? CANCELABLE_STATES : CANCELABLE_STATES.filter((s) => s !== 'leased');
      const steps = await currentSteps(tx.client, tenantId, id, states);
      const outcomes = await this.ledger.cancelMany(tenantId, steps, op.actor, `workflow ${id} canceled: ${op.reason}`, { tx, states });
      return { result: null, details: { stepsCanceled: outcomes.filter((o) => o.record).length, includeRunning } };
    });
    return (await this.get(this.pool, tenantId, id))!;
  }

  /**
   * Replays every step whose latest run ended without success (dead-lettered,
   * canceled, timed out, cleared); steps that succeeded are left alone, and
   * each replay waits for its parents' replays. The workflow runs again.
   */
  async retry(tenantId: string, id: string, op: OperatorAction): Promise<WorkflowDetail> {
    await runOperatorAction(this.pool, op, what('workflow.retry', tenantId, id), async (tx) => {
      await lockWorkflow(tx.client, tenantId, id);
      const steps = await currentSteps(tx.client, tenantId, id, REPLAYABLE_STATES);
      if (steps.length === 0) throw new LedgerError('conflict', 'state', `workflow ${id} has no failed or canceled step to retry`);
      const outcomes = await this.ledger.replay(tenantId, steps, { priority: null, actor: op.actor, reason: `workflow ${id} retried: ${op.reason}`, tx });
      return { result: null, details: { stepsReplayed: outcomes.filter((o) => o.status === 'replayed').length } };
    });
    return (await this.get(this.pool, tenantId, id))!;
  }
}

/** Workflows ended per tenant and outcome, as the transitions counted them (orchestrator_workflows_total). */
export async function workflowOutcomes(db: Queryable): Promise<{ tenantId: string; outcome: string; n: number }[]> {
  const { rows } = await db.query<{ tenant_id: string; outcome: string; n: string }>('SELECT tenant_id, outcome, n FROM orch.workflow_outcomes');
  return rows.map((r) => ({ tenantId: r.tenant_id, outcome: r.outcome, n: Number(r.n) }));
}

/**
 * Each step's latest job of workflow $2 of tenant $1 (a replay replaces a step's job), and `runs`: how many
 * jobs the step ran as. Through the workflow index.
 */
const LATEST_STEPS = `
  SELECT DISTINCT ON (step_name) ${JOB_COLUMNS}, count(*) OVER (PARTITION BY step_name) AS runs
  FROM orch.jobs WHERE tenant_id = $1 AND workflow_id = $2 ORDER BY step_name, id DESC`;

const what = (action: string, tenantId: string, id: string) => ({ action, tenantId, target: `workflow:${id}` });

async function lockWorkflow(db: Queryable, tenantId: string, id: string): Promise<WorkflowRow> {
  const { rows: [w] } = await db.query<WorkflowRow>('SELECT * FROM orch.workflows WHERE tenant_id = $1 AND id = $2 FOR UPDATE', [tenantId, id]);
  if (!w) throw new LedgerError('not_found', 'id', `workflow ${id} not found`);
  return w;
}

/** The ids of the workflow's steps whose latest job is in one of `states`. */
async function currentSteps(db: Queryable, tenantId: string, id: string, states: readonly string[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM (${LATEST_STEPS}) s WHERE state::text = ANY($3::text[])`, [tenantId, id, states]);
  return rows.map((r) => r.id);
}
