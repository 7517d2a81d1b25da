import { notifyRunnable } from '../channel.ts';
import { freeQuotaSlots } from '../flow-sql.ts';
import type { JobState, TransitionRecord } from '../types.ts';

/** The states counted in orch.queue_counts: the live ones (terminal states only grow, and nobody pages on them). */
export const COUNTED_STATES = ['queued', 'failed', 'leased', 'dead_lettered', 'waiting'] as const;

/** States a job ends in for its dependents and its workflow: a transition into one settles them. */
export const ENDING_STATES = ['succeeded', 'dead_lettered', 'canceled', 'timed_out'] as const;

/** prepared() options of a statement that ends jobs: it may meet orch.dependency_race, and is retried then. */
export const ENDS_JOBS = { retrySerializationFailures: true } as const;

const list = (states: readonly string[]) => states.map((s) => `'${s}'`).join(', ');

/**
 * The bookkeeping CTEs of every transition statement, from its `entries` CTE
 * (id, tenant_id, job_type, from_state, to_state, attempt, lease_id, error):
 * the history rows (historyInsert), the net change of the queue counts
 * (src/ledger/queue-counts.ts), one row per tenant, type and state touched,
 * the change of the DLQ's error clusters (entries entering or leaving the
 * dead_lettered state, by the entry's error), the outbox row that makes the
 * batch's events (src/events/envelope.ts), and the concurrency slots of
 * the leases it ended (freeQuotaSlots; nothing for a transition that ends none). Every transition calls it, so a new one
 * cannot forget a piece of the bookkeeping.
 *
 * A statement that can end jobs (`ends`: into an ENDING_STATES state) also
 * settles their dependents and workflows (settleDependents); its entries
 * then carry `dependents` (the job row's latest count) and `workflow_id`,
 * and the statement must start WITH RECURSIVE (a cancellation runs down the graph).
 */
export function recordTransitions(entries: string, batch: string, actor: string, reason: string, cause: string, opts: { ends?: boolean } = {}): string {
  const counted = opts.ends
    ? `(SELECT tenant_id, job_type, from_state, to_state FROM ${entries} UNION ALL SELECT tenant_id, job_type, from_state, to_state FROM released_entries)`
    : entries;
  const source = opts.ends ? `(SELECT * FROM ${entries} WHERE NOT EXISTS (SELECT 1 FROM dependency_race))` : entries;
  return `${opts.ends ? `${settleDependents(entries, batch)}, ` : ''}hist AS (
  ${historyInsert(source, batch, actor, reason, cause)}
), count_deltas AS (
  INSERT INTO orch.queue_deltas (tenant_id, job_type, state, delta)
  SELECT tenant_id, job_type, state, sum(d) FROM (
    SELECT tenant_id, job_type, from_state AS state, -1 AS d FROM ${counted} c WHERE from_state IS NOT NULL
    UNION ALL
    SELECT tenant_id, job_type, to_state, 1 FROM ${counted} c
  ) x
  WHERE state IN (${list(COUNTED_STATES)})
  GROUP BY tenant_id, job_type, state HAVING sum(d) <> 0
), cluster_deltas AS (
  INSERT INTO orch.dlq_cluster_deltas (tenant_id, job_type, error_class, fingerprint, delta, at)
  SELECT tenant_id, job_type, coalesce(error->>'class', 'unknown'), orch.error_fingerprint(error->>'message'),
         sum(CASE WHEN to_state = 'dead_lettered' THEN 1 ELSE -1 END), CASE WHEN to_state = 'dead_lettered' THEN now() END
  FROM ${entries} WHERE (to_state = 'dead_lettered') <> (from_state IS NOT DISTINCT FROM 'dead_lettered')
  GROUP BY 1, 2, 3, 4, 6
), outboxed AS (
  INSERT INTO orch.outbox (tenant_id, batch_id) SELECT DISTINCT tenant_id, ${batch} FROM ${entries}
), ${freeQuotaSlots(entries)}`;
}

/**
 * The CTEs that settle what depends on the jobs a statement ended (entries
 * into an ENDING_STATES state from a live one), in the statement's own
 * transaction:
 * - dependency_race: a parent whose row changed its dependents count after
 *   the statement's snapshot may have a dependent the snapshot's edges miss;
 *   the statement fails as a serialization failure and is retried.
 * - doomed: waiting children of a parent that ended without success over a
 *   `cancel` edge, and theirs in turn (recursive): canceled.
 * - settled / released: every other waiting child counts down the parents
 *   this statement resolved (a success, or any end over an `ignore` edge;
 *   a `wait` edge resolves only when a replay of the parent succeeds) and is
 *   queued when none is left. One UPDATE: concurrent parents of one child
 *   serialise on its row and each sees the count the other left.
 * - released_*: the children's own history (cause dependencies_met or
 *   dependency_failed, a batch id derived from the statement's), counts,
 *   events and a wake-up for the queued ones.
 * - wf*: the workflows of the steps that ended count down their open steps;
 *   the last one ends the workflow (its outcome, an event, the outcome count).
 */
