import type pg from 'pg';
import type { Logger } from '../logging.ts';
import { PeriodicService, type RunResult } from '../maintenance/service.ts';
import type { EventBus } from './bus.ts';
import { expandEach, readOutbox, type EventType, type OrchEvent } from './envelope.ts';

/**
 * Publishes in flight at once, and the events built between two waits for
 * JetStream: the relay shares its event loop with the API and the leader's
 * renewals, so it never holds it for long (about 100 ms for 2,000 events).
 */
const IN_FLIGHT = 2000;
/** The pending gauge counts no further (a long NATS outage must not make each run count millions of rows). */
const PENDING_COUNT_CAP = 1_000_000;

export interface RelayObserver {
  /** Events published (and their rows marked) in one run, by type; each row's commit-to-publish lag. */
  onPublished(published: ReadonlyMap<EventType, number>, lagsMs: number[]): void;
  onPending(rows: number): void;
}

/**
 * Publishes outbox rows to JetStream and marks them published only once
 * every event of the row is acknowledged. A failure leaves the rows pending:
 * the next run publishes them again under the same event ids, which
 * JetStream's duplicate window drops. It runs on the leader only (one relay
 * publishes at a time however many replicas share the database; see
 * src/cluster/elector.ts), on connections whose writes the database refuses
 * once the leader's term is over.
 */
export class OutboxRelay extends PeriodicService {
  readonly name = 'outbox-relay';

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

  protected async runOnce(): Promise<RunResult> {
    const rows = await readOutbox(this.pool, { limit: this.batchRows, pendingOnly: true });
    if (rows.length === 0) {
      // rows newer than a transaction still open somewhere on the server are pending but not readable yet:
      // the gauge counts them, so events held back that way show (the partial index makes an empty count free)
      this.observer.onPending(await this.countPending());
      return { count: 0, more: false };
    }
    const byType = new Map<EventType, number>();
    try {
      let slice: OrchEvent[] = [];
      for (const { event } of await expandEach(this.pool, rows)) {
        byType.set(event.eventType, (byType.get(event.eventType) ?? 0) + 1);
        if (slice.push(event) === IN_FLIGHT) {
          await this.bus.publishAll(slice);
          slice = [];
        }
      }
      if (slice.length > 0) await this.bus.publishAll(slice);
    } catch (err) {
      this.observer.onPending(await this.countPending());
      throw err;
    }
    const { rows: marked } = await this.pool.query<{ lag_ms: number }>(
      `UPDATE orch.outbox o SET published_at = now() FROM unnest($1::xid8[], $2::bigint[]) AS p(xid, seq)
       WHERE o.xid = p.xid AND o.seq = p.seq RETURNING extract(epoch FROM now() - o.at)::float8 * 1000 AS lag_ms`,
      [rows.map((r) => r.xid), rows.map((r) => r.seq)]);
    this.observer.onPublished(byType, marked.map((m) => m.lag_ms));
    this.observer.onPending(await this.countPending());
    let count = 0;
    for (const n of byType.values()) count += n;
    return { count, more: rows.length === this.batchRows };
  }

  /** Rows waiting for JetStream, counted up to a cap (only when behind: caught up, it is 0). */
  private async countPending(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM (SELECT 1 FROM orch.outbox WHERE published_at IS NULL LIMIT ${PENDING_COUNT_CAP}) x`);
    return Number(rows[0]!.n);
  }
}
