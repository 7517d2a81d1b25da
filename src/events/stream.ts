import type { ServerResponse } from 'node:http';
import type pg from 'pg';
import { isDatabaseUnavailable } from '../ledger/db.ts';
import { expand, formatCursor, readOutbox, type EventCursor, type OrchEvent } from './envelope.ts';

export interface StreamFilter {
  tenantId: string;
  jobType?: string;
  jobId?: string;
  eventTypes?: string[];
}

export interface SseSettings {
  /** How often an idle stream looks for new events. */
  pollMs: number;
  /** A comment line this often keeps proxies from closing an idle stream. */
  heartbeatMs: number;
  /** A client whose unsent output exceeds this is too slow and is disconnected. */
  maxBufferBytes: number;
}

const ROWS_PER_READ = 500;
/** How often a stream tries the database again while it is unreachable. */
const OUTAGE_RETRY_MS = 1000;

const after = (a: EventCursor, b: EventCursor) =>
  BigInt(a.xid) !== BigInt(b.xid) ? BigInt(a.xid) > BigInt(b.xid) : BigInt(a.seq) !== BigInt(b.seq) ? BigInt(a.seq) > BigInt(b.seq) : a.index > b.index;

function matches(e: OrchEvent, f: StreamFilter): boolean {
  if (f.jobType !== undefined && e.job?.type !== f.jobType) return false;
  if (f.jobId !== undefined && e.job?.id !== f.jobId) return false;
  return f.eventTypes === undefined || f.eventTypes.includes(e.eventType);
}

/**
 * Server-Sent Events from the outbox: each client reads the events after its
 * position (its Last-Event-ID, or the tail when it connects), in outbox order,
 * filtered to its tenant (and events for every tenant) and its filters. The
 * SSE id of an event is its outbox position, so a reconnect resumes exactly
 * where the client stopped, for as long as the outbox keeps the rows.
 */
export class EventStream {
  private readonly clients = new Set<() => void>();

  constructor(private readonly pool: pg.Pool, private readonly settings: SseSettings) {}

  /** Streams to `res` until the client goes, is too slow, or close() is called. */
  async serve(res: ServerResponse, filter: StreamFilter, from: EventCursor | null): Promise<void> {
    let open = true;
    let wake = () => {};
    const end = () => {
      open = false;
      wake();
    };
    this.clients.add(end);
    res.once('close', end);
    // The start is fixed before the client hears it is subscribed, so nothing committed after the 200 is skipped.
    let cursor: EventCursor;
    try {
      cursor = from ?? (await this.tail());
    } catch {
      // the response is the stream's own (hijacked): no error body can follow, so the client just sees it close and retries
      this.clients.delete(end);
      res.destroy();
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no',
    });
    res.write(': orch event stream\n\n');
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), this.settings.heartbeatMs);
    try {
      while (open) {
        let rows: Awaited<ReturnType<typeof readOutbox>>;
        try {
          rows = await readOutbox(this.pool, { after: cursor, limit: ROWS_PER_READ, tenantId: filter.tenantId });
          for (const p of await expand(this.pool, rows)) {
            if (!after(p.cursor, cursor)) continue;
            cursor = p.cursor;
            if (!matches(p.event, filter)) continue;
            res.write(`id: ${formatCursor(p.cursor)}\nevent: ${p.event.eventType}\ndata: ${JSON.stringify(p.event)}\n\n`);
          }
        } catch (err) {
          // The database is away (restart, failover): the client keeps its stream and its heartbeats, and the
          // events it missed follow once the database is back. Anything else ends the stream; the client resumes.
          if (!isDatabaseUnavailable(err)) break;
          await this.pause(OUTAGE_RETRY_MS, (w) => (wake = w));
          continue;
        }
        const last = rows.at(-1);
        // a row that expanded to no events must not hold the cursor back
        if (last && !after(cursor, { xid: last.xid, seq: last.seq, index: -1 })) cursor = { xid: last.xid, seq: last.seq, index: Number.MAX_SAFE_INTEGER };
        if (res.writableLength > this.settings.maxBufferBytes) break;
        if (rows.length === ROWS_PER_READ) continue;
        await this.pause(this.settings.pollMs, (w) => (wake = w));
      }
    } finally {
      clearInterval(heartbeat);
      this.clients.delete(end);
      res.end();
    }
  }

  /** Waits `ms`, or less when the stream is ended (its wake function, handed to `setWake`, is called). */
  private pause(ms: number, setWake: (wake: () => void) => void): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      setWake(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Ends every stream (server shutdown). */
  close(): void {
    for (const end of this.clients) end();
  }

  /** The position after the newest visible event: a new client starts there. */
  private async tail(): Promise<EventCursor> {
    const { rows } = await this.pool.query<{ xid: string; seq: string }>(
      `SELECT xid::text AS xid, seq::text AS seq FROM orch.outbox WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
       ORDER BY xid DESC, seq DESC LIMIT 1`);
    return rows[0] ? { xid: rows[0].xid, seq: rows[0].seq, index: Number.MAX_SAFE_INTEGER } : { xid: '0', seq: '0', index: -1 };
  }
}
