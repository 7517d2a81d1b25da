-- Recovery: the dead-letter queue's clusters, snapshots and replays; the worker registry.

-- A dead-lettered job that an operator cleared from the DLQ after a snapshot. Terminal; the row and its
-- history stay. (Added to the enum here and first used by later statements: a value added in a
-- transaction cannot be used in it.)
ALTER TYPE orch.job_state ADD VALUE 'cleared';

-- Replaying the same job twice creates one new job: a job is the replay of at most one other.
CREATE UNIQUE INDEX jobs_replay_of_idx ON orch.jobs (tenant_id, replay_of) WHERE replay_of IS NOT NULL;
-- DLQ listing, newest first, keyset on (finished_at, id): one index for all types, one per type
-- (which also finds a type's oldest entry with one probe). Partial, so only dead letters pay for them.
CREATE INDEX jobs_dlq_idx ON orch.jobs (tenant_id, finished_at, id) WHERE state = 'dead_lettered';
CREATE INDEX jobs_dlq_type_idx ON orch.jobs (tenant_id, job_type, finished_at, id) WHERE state = 'dead_lettered';

-- An error message with what varies between occurrences (ids, numbers, hex) replaced by placeholders,
-- so "order 1234 not found" and "order 98 not found" fall into one cluster.
CREATE FUNCTION orch.error_fingerprint(message text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT left(btrim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(coalesce(message, ''),
    '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'gi'),
    '\m0x[0-9a-f]+\M', '<hex>', 'gi'),
    '\m(?=[0-9]*[a-f])(?=[a-f]*[0-9])[0-9a-f]{8,}\M', '<hex>', 'gi'),
    '[0-9]+([.,][0-9]+)*', '<n>', 'g'),
    '\s+', ' ', 'g')), 200)
$$;

-- Dead letters per (tenant, type, error class, fingerprint), kept as jobs enter and leave the DLQ, so
-- `dlq stats` never groups the job table. Same scheme as the queue counts: transitions append to the
-- insert-only delta table; a rollup folds it in. n counts entries in the DLQ now; first/last seen
-- cover every entry the cluster ever had (a delta's `at` is when its entry entered the DLQ; NULL for an
-- entry leaving it, which is no sighting).
CREATE TABLE orch.dlq_clusters (
  tenant_id   text NOT NULL,
  job_type    text NOT NULL,
  error_class text NOT NULL,
  fingerprint text NOT NULL,
  n           bigint NOT NULL,
  -- NULL only until a fold brings the cluster's first sighting (least/greatest skip NULLs)
  first_seen  timestamptz,
  last_seen   timestamptz,
  PRIMARY KEY (tenant_id, job_type, error_class, fingerprint)
);
CREATE TABLE orch.dlq_cluster_deltas (
  tenant_id   text NOT NULL,
  job_type    text NOT NULL,
  error_class text NOT NULL,
  fingerprint text NOT NULL,
  delta       bigint NOT NULL,
  at          timestamptz
);
INSERT INTO orch.dlq_clusters (tenant_id, job_type, error_class, fingerprint, n, first_seen, last_seen)
  SELECT tenant_id, job_type, coalesce(last_error->>'class', 'unknown'), orch.error_fingerprint(last_error->>'message'),
         count(*), min(finished_at), max(finished_at)
  FROM orch.jobs WHERE state = 'dead_lettered'
  GROUP BY 1, 2, 3, 4;

-- A snapshot names the dead letters it holds (job ids in ascending order) and the sha256 of their
-- NDJSON rendering, which is regenerated on download: the rendering leaves out everything that can
-- change after a job is dead-lettered, so the same entries always give the same bytes.
CREATE TABLE orch.dlq_snapshots (
  id         uuid PRIMARY KEY,
  tenant_id  text NOT NULL,
  filter     jsonb NOT NULL,
  job_ids    bigint[] NOT NULL,
  entries    integer NOT NULL,
  bytes      bigint NOT NULL,
  sha256     text NOT NULL,
  actor      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dlq_snapshots_tenant_idx ON orch.dlq_snapshots (tenant_id, created_at DESC);

-- A replay of many jobs, worked through in batches by the replay runner. `done` is how far through
-- job_ids it got; each batch advances it in the transaction that creates the batch's jobs, so an
-- interrupted replay resumes where it stopped and no job is replayed twice.
CREATE TABLE orch.dlq_replays (
  id          uuid PRIMARY KEY,
  tenant_id   text NOT NULL,
  selection   jsonb NOT NULL,
  job_ids     bigint[] NOT NULL,
  total       integer NOT NULL,
  done        integer NOT NULL DEFAULT 0,
  created     integer NOT NULL DEFAULT 0,
  priority    integer CHECK (priority IS NULL OR priority >= 0),
  state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
  actor       text NOT NULL,
  reason      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX dlq_replays_running_idx ON orch.dlq_replays (created_at) WHERE state = 'running';
CREATE INDEX dlq_replays_tenant_idx ON orch.dlq_replays (tenant_id, created_at DESC);

-- Workers as the server last saw them: refreshed by claims and heartbeats (at most every few seconds
-- per worker). A worker silent past ORCH_WORKER_LOST_AFTER_MS is marked lost and the lease reaper
-- releases its leases without waiting for each lease's deadline.
CREATE TABLE orch.workers (
  worker_id  text PRIMARY KEY,
  host       text,
  version    text,
  job_types  text[] NOT NULL DEFAULT '{}',
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz NOT NULL DEFAULT now(),
  lost_at    timestamptz
);
CREATE INDEX workers_lost_idx ON orch.workers (worker_id) WHERE lost_at IS NOT NULL;
