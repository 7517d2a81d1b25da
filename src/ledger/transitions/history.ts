/**
 * The history half of every transition statement. Each statement gets a
 * fresh batch id; the jobs it changes append that id to jobs.history, and
 * this CTE appends one orch.job_transitions row per tenant with the entries.
 *
 * `source` names a CTE with columns id, tenant_id, from_state, to_state,
 * attempt, lease_id, error; `batch`, `actor` and `reason` are SQL expressions.
 */
export function historyInsert(source: string, batch: string, actor: string, reason: string): string {
  return `INSERT INTO orch.job_transitions (batch_id, tenant_id, actor, reason, job_ids, from_states, to_states, attempts, lease_ids, errors)
  SELECT ${batch}, tenant_id, ${actor}, ${reason}, array_agg(id), array_agg(from_state), array_agg(to_state),
         array_agg(attempt), array_agg(lease_id), array_agg(error)
  FROM ${source} GROUP BY tenant_id`;
}

/** SQL for the jobs.history column after a transition of batch `batch`. */
export const appendHistory = (batch: string) => `history = j.history || ${batch}::uuid`;
