import type pg from 'pg';
import { LedgerError } from '../ledger/errors.ts';
import { JobTypes } from '../ledger/job-types.ts';
import { JOBS_CHANNEL } from '../ledger/channel.ts';
import type { OperatorAction } from '../audit/audit-log.ts';
import { runOperatorAction } from '../audit/operator-action.ts';
import { validateTenant } from '../ledger/validate.ts';

/** Every tenant or every job type. */
export const ALL = '*';

export interface Pause {
  tenantId: string;
  jobType: string;
  reason: string;
  ticket: string | null;
  actor: string;
  pausedAt: string;
}

interface PauseRow { tenant_id: string; job_type: string; reason: string; ticket: string | null; actor: string; paused_at: Date }

const toPause = (r: PauseRow): Pause => ({
  tenantId: r.tenant_id, jobType: r.job_type, reason: r.reason, ticket: r.ticket, actor: r.actor, pausedAt: r.paused_at.toISOString(),
});

const what = (action: string, tenantId: string, jobType: string) => ({ action, tenantId: tenantId === ALL ? null : tenantId, target: `dispatch:${tenantId}/${jobType}` });

function validateScope(tenantId: string, jobType: string): void {
  if (tenantId !== ALL) validateTenant(tenantId, 'tenantId');
  if (jobType !== ALL) JobTypes.validateName(jobType, 'jobType');
}

/**
 * Pause and resume dispatch. A pause stops new claims of the work it covers;
 * running jobs finish normally. Resume wakes idle claimers at once.
 */
export class Pauses {
  constructor(private readonly pool: pg.Pool) {}

  async pause(tenantId: string, jobType: string, op: OperatorAction): Promise<Pause> {
    validateScope(tenantId, jobType);
    return runOperatorAction(this.pool, op, what('dispatch.pause', tenantId, jobType), async ({ client }) => {
      const { rows } = await client.query<PauseRow>(
        `INSERT INTO orch.dispatch_pauses (tenant_id, job_type, reason, ticket, actor) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, job_type) DO UPDATE SET reason = EXCLUDED.reason, ticket = EXCLUDED.ticket, actor = EXCLUDED.actor
         RETURNING *`,
        [tenantId, jobType, op.reason, op.ticket, op.actor],
      );
      return { result: toPause(rows[0]!), details: {} };
    });
  }

  /** Removes the pause with exactly this scope; other pauses that cover the work stay. */
  async resume(tenantId: string, jobType: string, op: OperatorAction): Promise<Pause> {
    validateScope(tenantId, jobType);
    return runOperatorAction(this.pool, op, what('dispatch.resume', tenantId, jobType), async ({ client }) => {
      const { rows } = await client.query<PauseRow>(
        `WITH gone AS (DELETE FROM orch.dispatch_pauses WHERE tenant_id = $1 AND job_type = $2 RETURNING *)
         SELECT gone.*, pg_notify('${JOBS_CHANNEL}', $2 || ' 0') IS NULL AS woke FROM gone`,
        [tenantId, jobType],
      );
      if (!rows[0]) throw new LedgerError('not_found', 'jobType', `no pause for tenant ${tenantId} and job type ${jobType}`);
      return { result: toPause(rows[0]), details: {} };
    });
  }

  async list(): Promise<Pause[]> {
    const { rows } = await this.pool.query<PauseRow>('SELECT * FROM orch.dispatch_pauses ORDER BY paused_at');
    return rows.map(toPause);
  }
}
