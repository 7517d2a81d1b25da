-- Fair claims: the claim index leads with (job_type, tenant_id) so a claim can find the tenants
-- with runnable work of a type by skipping through the index (one probe per tenant) and take the
-- head of each tenant's queue in priority order. Replaces the index that ordered a type's queue
-- across tenants.
DROP INDEX orch.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON orch.jobs (job_type, tenant_id, priority DESC, run_after, id)
  WHERE state IN ('queued', 'failed');
-- Whose turn it is to go first when tenants tie in a claim's round robin: each claim takes the next value.
CREATE SEQUENCE orch.claim_turn;

-- Quotas per (tenant, job type); '*' for either covers every tenant or every job type together
-- (('*', 'render') caps all tenants' render jobs as one). A job is covered by up to four quotas,
-- (tenant, type), (tenant, '*'), ('*', type), ('*', '*'), and every one must allow a claim.
-- The claim statement locks the quotas it uses (in key order, so claimers never deadlock),
-- spends from them and writes the new state back in the same transaction.
CREATE TABLE orch.quotas (
  tenant_id        text NOT NULL,
  job_type         text NOT NULL,
  -- limits; NULL = no limit of that kind
  max_active       integer CHECK (max_active >= 0),
  rate_per_second  double precision CHECK (rate_per_second > 0),
  burst            double precision,
  max_per_hour     integer CHECK (max_per_hour >= 0),
  -- the tenant's share when tenants compete for a type (weighted round robin)
  weight           integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
  paused           boolean NOT NULL DEFAULT false,
  -- use: leased jobs covered, token bucket level at tokens_at, claims in the hour from hour_start
  active           integer NOT NULL DEFAULT 0,
  tokens           double precision NOT NULL DEFAULT 0,
  tokens_at        timestamptz NOT NULL DEFAULT now(),
  hour_start       timestamptz NOT NULL DEFAULT now(),
  hour_count       integer NOT NULL DEFAULT 0,
  throttled_count  bigint NOT NULL DEFAULT 0,
  -- a temporary boost: while now() < boost_until these replace the limits above, which stay as
  -- the values to return to, so expiry needs no writer (and survives a restart by construction)
  boost_until      timestamptz,
  boost_max_active integer,
  boost_rate       double precision,
  boost_burst      double precision,
  boost_reason     text,
  boost_ticket     text,
  boost_actor      text,
  reason           text NOT NULL,
  ticket           text,
  actor            text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, job_type),
  CHECK ((rate_per_second IS NULL) = (burst IS NULL)),
  CHECK (burst >= 1 AND burst >= rate_per_second)
);

-- Concurrency slots given back by acks, one row per quota and statement. Acks only insert here,
-- so they never wait on a quota row that claims hold locked; the next claim of the quota (holding
-- its lock) deletes the rows it can see and subtracts them from `active`.
CREATE TABLE orch.quota_releases (
  tenant_id  text NOT NULL,
  job_type   text NOT NULL,
  n          integer NOT NULL
);
-- Claims find their quota's rows through it; B-tree pages shed the killed entries of folded rows as
-- they fill, so it stays small even where autovacuum is slow (the heap is vacuumed by the quota keeper).
CREATE INDEX quota_releases_quota_idx ON orch.quota_releases (tenant_id, job_type);

-- Raised by the optimistic claim when a quota it read filled up before it could spend from it;
-- the claim then runs again with the quotas locked (src/ledger/transitions/claim.ts).
CREATE FUNCTION orch.quota_conflict() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'a quota filled up during the claim' USING ERRCODE = 'serialization_failure';
END $$;

-- What operators did to the controls, append-only: rows are never updated or deleted.
CREATE TABLE orch.audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text NOT NULL,
  tenant_id   text,
  action      text NOT NULL,
  target      text NOT NULL,
  reason      text,
  ticket      text,
  request_id  text,
  result      text NOT NULL,
  details     jsonb
);
CREATE INDEX audit_log_at_idx ON orch.audit_log (at);

CREATE FUNCTION orch.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'orch.audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON orch.audit_log
  FOR EACH ROW EXECUTE FUNCTION orch.audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON orch.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION orch.audit_log_append_only();

-- Tenants seen: registered on first enqueue, so controls can refuse a tenant that does not exist
-- (a typo in a quota would otherwise limit nothing, silently).
CREATE TABLE orch.tenants (
  tenant_id   text PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orch.tenants (tenant_id) SELECT DISTINCT tenant_id FROM orch.jobs;
