-- The lease length a claim was granted (its leaseMs, or the job type's at the time), so heartbeats
-- renew by what the holder was promised rather than by the job type's current default. NULL for
-- leases granted before this migration: those renew by the job type's lease length, as before.
ALTER TABLE orch.jobs ADD COLUMN lease_ms integer;
