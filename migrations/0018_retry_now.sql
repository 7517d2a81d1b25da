-- "Retry now" (src/ledger/transitions/retry-now.ts): an operator makes a job waiting for its retry
-- backoff runnable at once; its history records the new cause operator_retried.
ALTER TABLE orch.job_transitions DROP CONSTRAINT job_transitions_cause_check,
  ADD CONSTRAINT job_transitions_cause_check CHECK (cause IN (
    'enqueued', 'replayed', 'claimed', 'worker_completed', 'worker_failed', 'worker_released',
    'lease_expired', 'timed_out', 'force_released', 'worker_lost', 'operator_canceled', 'dlq_cleared',
    'scheduled', 'backfilled', 'dependencies_met', 'dependency_failed', 'operator_retried'));
