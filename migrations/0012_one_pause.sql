-- One pause mechanism: a paused quota was a second way to hold work back (a flag on the quota row,
-- with no reason, ticket or actor of its own). Pauses live in orch.dispatch_pauses only; a quota's
-- "paused" is now read from there (a pause covering the quota's whole scope), and the quota
-- pause/resume routes write there. Quotas paused before this migration become dispatch pauses.
INSERT INTO orch.dispatch_pauses (tenant_id, job_type, reason, ticket, actor, paused_at)
SELECT tenant_id, job_type, 'paused as a quota (moved by migration 0012)', NULL, 'system:migration', updated_at
FROM orch.quotas WHERE paused
ON CONFLICT (tenant_id, job_type) DO NOTHING;

ALTER TABLE orch.quotas DROP COLUMN paused;