function settleDependents(entries: string, batch: string): string {
  const edgesOf = (parent: string, policy?: string) =>
    `JOIN orch.job_edges e ON e.tenant_id = ${parent}.tenant_id AND e.parent_id = ${parent}.id${policy ? ` AND e.policy = '${policy}'` : ''}`;
  const waitingChild = `JOIN orch.jobs c ON c.tenant_id = e.tenant_id AND c.id = e.child_id AND c.state = 'waiting'`;
  const ending = `to_state IN (${list(ENDING_STATES)}) AND (from_state IS NULL OR from_state NOT IN (${list(ENDING_STATES)}))`;
  return `ended AS (
  SELECT id, tenant_id, to_state, dependents FROM ${entries} WHERE dependents > 0 AND ${ending}
), dependency_race AS (
  SELECT orch.dependency_race(p.id) FROM ended p JOIN orch.jobs s ON s.tenant_id = p.tenant_id AND s.id = p.id WHERE s.dependents <> p.dependents
), doomed (tenant_id, id, cause_id, cause_state) AS (
  SELECT c.tenant_id, c.id, p.id, p.to_state FROM ended p ${edgesOf('p', 'cancel')} ${waitingChild} WHERE p.to_state <> 'succeeded'
  UNION
  SELECT c.tenant_id, c.id, d.id, 'canceled'::orch.job_state FROM doomed d ${edgesOf('d', 'cancel')} ${waitingChild}
), settled AS (
  SELECT tenant_id, id, bool_or(doom) AS doom, sum(resolved)::integer AS resolved, min(note) AS note FROM (
    SELECT tenant_id, id, true AS doom, 0 AS resolved, 'parent ' || cause_id || ' ' || cause_state AS note FROM doomed
    UNION ALL
    SELECT e.tenant_id, e.child_id, false, 1, NULL FROM ended p ${edgesOf('p')} WHERE p.to_state = 'succeeded' OR e.policy = 'ignore'
    UNION ALL
    SELECT e.tenant_id, e.child_id, false, 1, NULL FROM (SELECT DISTINCT tenant_id, id FROM doomed) p ${edgesOf('p', 'ignore')}
  ) x
  -- a child this statement moves itself (a workflow's cancel takes parents and children at once) is its own
  WHERE NOT EXISTS (SELECT 1 FROM ${entries} n WHERE n.tenant_id = x.tenant_id AND n.id = x.id)
  GROUP BY tenant_id, id
), released AS (
  UPDATE orch.jobs c SET
    pending_parents = CASE WHEN s.doom THEN c.pending_parents ELSE c.pending_parents - s.resolved END,
    state = CASE WHEN s.doom THEN 'canceled' WHEN c.pending_parents - s.resolved <= 0 THEN 'queued' ELSE 'waiting' END::orch.job_state,
    finished_at = CASE WHEN s.doom THEN now() END,
    -- a batch of its own per cause and note (one history row per batch and tenant), derived from the statement's
    history = CASE WHEN s.doom OR c.pending_parents - s.resolved <= 0
                   THEN c.history || md5(${batch}::text || CASE WHEN s.doom THEN s.note ELSE 'dependencies_met' END)::uuid
                   ELSE c.history END,
    updated_at = now()
  FROM settled s
  WHERE c.tenant_id = s.tenant_id AND c.id = s.id AND c.state = 'waiting' AND NOT EXISTS (SELECT 1 FROM dependency_race)
  RETURNING c.id, c.tenant_id, c.job_type, c.attempt, c.state, c.workflow_id, s.note, c.history[cardinality(c.history)] AS batch_id
), released_entries AS (
  SELECT id, tenant_id, job_type, 'waiting'::orch.job_state AS from_state, state AS to_state, attempt, NULL::uuid AS lease_id,
    NULL::jsonb AS error, workflow_id, CASE WHEN state = 'canceled' THEN 'dependency_failed' ELSE 'dependencies_met' END AS cause,
    CASE WHEN state = 'canceled' THEN note END AS note, batch_id
  FROM released WHERE state <> 'waiting'
), released_wake AS (
  ${notifyRunnable('released_entries', "to_state = 'queued'")}
), released_hist AS (
  ${historyInsert('released_entries', 'batch_id', "'system:dependencies'", 'note', 'cause')}
), released_outboxed AS (
  INSERT INTO orch.outbox (tenant_id, batch_id)
  SELECT DISTINCT tenant_id, batch_id FROM released_entries WHERE (SELECT count(*) FROM released_wake) >= 0
), wf_steps AS (
  SELECT workflow_id, to_state FROM ${entries} WHERE workflow_id IS NOT NULL AND ${ending}
  UNION ALL
  SELECT workflow_id, to_state FROM released_entries WHERE workflow_id IS NOT NULL AND to_state = 'canceled'
), wf AS (
  UPDATE orch.workflows w SET
    open_steps = w.open_steps - s.n, bad_steps = w.bad_steps + s.bad,
    state = CASE WHEN w.open_steps - s.n > 0 THEN w.state WHEN w.cancel_requested THEN 'canceled'
                 WHEN w.bad_steps + s.bad > 0 THEN 'failed' ELSE 'succeeded' END,
    finished_at = CASE WHEN w.open_steps - s.n > 0 THEN w.finished_at ELSE now() END, updated_at = now()
  FROM (SELECT workflow_id, count(*) AS n, count(*) FILTER (WHERE to_state <> 'succeeded') AS bad FROM wf_steps GROUP BY workflow_id) s
  WHERE w.id = s.workflow_id
  RETURNING w.id, w.tenant_id, w.name, w.state, w.open_steps
), wf_finished AS (
  INSERT INTO orch.outbox (tenant_id, events)
  SELECT tenant_id, jsonb_agg(jsonb_build_object('type', 'workflow.finished', 'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'actor', 'system:workflows',
    'target', id::text, 'data', jsonb_build_object('workflowId', id, 'name', name, 'outcome', state)))
  FROM wf WHERE open_steps <= 0 GROUP BY tenant_id
), wf_outcomes AS (
  INSERT INTO orch.workflow_outcomes (tenant_id, outcome, n)
  SELECT tenant_id, state, count(*) FROM wf WHERE open_steps <= 0 GROUP BY tenant_id, state
  ON CONFLICT (tenant_id, outcome) DO UPDATE SET n = orch.workflow_outcomes.n + excluded.n
)`;
}

