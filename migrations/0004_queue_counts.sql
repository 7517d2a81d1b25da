-- Jobs per (tenant, job type, live state), kept as jobs move, so backpressure and the queue-depth
-- gauges never count rows of the job table. Every transition statement appends its net change to
-- orch.queue_deltas (insert-only: concurrent statements never wait on each other, unlike a shared
-- counter row); a rollup folds the deltas into orch.queue_counts. Current = counts + pending deltas.
CREATE TABLE orch.queue_counts (
  tenant_id  text NOT NULL,
  job_type   text NOT NULL,
  state      orch.job_state NOT NULL,
  n          bigint NOT NULL,
  PRIMARY KEY (tenant_id, job_type, state)
);
CREATE TABLE orch.queue_deltas (
  tenant_id  text NOT NULL,
  job_type   text NOT NULL,
  state      orch.job_state NOT NULL,
  delta      bigint NOT NULL
);
INSERT INTO orch.queue_counts (tenant_id, job_type, state, n)
  SELECT tenant_id, job_type, state, count(*) FROM orch.jobs
  WHERE state IN ('queued', 'failed', 'leased', 'dead_lettered') GROUP BY tenant_id, job_type, state;
