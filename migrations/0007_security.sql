-- API tokens for workers and scripts: the secret is never stored, only its SHA-256; a token
-- is "orch_<id without dashes>_<secret>", so verification is a primary-key lookup and a
-- constant-time comparison of hashes.
CREATE TABLE orch.api_tokens (
  id           uuid PRIMARY KEY,
  subject      text NOT NULL,
  tenants      text[] NOT NULL,          -- {'*'} = every tenant
  scopes       text[] NOT NULL,
  job_types    text[],                   -- orch:worker tokens: the job types they may claim; NULL = any
  secret_hash  bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  created_by   text NOT NULL,
  expires_at   timestamptz,
  revoked_at   timestamptz,
  CHECK (cardinality(tenants) > 0 AND cardinality(scopes) > 0)
);

-- Tenant isolation in depth. API reads of tenant-owned rows run as this role (SET LOCAL ROLE,
-- src/auth/tenant-scope.ts) with orch.tenants set to the caller's tenants, so row-level security
-- filters them even if a query forgets its tenant condition. The role can only read: the
-- service's writes go through the transitions, as the owner. Roles are per cluster, hence IF NOT EXISTS.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orch_tenant_reader') THEN
    CREATE ROLE orch_tenant_reader NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END $$;
GRANT orch_tenant_reader TO CURRENT_USER;
GRANT USAGE ON SCHEMA orch TO orch_tenant_reader;

-- the caller's tenants, as src/auth/tenant-scope.ts sets them for the transaction; rows of
-- tenant '*' (outbox events for every tenant) are everyone's
CREATE FUNCTION orch.visible_tenant(tenant text) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT current_setting('orch.tenants', true) = '*' OR tenant = '*'
      OR tenant = ANY (string_to_array(current_setting('orch.tenants', true), ','))
$$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['jobs', 'job_transitions', 'outbox', 'audit_log', 'dlq_snapshots', 'dlq_replays', 'dlq_clusters', 'queue_counts', 'queue_deltas'] LOOP
    EXECUTE format('ALTER TABLE orch.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('GRANT SELECT ON orch.%I TO orch_tenant_reader', t);
    -- the owner (the service's own role) keeps its access: policies bind only the reader role
    EXECUTE format('CREATE POLICY tenant_isolation ON orch.%I FOR SELECT TO orch_tenant_reader USING (orch.visible_tenant(tenant_id))', t);
  END LOOP;
END $$;
-- tables without a tenant the reader's queries join with
GRANT SELECT ON orch.job_types, orch.tenants, orch.dispatch_pauses, orch.quotas, orch.workers, orch.dlq_cluster_deltas TO orch_tenant_reader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA orch TO orch_tenant_reader;
