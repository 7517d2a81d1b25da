-- Workflows: jobs that wait for other jobs (src/workflows/, docs/workflows.md). A dependency is an
-- edge parent -> child with a failure policy. A child waits (state 'waiting') with a count of the
-- parents it still waits for; the statement that ends a parent (src/ledger/transitions/history.ts)
-- counts its children down and queues those that reach zero, or cancels them when the parent failed
-- and the edge says so, in the same transaction. A workflow groups the jobs of one submitted graph.

ALTER TABLE orch.job_transitions DROP CONSTRAINT job_transitions_cause_check,
  ADD CONSTRAINT job_transitions_cause_check CHECK (cause IN (
    'enqueued', 'replayed', 'claimed', 'worker_completed', 'worker_failed', 'worker_released',
    'lease_expired', 'timed_out', 'force_released', 'worker_lost', 'operator_canceled', 'dlq_cleared',
    'scheduled', 'backfilled', 'dependencies_met', 'dependency_failed'));

ALTER TABLE orch.jobs
  ADD COLUMN workflow_id     uuid,
  ADD COLUMN step_name       text,
  -- while waiting: the parents not yet finished in a way that lets this job run
  ADD COLUMN pending_parents integer NOT NULL DEFAULT 0,
  -- edges ever added with this job as parent. Adding one bumps it (locking the parent row), so the
  -- statement that ends the parent sees, by the row's latest version, that a dependent may have come
  -- after its snapshot, and retries instead of leaving that dependent waiting for ever.
  ADD COLUMN dependents      integer NOT NULL DEFAULT 0;

CREATE INDEX jobs_workflow_idx ON orch.jobs (tenant_id, workflow_id, id) WHERE workflow_id IS NOT NULL;

CREATE TABLE orch.job_edges (
  tenant_id  text NOT NULL,
  parent_id  bigint NOT NULL,
  child_id   bigint NOT NULL,
  -- what a parent that ends without success (dead-lettered, canceled, timed out) does to the child:
  -- cancel it (and its own dependents), let it run anyway, or keep it waiting until a replay succeeds
  policy     text NOT NULL DEFAULT 'cancel' CHECK (policy IN ('cancel', 'ignore', 'wait')),
  PRIMARY KEY (tenant_id, parent_id, child_id)
);
CREATE INDEX job_edges_child_idx ON orch.job_edges (tenant_id, child_id);

CREATE TABLE orch.workflows (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        text NOT NULL,
  name             text NOT NULL,
  state            text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'succeeded', 'failed', 'canceled')),
  steps            integer NOT NULL,
  -- open_steps: steps not in a final state yet; bad_steps: final ones that did not succeed (their latest run); kept by the transitions
  open_steps       integer NOT NULL,
  bad_steps        integer NOT NULL DEFAULT 0,
  cancel_requested boolean NOT NULL DEFAULT false,
  idempotency_key  text,
  actor            text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz
);
CREATE UNIQUE INDEX workflows_idempotency_idx ON orch.workflows (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX workflows_list_idx ON orch.workflows (tenant_id, created_at DESC, id);

-- Workflows ended, per tenant and outcome, for orchestrator_workflows_total: the scrape reads these
-- few rows, never the workflows table.
CREATE TABLE orch.workflow_outcomes (
  tenant_id text NOT NULL,
  outcome   text NOT NULL,
  n         bigint NOT NULL,
  PRIMARY KEY (tenant_id, outcome)
);

-- Raised (as a serialization failure, which the ledger retries) by a statement ending a job whose
-- dependents changed after its snapshot: the edges it read may miss the new dependent.
CREATE FUNCTION orch.dependency_race(job_id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'a dependent of job % was added while it ended; retry', job_id USING ERRCODE = '40001';
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON orch.job_edges, orch.workflows, orch.workflow_outcomes TO orch_service;

-- The leader fence (0013), as on every ledger table: a leader service's session of a deposed term
-- writes nothing (a leader-only service that ends jobs settles their dependents in these tables).
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['job_edges', 'workflows', 'workflow_outcomes'] LOOP
    EXECUTE format(
      'CREATE TRIGGER leader_term_fence BEFORE INSERT OR UPDATE OR DELETE ON orch.%I FOR EACH STATEMENT '
      'WHEN (coalesce(current_setting(''orch.leader_term'', true), '''') <> '''') EXECUTE FUNCTION orch.check_leader_term()', t);
  END LOOP;
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['job_edges', 'workflows', 'workflow_outcomes'] LOOP
    EXECUTE format('ALTER TABLE orch.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('GRANT SELECT ON orch.%I TO orch_tenant_reader', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON orch.%I FOR SELECT TO orch_tenant_reader USING (orch.visible_tenant(tenant_id))', t);
    EXECUTE format('CREATE POLICY service_all ON orch.%I TO orch_service USING (true) WITH CHECK (true)', t);
  END LOOP;
END $$;

-- Whether the job was enqueued with parents: its claim then carries their results (one probe of the
-- edges for such jobs only).
ALTER TABLE orch.jobs ADD COLUMN has_parents boolean NOT NULL DEFAULT false;
