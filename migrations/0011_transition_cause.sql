-- What made each transition, as a value the statement fixed (src/ledger/types.ts TRANSITION_CAUSES),
-- beside the free-text reason (a code, or an operator's words). Events, metrics and the history
-- read the cause; nothing decodes the reason any more. Rows written before this migration get the
-- cause the old decoding gave them.
ALTER TABLE orch.job_transitions ADD COLUMN cause text;
UPDATE orch.job_transitions t SET cause = CASE
  WHEN t.from_states[1] IS NULL THEN
    CASE WHEN EXISTS (SELECT 1 FROM orch.jobs j WHERE j.tenant_id = t.tenant_id AND j.id = t.job_ids[1] AND j.replay_of IS NOT NULL)
      THEN 'replayed' ELSE 'enqueued' END
  WHEN t.to_states[1] = 'leased' THEN 'claimed'
  WHEN t.to_states[1] = 'succeeded' THEN 'worker_completed'
  WHEN t.to_states[1] = 'canceled' THEN 'operator_canceled'
  WHEN t.to_states[1] = 'cleared' THEN 'dlq_cleared'
  WHEN t.to_states[1] = 'timed_out' THEN 'timed_out'
  WHEN t.reason = 'worker_failed' THEN 'worker_failed'
  WHEN t.reason = 'released_by_worker' THEN 'worker_released'
  WHEN t.reason = 'lease_expired' AND t.actor LIKE 'system:%' THEN 'lease_expired'
  WHEN t.reason = 'worker_lost' AND t.actor LIKE 'system:%' THEN 'worker_lost'
  ELSE 'force_released'
END;
ALTER TABLE orch.job_transitions ALTER COLUMN cause SET NOT NULL,
  ADD CONSTRAINT job_transitions_cause_check CHECK (cause IN (
    'enqueued', 'replayed', 'claimed', 'worker_completed', 'worker_failed', 'worker_released',
    'lease_expired', 'timed_out', 'force_released', 'worker_lost', 'operator_canceled', 'dlq_cleared'));
