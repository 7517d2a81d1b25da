-- Schedules (recurring jobs) and backfills (windows of the past, one job each), with watermarks
-- (src/schedules/, src/backfills/, src/windows/). Both run on the leader only; every tick and every
-- window is a job with an idempotency key naming it, enqueued in the same transaction that moves
-- the schedule's next tick or the window's state, so a crash or a second replica never doubles one.

ALTER TABLE orch.job_transitions DROP CONSTRAINT job_transitions_cause_check,
  ADD CONSTRAINT job_transitions_cause_check CHECK (cause IN (
    'enqueued', 'replayed', 'claimed', 'worker_completed', 'worker_failed', 'worker_released',
    'lease_expired', 'timed_out', 'force_released', 'worker_lost', 'operator_canceled', 'dlq_cleared',
    'scheduled', 'backfilled'));

CREATE TABLE orch.schedules (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     text NOT NULL,
  name          text NOT NULL,
  job_type      text NOT NULL,
  payload       jsonb NOT NULL DEFAULT 'null',   -- a template: {{windowStart}}, {{tick}}, {{watermark}}, ...
  priority      integer NOT NULL DEFAULT 0,
  max_attempts  integer,
  cron          text,                            -- five fields, or six with seconds first
  every_ms      bigint CHECK (every_ms >= 1000),
  time_zone     text NOT NULL DEFAULT 'UTC',
  starts_at     timestamptz,
  ends_at       timestamptz,
  enabled       boolean NOT NULL DEFAULT true,
  catch_up      text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('skip', 'latest', 'all')),
  catch_up_max  integer NOT NULL DEFAULT 100 CHECK (catch_up_max BETWEEN 1 AND 10000),
  next_tick_at  timestamptz,                     -- null once the schedule has ended
  last_tick_at  timestamptz,                     -- the last tick that enqueued a job: the next window starts there
  last_job_id   bigint,
  ticks         bigint NOT NULL DEFAULT 0,       -- ticks that enqueued a job
  missed_ticks  bigint NOT NULL DEFAULT 0,       -- ticks that came and went with no job (catch-up policy, or over its bound)
  watermark     timestamptz,                     -- end of the contiguous run of succeeded ticks
  created_by    text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name),
  CHECK ((cron IS NULL) <> (every_ms IS NULL)),
  CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);
-- The scheduler's one query: the due ones, soonest first.
CREATE INDEX schedules_due ON orch.schedules (next_tick_at) WHERE enabled AND next_tick_at IS NOT NULL;

CREATE TABLE orch.backfills (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     text NOT NULL,
  job_type      text NOT NULL,
  range_from    timestamptz NOT NULL,
  range_to      timestamptz NOT NULL,
  window_ms     bigint NOT NULL CHECK (window_ms >= 1000),
  payload       jsonb NOT NULL DEFAULT 'null',
  priority      integer NOT NULL DEFAULT 0,
  concurrency   integer NOT NULL CHECK (concurrency BETWEEN 1 AND 10000),
  reprocess     text NOT NULL CHECK (reprocess IN ('none', 'failed', 'all')),
  state         text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'paused', 'canceled', 'done')),
  windows       integer NOT NULL,
  watermark     timestamptz,                     -- end of the contiguous run of completed windows from range_from
  actor         text NOT NULL,
  reason        text NOT NULL,
  ticket        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz,
  CHECK (range_to > range_from)
);
CREATE INDEX backfills_active ON orch.backfills (created_at) WHERE state = 'running';
CREATE INDEX backfills_tenant ON orch.backfills (tenant_id, created_at DESC);

-- One row per backfill window and per schedule tick that ran: the job that runs it and how it ended.
-- owner_id is a backfill's or a schedule's id; seq orders the windows from the start.
CREATE TABLE orch.windows (
  owner_id    uuid NOT NULL,
  seq         integer NOT NULL,
  tenant_id   text NOT NULL,
  job_type    text NOT NULL,
  starts_at   timestamptz NOT NULL,
  ends_at     timestamptz NOT NULL,
  state       text NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'canceled', 'skipped', 'covered')),
  job_id      bigint,
  runs        integer NOT NULL DEFAULT 0,        -- jobs run for it (a retry of a failed window is the next run)
  note        text,                              -- why it did not start as pending (it ran before, or runs elsewhere)
  settled_at  timestamptz,
  PRIMARY KEY (owner_id, seq)
);
-- What the settler reads each run: windows whose job has not ended yet.
CREATE INDEX windows_running ON orch.windows (owner_id, seq) WHERE state = 'running';
-- The runner launches a backfill's next windows in order.
CREATE INDEX windows_pending ON orch.windows (owner_id, seq) WHERE state = 'pending';
-- A new backfill asks which of its windows already ran (the reprocess policy).
CREATE INDEX windows_bounds ON orch.windows (tenant_id, job_type, starts_at, ends_at);

-- Per tenant and job type, the furthest watermark of any schedule or backfill; it only moves forward.
CREATE TABLE orch.watermarks (
  tenant_id   text NOT NULL,
  job_type    text NOT NULL,
  watermark   timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, job_type)
);

-- The leader fence (0013) on the new tables: a deposed leader's scheduler cannot fire a tick.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['schedules', 'backfills', 'windows', 'watermarks'] LOOP
    EXECUTE format(
      'CREATE TRIGGER leader_term_fence BEFORE INSERT OR UPDATE OR DELETE ON orch.%I FOR EACH STATEMENT '
      'WHEN (coalesce(current_setting(''orch.leader_term'', true), '''') <> '''') EXECUTE FUNCTION orch.check_leader_term()', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON orch.schedules, orch.backfills, orch.windows, orch.watermarks TO orch_service;

-- Tenant isolation (0007, 0009): the tenant reader sees its tenants' rows only; the service all rows.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['schedules', 'backfills', 'windows', 'watermarks'] LOOP
    EXECUTE format('ALTER TABLE orch.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('GRANT SELECT ON orch.%I TO orch_tenant_reader', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON orch.%I FOR SELECT TO orch_tenant_reader USING (orch.visible_tenant(tenant_id))', t);
    EXECUTE format('CREATE POLICY service_all ON orch.%I TO orch_service USING (true) WITH CHECK (true)', t);
  END LOOP;
END $$;
