-- Several replicas and one leader (src/cluster/). Every replica serves the API, claims and SSE;
-- the background work that must run once (lease reaper, rollups, quota keeper, replay runner,
-- outbox relay and pruner) runs on the elected leader only.

-- Replicas report themselves here on every elector run; `orch cluster status` reads it.
CREATE TABLE orch.replicas (
  id            text PRIMARY KEY,
  host          text NOT NULL,
  version       text NOT NULL,
  notify        text NOT NULL,            -- how idle claimers wake: listen (LISTEN/NOTIFY) or poll
  services      text[] NOT NULL DEFAULT '{}',
  started_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  stopped_at    timestamptz
);

-- The one leader: a lease with a term. The holder renews it; anyone takes it once it expired (a new
-- term); a leader that stops resigns by expiring it. Times are the database's clock, never a replica's.
CREATE TABLE orch.cluster_leader (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  term        bigint NOT NULL,
  replica_id  text NOT NULL,
  elected_at  timestamptz NOT NULL,
  renewed_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL
);

-- Every term and who held it: a term has exactly one holder (the key), so two replicas can never
-- run leader-only work under the same term.
CREATE TABLE orch.leader_terms (
  term        bigint PRIMARY KEY,
  replica_id  text NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now()
);

-- The fence. A leader's services use connections whose session carries its term
-- (orch.leader_term); every statement of theirs that writes a ledger table first checks, under a
-- share lock on the leader row, that the term is still the current, unexpired one, and fails
-- otherwise (SQLSTATE OT001). The share lock holds a new election back until the statement's
-- transaction ends, so a deposed leader's write either commits before the next term starts or is
-- refused. Other connections do not carry a term: the WHEN clause skips the function for them.
CREATE FUNCTION orch.check_leader_term() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t bigint := current_setting('orch.leader_term')::bigint;
BEGIN
  PERFORM 1 FROM orch.cluster_leader WHERE term = t AND expires_at > now() FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'leader term % is over: this replica no longer leads', t USING ERRCODE = 'OT001';
  END IF;
  RETURN NULL;
END $$;

-- On every ledger table (a table a later migration adds gets it too; test/cluster.test.ts checks).
DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'orch' AND c.relkind IN ('r', 'p')
             AND c.relname NOT IN ('replicas', 'cluster_leader', 'leader_terms', 'schema_migrations') LOOP
    EXECUTE format(
      'CREATE TRIGGER leader_term_fence BEFORE INSERT OR UPDATE OR DELETE ON orch.%I FOR EACH STATEMENT '
      'WHEN (coalesce(current_setting(''orch.leader_term'', true), '''') <> '''') EXECUTE FUNCTION orch.check_leader_term()', t);
  END LOOP;
END $$;
