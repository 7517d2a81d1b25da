/**
 * The channel claimers LISTEN on (src/dispatch/notifier.ts). Payloads:
 * "<jobType> <count> <tenantId>" (count jobs of that queue became runnable),
 * "<jobType> 0" (wake every waiter of the type: a resume, a freed slot), "*"
 * (wake everyone). Job types and tenant ids hold no spaces (src/wire.ts).
 */
export const JOBS_CHANNEL = 'orch_jobs';

/**
 * A CTE body that tells listeners which queues gained runnable jobs: one
 * notification per (type, tenant) among the rows of `rows` (a CTE with
 * job_type and tenant_id) that match `where`. Identical notifications in one
 * transaction are delivered once, at commit.
 */
export const notifyRunnable = (rows: string, where = 'true') =>
  `SELECT pg_notify('${JOBS_CHANNEL}', job_type || ' ' || count(*) || ' ' || tenant_id) FROM ${rows} WHERE ${where} GROUP BY job_type, tenant_id`;
