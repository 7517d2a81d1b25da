import type pg from 'pg';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';
import type { EventBus } from './bus.ts';
import { expand, readOutbox, type OrchEvent } from './envelope.ts';

/** Advisory lock key held by the one relay that publishes ("orchrely"). */
const LEADER_LOCK = 0x6f726368_72656c79n;
/** Publishes in flight at once. */
const IN_FLIGHT = 5000;
/** The pending gauge counts no further (a long NATS outage must not make each run count millions of rows). */
const PENDING_COUNT_CAP = 1_000_000;

export interface RelayObserver {
  onPublished(events: OrchEvent[], lagsMs: number[]): void;
  onPending(rows: number): void;
}

/**
 * Publishes outbox rows to JetStream and marks them published only once
 * every event of the row is acknowledged. A failure leaves the rows pending:
 * the next run publishes them again under the same event ids, which
 * JetStream's duplicate window drops. One relay publishes at a time when
 * several servers share the database: the leader holds a PostgreSQL
 * advisory lock on its own connection; when it dies the connection closes,
 * the lock goes, and another server's relay takes over at its next run.
 */
export class OutboxRelay extends PeriodicService {
  readonly name = 'outbox-relay';
  private leader: pg.PoolClient | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly bus: EventBus,
    private readonly batchRows: number,
    intervalMs: number,
    log: Logger,
    private readonly observer: RelayObserver,
  ) {
    super(intervalMs, log);
  }

  get isLeader(): boolean {
    return this.leader !== null;
  }

  protected async runOnce(): Promise<RunResult> {
    if (!(await this.lead())) return { count: 0, more: false };
    const rows = await readOutbox(this.pool, { limit: this.batchRows, pendingOnly: true });
    if (rows.length === 0) {
      this.observer.onPending(0);
      return { count: 0, more: false };
    }
    const events = await expand(this.pool, rows);
    try {
      for (let i = 0; i < events.length; i += IN_FLIGHT) await this.bus.publishAll(events.slice(i, i + IN_FLIGHT).map((p) => p.event));
    } catch (err) {
      this.observer.onPending(await this.countPending());
      throw err;
    }
    const { rows: marked } = await this.pool.query<{ lag_ms: number }>(
      `UPDATE orch.outbox o SET published_at = now() FROM unnest($1::xid8[], $2::bigint[]) AS p(xid, seq)
       WHERE o.xid = p.xid AND o.seq = p.seq RETURNING extract(epoch FROM now() - o.at)::float8 * 1000 AS lag_ms`,
      [rows.map((r) => r.xid), rows.map((r) => r.seq)]);
    this.observer.onPublished(events.map((p) => p.event), marked.map((m) => m.lag_ms));
    this.observer.onPending(rows.length < this.batchRows ? 0 : await this.countPending());
    return { count: events.length, more: rows.length === this.batchRows };
  }

  /** Rows waiting for JetStream, counted up to a cap (only when behind: caught up, it is 0). */
  private async countPending(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM (SELECT 1 FROM orch.outbox WHERE published_at IS NULL LIMIT ${PENDING_COUNT_CAP}) x`);
    return Number(rows[0]!.n);
  }

  /** Takes (or keeps) the leader lock; false when another server's relay holds it. */
  private async lead(): Promise<boolean> {
    if (this.leader) return true;
    const client = await this.pool.connect();
    try {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LEADER_LOCK.toString()]);
      if (!rows[0]!.ok) {
        client.release();
        return false;
      }
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
    // A broken connection loses the lock with it: drop the client and elect again.
    client.on('error', (err) => {
      if (this.leader !== client) return;
      this.leader = null;
      client.release(err);
    });
    this.leader = client;
    this.log.info('outbox relay is the leader');
    return true;
  }

  override async stop(): Promise<void> {
    await super.stop();
    const client = this.leader;
    this.leader = null;
    if (client) {
      await client.query('SELECT pg_advisory_unlock($1)', [LEADER_LOCK.toString()]).catch(() => undefined);
      client.release();
    }
  }
}