/**
 * The column an ending statement's final SELECT adds (the same value on every
 * row): the dependents it settled, for settledRecords.
 */
export const SETTLED_COLUMN = `(SELECT coalesce(json_agg(json_build_array(id::text, tenant_id, job_type, to_state)), '[]'::json) FROM released_entries) AS settled`;

/** The transitions of the dependents an ending statement settled (SETTLED_COLUMN), for the ledger's observers. */
export function settledRecords(rows: readonly { settled?: [string, string, string, JobState][] }[]): TransitionRecord[] {
  return (rows[0]?.settled ?? []).map(([jobId, tenantId, jobType, to]) => ({
    cause: to === 'canceled' ? 'dependency_failed' : 'dependencies_met', jobId, tenantId, jobType, from: 'waiting', to, attempt: 0,
  }));
}

/**
 * The history half of every transition statement. Each statement gets a
 * fresh batch id; the jobs it changes append that id to jobs.history, and
 * this CTE appends one orch.job_transitions row per tenant with the entries.
 *
 * `source` names a CTE with columns id, tenant_id, from_state, to_state,
 * attempt, lease_id, error; `batch`, `actor`, `reason` and `cause` (a
 * TransitionCause, or a parameter holding one) are SQL expressions.
 * Any of them may read the entry's columns (an ack's holder as the actor;
 * the batch, note and cause of a settled dependent): one row per distinct
 * batch, tenant, actor, reason and cause then.
 */
function historyInsert(source: string, batch: string, actor: string, reason: string, cause: string): string {
  return `INSERT INTO orch.job_transitions (batch_id, tenant_id, actor, reason, cause, job_ids, from_states, to_states, attempts, lease_ids, errors, job_types)
  SELECT ${batch}, tenant_id, ${actor}, ${reason}, ${cause}, array_agg(id), array_agg(from_state), array_agg(to_state),
         array_agg(attempt), array_agg(lease_id), array_agg(error), array_agg(job_type)
  FROM ${source} e GROUP BY 1, 2, 3, 4, 5`;
}

/** SQL for the jobs.history column after a transition of batch `batch`. */
export const appendHistory = (batch: string) => `history = j.history || ${batch}::uuid`;
