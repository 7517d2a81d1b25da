-- The application's own database role. It reads and writes rows but owns nothing: with its
-- credentials nobody can drop or disable the audit log's triggers, alter or drop a table, change
-- a policy or grant more. Production runs the server as a login role that is a member of
-- orch_service (ORCH_DATABASE_URL) and migrations as the owner (ORCH_MIGRATION_DATABASE_URL);
-- docs/security.md says what each can do. Roles are per cluster, hence IF NOT EXISTS.
-- With a single URL the server still acts as orch_service: it sets the role on every connection
-- (src/ledger/db.ts), so development runs with production's privileges.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orch_service') THEN
    CREATE ROLE orch_service NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
-- the owner may act as the service (a single-URL server sets the role at connect; ALTER OWNER below)
GRANT orch_service TO CURRENT_USER;
GRANT USAGE ON SCHEMA orch TO orch_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA orch TO orch_service;
-- the audit log is append-only for the service: no UPDATE, DELETE or TRUNCATE privilege, on top of the triggers
REVOKE UPDATE, DELETE, TRUNCATE ON orch.audit_log FROM orch_service;
-- the migration record is the owner's: the service reads it (/readyz) and cannot mark a migration applied
REVOKE INSERT, UPDATE, DELETE ON orch.schema_migrations FROM orch_service;
-- nextval needs USAGE only; no UPDATE, so no setval (which could rewind the audit log's ids)
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA orch TO orch_service;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA orch TO orch_service;
-- API reads run as the tenant reader (SET LOCAL ROLE, src/auth/tenant-scope.ts)
GRANT orch_tenant_reader TO orch_service;
-- tables later migrations create get the same grants
ALTER DEFAULT PRIVILEGES IN SCHEMA orch GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orch_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA orch GRANT USAGE, SELECT ON SEQUENCES TO orch_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA orch GRANT EXECUTE ON FUNCTIONS TO orch_service;

-- Row-level security binds every role but the owner: the service sees and writes every tenant's
-- rows (its queries name their tenant; the tenant reader is what enforces isolation on reads).
-- A later migration that enables row-level security on a table must add this policy to it too.
DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'orch' AND c.relkind = 'r' AND c.relrowsecurity LOOP
    EXECUTE format('CREATE POLICY service_all ON orch.%I TO orch_service USING (true) WITH CHECK (true)', t);
  END LOOP;
END $$;

-- The delta tables and quota releases are deleted from all the time and VACUUMed by the service
-- (src/ledger/delta-fold.ts, src/flow/quotas.ts); VACUUM by anyone but the owner is skipped with a
-- warning, so the service owns these three. They hold nothing it could not delete anyway, and no
-- trigger. ALTER OWNER needs the new owner to be allowed to create in the schema, for a moment.
GRANT CREATE ON SCHEMA orch TO orch_service;
ALTER TABLE orch.queue_deltas OWNER TO orch_service;
ALTER TABLE orch.dlq_cluster_deltas OWNER TO orch_service;
ALTER TABLE orch.quota_releases OWNER TO orch_service;
REVOKE CREATE ON SCHEMA orch FROM orch_service;

-- `orch leases list` names the sessions blocking the ledger with their queries; other roles' query
-- text needs pg_read_all_stats, which only a superuser (or its admin) can grant. Without it the
-- list still shows the blocking pids.
DO $$
BEGIN
  GRANT pg_read_all_stats TO orch_service;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'orch_service was not granted pg_read_all_stats: blocking sessions are listed without their queries';
END $$;
