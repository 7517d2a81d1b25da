-- Retention of finished jobs (src/ledger/transitions/prune.ts, src/maintenance/job-pruner.ts): jobs that
-- ended (succeeded, canceled, timed out, cleared from the DLQ) leave the ledger with their history once
-- ORCH_JOB_RETENTION_MS has passed. The pruner walks the history rows by time: each job is looked at
-- through its history batches, so finding candidates needs no index on the job table (an index there
-- would cost every completion an entry), only this one on the history, one entry per statement.
CREATE INDEX job_transitions_at_idx ON orch.job_transitions (at, batch_id);
-- Workflows that ended, oldest first, for the pruner.
CREATE INDEX workflows_finished_idx ON orch.workflows (finished_at) WHERE state <> 'running';
