import type pg from 'pg';
import type { Config } from '../config/config.ts';
import { withTransaction, type Queryable } from './db.ts';
import { LedgerError } from './errors.ts';
import { toJobType, type JobTypeRow } from './rows.ts';
import type { JobTypeDefinition } from './types.ts';

/** Letters, digits, "_" and "-": job types become metric labels and NATS subject tokens. */
export const JOB_TYPE_PATTERN = '^[A-Za-z][A-Za-z0-9_-]{0,63}$';
const JOB_TYPE_RE = new RegExp(JOB_TYPE_PATTERN);
const CREATE_LOCK = 0x6f726374; // serialises job type creation so the cap holds across replicas

export type JobTypeSettings = Partial<Omit<JobTypeDefinition, 'name' | 'implicit' | 'createdAt' | 'updatedAt'>>;

/**
 * Job types and their defaults. Types are created explicitly (define) or on
 * first enqueue with the server defaults, never beyond config.maxJobTypes.
 */
export class JobTypes {
  /** Names known to exist; types are never deleted, so a hit never goes stale. */
  private readonly known = new Set<string>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly config: Pick<Config, 'maxJobTypes' | 'jobTypeDefaults'>,
  ) {}

  static validateName(name: string, field = 'jobType'): void {
    if (!JOB_TYPE_RE.test(name)) {
      throw new LedgerError('invalid', field, `${field} "${name.slice(0, 80)}" must match ${JOB_TYPE_PATTERN}`);
    }
  }

  /** Makes sure every name exists, creating missing ones with defaults. Runs on the pool, outside any caller transaction. */
  async ensure(names: Iterable<string>): Promise<void> {
    const missing = [...new Set(names)].filter((n) => !this.known.has(n));
    if (missing.length === 0) return;
    missing.forEach((n) => JobTypes.validateName(n));
    await withTransaction(this.pool, (tx) => this.createMissing(tx, missing));
    missing.forEach((n) => this.known.add(n));
  }

  /** Creates those of `names` that do not exist, with the defaults, within the job type cap; in the caller's transaction. */
  private async createMissing(tx: Queryable, names: string[]): Promise<void> {
    const d = this.config.jobTypeDefaults;
    await tx.query('SELECT pg_advisory_xact_lock($1)', [CREATE_LOCK]);
    const existing = await tx.query<{ name: string }>('SELECT name FROM orch.job_types WHERE name = ANY($1)', [names]);
    const toCreate = names.filter((n) => !existing.rows.some((r) => r.name === n));
    if (toCreate.length === 0) return;
    const { rows } = await tx.query<{ n: string }>('SELECT count(*) AS n FROM orch.job_types');
    if (Number(rows[0]!.n) + toCreate.length > this.config.maxJobTypes) {
      throw new LedgerError('limit', 'jobType', `job type limit reached (${this.config.maxJobTypes}); define fewer job types or raise ORCH_MAX_JOB_TYPES`);
    }
    await tx.query(
      `INSERT INTO orch.job_types (name, max_attempts, backoff_base_ms, backoff_max_ms, backoff_jitter, lease_ms, timeout_ms, implicit)
       SELECT n, $2, $3, $4, $5, $6, $7, true FROM unnest($1::text[]) AS n ON CONFLICT (name) DO NOTHING`,
      [toCreate, d.maxAttempts, d.backoffBaseMs, d.backoffMaxMs, d.backoffJitter, d.leaseMs, d.timeoutMs],
    );
  }

  /**
   * Creates or updates a job type's defaults; unspecified settings keep their current (or default)
   * values. Given a caller's transaction client as `db`, the type is created in that transaction
   * too, so a definition rolled back (its audit entry failed) leaves no type behind; `known` is
   * filled only by ensure, after its own commit.
   */
  async define(name: string, settings: JobTypeSettings, db: Queryable = this.pool): Promise<JobTypeDefinition> {
    JobTypes.validateName(name, 'name');
    if (db === this.pool) return withTransaction(this.pool, (tx) => this.upsert(tx, name, settings));
    return this.upsert(db, name, settings);
  }

  private async upsert(tx: Queryable, name: string, settings: JobTypeSettings): Promise<JobTypeDefinition> {
    await this.createMissing(tx, [name]);
    const { rows: [cur] } = await tx.query<JobTypeRow>('SELECT * FROM orch.job_types WHERE name = $1 FOR UPDATE', [name]);
    const next = { ...toJobType(cur!), ...Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined)) };
    if (next.backoffMaxMs < next.backoffBaseMs) {
      throw new LedgerError('invalid', 'backoffMaxMs', 'backoffMaxMs must be >= backoffBaseMs');
    }
    const { rows } = await tx.query<JobTypeRow>(
      `UPDATE orch.job_types SET max_attempts = $2, backoff_base_ms = $3, backoff_max_ms = $4, backoff_jitter = $5,
         lease_ms = $6, timeout_ms = $7, implicit = false, updated_at = now()
       WHERE name = $1 RETURNING *`,
      [name, next.maxAttempts, next.backoffBaseMs, next.backoffMaxMs, next.backoffJitter, next.leaseMs, next.timeoutMs],
    );
    return toJobType(rows[0]!);
  }

  async get(db: Queryable, name: string): Promise<JobTypeDefinition | null> {
    const { rows } = await db.query<JobTypeRow>('SELECT * FROM orch.job_types WHERE name = $1', [name]);
    return rows[0] ? toJobType(rows[0]) : null;
  }

  async list(db: Queryable): Promise<JobTypeDefinition[]> {
    const { rows } = await db.query<JobTypeRow>('SELECT * FROM orch.job_types ORDER BY name');
    return rows.map(toJobType);
  }
}
