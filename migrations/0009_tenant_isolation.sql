-- Tenant isolation, completed.
--
-- 1. The reader's tenant scope is a JSON array (or '*'), never a comma list: a tenant id that
--    slipped past validation with a comma in it can no longer be read as two tenants.
CREATE OR REPLACE FUNCTION orch.visible_tenant(tenant text) RETURNS boolean LANGUAGE sql STABLE AS $$
  -- CASE fixes the order: the JSON cast runs only on a value that is a JSON array
  SELECT CASE
    WHEN tenant = '*' THEN true
    WHEN current_setting('orch.tenants', true) = '*' THEN true
    WHEN left(current_setting('orch.tenants', true), 1) = '[' THEN current_setting('orch.tenants', true)::jsonb ? tenant
    ELSE false
  END
$$;

-- 2. Workers belong to the tenant they claim for ('*': a worker claiming for every tenant); a
--    worker id is unique per tenant, so one tenant's claim cannot overwrite another's record.
--    A worker that stops cleanly says so (stopped_at) and is never reported lost.
ALTER TABLE orch.workers ADD COLUMN tenant_id text NOT NULL DEFAULT '*', ADD COLUMN stopped_at timestamptz;
ALTER TABLE orch.workers ALTER COLUMN tenant_id DROP DEFAULT;
ALTER TABLE orch.workers DROP CONSTRAINT workers_pkey, ADD PRIMARY KEY (tenant_id, worker_id);
CREATE INDEX workers_worker_idx ON orch.workers (worker_id);

-- 3. Row-level security on every table holding a tenant's data (test/isolation.test.ts lists the
--    tables with a tenant column from the catalog, so a new one without a policy fails it).
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['dispatch_pauses', 'quotas', 'quota_releases', 'tenants', 'workers', 'dlq_cluster_deltas'] LOOP
    EXECUTE format('ALTER TABLE orch.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('GRANT SELECT ON orch.%I TO orch_tenant_reader', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON orch.%I FOR SELECT TO orch_tenant_reader USING (orch.visible_tenant(tenant_id))', t);
  END LOOP;
END $$;
