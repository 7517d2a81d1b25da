-- Events: a transactional outbox. Every transition statement appends one row per tenant it touched,
-- naming its history batch (orch.job_transitions) instead of copying it: the relay and the SSE stream
-- expand a row into one event per job from the batch. Other events (progress, operator controls)
-- carry their events inline. xid is the writing transaction's id: readers take only rows whose
-- transaction is older than every running one (xid < pg_snapshot_xmin), in (xid, seq) order, so a row
-- that commits late can never fall behind a reader's cursor, and the events of one job, whose
-- transitions commit one after another, come out in the order they happened.
CREATE TABLE orch.outbox (
  seq          bigint GENERATED ALWAYS AS IDENTITY,
  xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
  tenant_id    text NOT NULL,
  batch_id     uuid,
  events       jsonb,
  at           timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  PRIMARY KEY (xid, seq),
  CHECK ((batch_id IS NULL) <> (events IS NULL))
);
-- The relay's queue: rows not yet acknowledged by JetStream.
CREATE INDEX outbox_pending_idx ON orch.outbox (xid, seq) WHERE published_at IS NULL;
-- The pruner's scan.
CREATE INDEX outbox_at_idx ON orch.outbox (at);

-- The job type of each history entry (entry i belongs to job_ids[i]), so the relay names an event's
-- subject without reading the job table. NULL in rows written before this migration.
ALTER TABLE orch.job_transitions ADD COLUMN job_types text[];
-- The few jobs whose events need more than the history holds: a correlation id, or a replay's original.
CREATE INDEX jobs_event_extras_idx ON orch.jobs (tenant_id, id) INCLUDE (correlation_id, replay_of)
  WHERE correlation_id IS NOT NULL OR replay_of IS NOT NULL;
