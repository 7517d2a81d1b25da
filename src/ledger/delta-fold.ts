import type pg from 'pg';

/** Deleted delta rows after which a fold vacuums its delta table, so reading it stays cheap without autovacuum. */
const VACUUM_AFTER_ROWS = 50_000;

/**
 * Folds an insert-only delta table into its totals table. Counters that many
 * transactions bump at once (queue counts, DLQ clusters) are kept this way:
 * transitions append deltas and never wait on a shared row; the fold takes
 * exactly the committed deltas with DELETE ... RETURNING, so replicas folding
 * at once never count one twice.
 */
export class DeltaFold {
  private deletedSinceVacuum = 0;

  /** `sql` folds the deltas and returns one row with `n`, the number of delta rows taken. */
  constructor(private readonly pool: pg.Pool, private readonly deltaTable: string, private readonly sql: string) {}

  async rollup(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(this.sql);
    const taken = Number(rows[0]!.n);
    this.deletedSinceVacuum += taken;
    if (this.deletedSinceVacuum >= VACUUM_AFTER_ROWS) {
      this.deletedSinceVacuum = 0;
      await this.pool.query(`VACUUM ${this.deltaTable}`);
    }
    return taken;
  }
}
