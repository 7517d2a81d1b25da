-- The job ledger: job types, jobs and their immutable history.
-- Shipped migrations are never edited; add a new numbered file instead.

CREATE TYPE orch.job_state AS ENUM (
  'queued', 'leased', 'succeeded', 'failed', 'dead_lettered', 'canceled', 'timed_out'
);

-- Job types are global (they are metric labels), capped in number by the server.
CREATE TABLE orch.job_types (
  name              text PRIMARY KEY,
  max_attempts      integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 1000),
  backoff_base_ms   integer NOT NULL CHECK (backoff_base_ms >= 0),
  backoff_max_ms    integer NOT NULL CHECK (backoff_max_ms >= backoff_base_ms),
  backoff_jitter    real    NOT NULL CHECK (backoff_jitter BETWEEN 0 AND 1),
  lease_ms          integer NOT NULL CHECK (lease_ms >= 1000),
  timeout_ms        integer CHECK (timeout_ms IS NULL OR timeout_ms >= 1000),
  implicit          boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orch.jobs (
  -- unique by its identity sequence (GENERATED ALWAYS admits no other values); the primary key
  -- leads with the tenant so that one index serves lookups and per-tenant listing
  id               bigint GENERATED ALWAYS AS IDENTITY,
  tenant_id        text NOT NULL,
  -- no foreign key to job_types: JobTypes.ensure creates a type before its first job and types are
  -- never deleted, so the per-row trigger would only slow enqueue down
  job_type         text NOT NULL,
  state            orch.job_state NOT NULL DEFAULT 'queued',
  priority         integer NOT NULL DEFAULT 0 CHECK (priority >= 0),
  payload          jsonb NOT NULL,
  run_after        timestamptz NOT NULL DEFAULT now(),
  attempt          integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
  idempotency_key  text,
  correlation_id   text,
  replay_of        bigint,
  -- current or last lease; kept after the ack so that a repeated ack is recognised
  lease_id         uuid,
  -- the outcome the lease holder acked ('succeeded' | 'failed'), so a repeated ack is a no-op
  acked            text CHECK (acked IN ('succeeded', 'failed')),
  lease_until      timestamptz,
  worker_id        text,
  heartbeat_at     timestamptz,
  started_at       timestamptz,
  deadline_at      timestamptz,
  progress         real,
  progress_message text,
  result           jsonb,
  artifacts        jsonb,
  last_error       jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz,
  -- batch ids of the orch.job_transitions rows recording this job's transitions, oldest first
  history          uuid[] NOT NULL DEFAULT '{}',
  PRIMARY KEY (tenant_id, id)
);

-- Claim order: priority (higher first), then run_after, then id. Only runnable rows are indexed.
CREATE INDEX jobs_claim_idx ON orch.jobs (job_type, priority DESC, run_after, id)
  WHERE state IN ('queued', 'failed');
-- The reaper's scan: only leased rows.
CREATE INDEX jobs_lease_idx ON orch.jobs (lease_until) WHERE state = 'leased';
CREATE UNIQUE INDEX jobs_idempotency_idx ON orch.jobs (tenant_id, job_type, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- History, append-only and written in batches: each transition statement appends one row per
-- tenant it touched, holding that statement's entries column-wise (entry i of every array belongs
-- to job_ids[i]). A job finds its rows through jobs.history, which lists their batch ids in the
-- order the transitions happened. One row per batch instead of one per job keeps history off the
-- hot path's cost (no per-job heap tuple or index entry), while every transition is still recorded.
CREATE TABLE orch.job_transitions (
  batch_id    uuid NOT NULL,
  tenant_id   text NOT NULL,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text NOT NULL,
  reason      text,
  job_ids     bigint[] NOT NULL,
  from_states orch.job_state[] NOT NULL,
  to_states   orch.job_state[] NOT NULL,
  attempts    integer[] NOT NULL,
  lease_ids   uuid[] NOT NULL,
  errors      jsonb[] NOT NULL,
  PRIMARY KEY (batch_id, tenant_id)
);

-- One row per job transition, for operators and ad-hoc queries (it scans: use jobs.history to look up one job).
CREATE VIEW orch.job_history AS
SELECT e.job_id, t.tenant_id, t.at, e.from_state, e.to_state, e.attempt, e.lease_id, t.actor, t.reason, e.error, t.batch_id
FROM orch.job_transitions t
CROSS JOIN LATERAL unnest(t.job_ids, t.from_states, t.to_states, t.attempts, t.lease_ids, t.errors)
  AS e(job_id, from_state, to_state, attempt, lease_id, error);
