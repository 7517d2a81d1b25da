import { freeQuotaSlots } from '../flow-sql.ts';

/** The states counted in orch.queue_counts: the live ones (terminal states only grow, and nobody pages on them). */
export const COUNTED_STATES = ['queued', 'failed', 'leased', 'dead_lettered'] as const;

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
 */
export function recordTransitions(entries: string, batch: string, actor: string, reason: string, cause: string): string {
  return `hist AS (
  ${historyInsert(entries, batch, actor, reason, cause)}
), count_deltas AS (
  INSERT INTO orch.queue_deltas (tenant_id, job_type, state, delta)
  SELECT tenant_id, job_type, state, sum(d) FROM (
    SELECT tenant_id, job_type, from_state AS state, -1 AS d FROM ${entries} WHERE from_state IS NOT NULL
    UNION ALL
    SELECT tenant_id, job_type, to_state, 1 FROM ${entries}
  ) x
  WHERE state IN (${COUNTED_STATES.map((s) => `'${s}'`).join(', ')})
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
 * The history half of every transition statement. Each statement gets a
 * fresh batch id; the jobs it changes append that id to jobs.history, and
 * this CTE appends one orch.job_transitions row per tenant with the entries.
 *
 * `source` names a CTE with columns id, tenant_id, from_state, to_state,
 * attempt, lease_id, error; `batch`, `actor`, `reason` and `cause` (a
 * TransitionCause, or a parameter holding one) are SQL expressions.
 * The actor may read the entry's columns (an ack's holder): one row per
 * tenant and actor then (GROUP BY 3 is the actor column).
 */
function historyInsert(source: string, batch: string, actor: string, reason: string, cause: string): string {
  return `INSERT INTO orch.job_transitions (batch_id, tenant_id, actor, reason, cause, job_ids, from_states, to_states, attempts, lease_ids, errors, job_types)
  SELECT ${batch}, tenant_id, ${actor}, ${reason}, ${cause}, array_agg(id), array_agg(from_state), array_agg(to_state),
         array_agg(attempt), array_agg(lease_id), array_agg(error), array_agg(job_type)
  FROM ${source} GROUP BY tenant_id, 3`;
}

/** SQL for the jobs.history column after a transition of batch `batch`. */
export const appendHistory = (batch: string) => `history = j.history || ${batch}::uuid`;
