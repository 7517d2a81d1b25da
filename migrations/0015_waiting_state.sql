-- Workflows (0016): a job that depends on other jobs waits in this state until its parents have
-- finished. (Added to the enum in a migration of its own: a value added in a transaction cannot be
-- used in it.)
ALTER TYPE orch.job_state ADD VALUE 'waiting';
