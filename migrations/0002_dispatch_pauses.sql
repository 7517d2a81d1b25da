-- Dispatch pauses: claims skip queued work a pause covers; the work stays queued.
-- '*' stands for every tenant or every job type, so one table holds all four kinds:
-- (tenant, type), ('*', type) = the type for everyone, (tenant, '*') = the whole tenant, ('*', '*') = everything.
CREATE TABLE orch.dispatch_pauses (
  tenant_id  text NOT NULL,
  job_type   text NOT NULL,
  reason     text NOT NULL,
  ticket     text,
  actor      text NOT NULL,
  paused_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, job_type)
);
