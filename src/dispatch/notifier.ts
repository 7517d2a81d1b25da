import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { JOBS_CHANNEL } from '../ledger/channel.ts';
import type { Logger } from '../logging.ts';

/** Told that `count` jobs of a type it listens for became runnable in `tenantId`'s queue. */
export type RunnableListener = (tenantId: string, count: number) => void;

interface Waiter {
  types: string[];
  wake: () => void;
}

/**
 * Whether LISTEN/NOTIFY works through this connection string: a session
 * LISTENs on a channel of its own and a NOTIFY is sent from another
 * connection. Behind PgBouncer in transaction mode the LISTEN is lost with
 * its server connection and the notification never arrives.
 */
export async function notificationsArrive(connectionString: string, timeoutMs = 2000): Promise<boolean> {
  const channel = `orch_probe_${randomBytes(6).toString('hex')}`;
  const listener = new pg.Client({ connectionString, application_name: 'orch-notify-probe' });
  const sender = new pg.Client({ connectionString, application_name: 'orch-notify-probe' });
  listener.on('error', () => undefined);
  sender.on('error', () => undefined);
  try {
    await Promise.all([listener.connect(), sender.connect()]);
    const arrived = new Promise<boolean>((resolve) => {
      listener.on('notification', (m) => m.channel === channel && resolve(true));
      setTimeout(() => resolve(false), timeoutMs).unref();
    });
    await listener.query(`LISTEN ${channel}`);
    await sender.query(`NOTIFY ${channel}`);
    return await arrived;
  } finally {
    await Promise.all([listener.end().catch(() => undefined), sender.end().catch(() => undefined)]);
  }
}

/**
 * One LISTEN connection per process that wakes idle claimers when jobs of
 * their types arrive. Enqueues notify "<jobType> <count>"; at most `count`
 * waiters wake per notification, so one job does not stampede every worker.
 * In poll mode (no LISTEN: PgBouncer in transaction mode) nothing wakes
 * waiters early; the dispatcher's short poll interval finds the work.
 */
export class JobNotifier {
  private client: pg.Client | null = null;
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** Notifications heard per job type, and those for every type (a "*", a reconnect): see epoch(). */
  private readonly heard = new Map<string, number>();
  private heardForAll = 0;
  private readonly runnableListeners = new Map<string, Set<RunnableListener>>();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly connectionString: string,
    private readonly log: Logger,
    readonly mode: 'listen' | 'poll' = 'listen',
  ) {}

  async start(): Promise<void> {
    this.closed = false;
    if (this.mode === 'listen') await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString, application_name: 'orch-notifier' });
    client.on('notification', (msg) => {
      // payloads: src/ledger/channel.ts; count 0 (a resume, a freed slot) wakes every waiter of the type
      const [type, count, tenantId] = (msg.payload ?? '').split(' ');
      const n = Number(count);
      if (type === '*') this.wakeAll();
      else if (type) {
        this.heard.set(type, (this.heard.get(type) ?? 0) + 1);
        this.wake(type, n === 0 ? Infinity : n || 1);
        if (tenantId && n > 0) for (const listener of this.runnableListeners.get(type) ?? []) listener(tenantId, n);
      }
    });
    client.on('error', (err) => {
      this.log.warn({ err }, 'job notifier connection lost; reconnecting');
      this.scheduleReconnect();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${JOBS_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      // stopped while connecting (a reconnect racing stop()): a connection kept here would hold the process open
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    // Notifications sent while we were disconnected are gone: let every waiter look again.
    this.wakeAll();
  }

  private scheduleReconnect(): void {
    const old = this.client;
    this.client = null;
    old?.end().catch(() => undefined);
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect().catch(() => this.scheduleReconnect());
    }, 1000);
    this.reconnectTimer.unref();
  }

  async stop(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.wakeAll();
    await this.client?.end().catch(() => undefined);
    this.client = null;
  }

  /**
   * Grows with every notification that concerns one of `types`. Equal
   * values taken at two moments mean nothing new arrived in between: work
   * committed after the first moment notifies after it (NOTIFY is sent at
   * commit), so it would have moved the value. Null in poll mode, where no
   * notification ever arrives and unchanged values say nothing.
   */
  epoch(types: string[]): number | null {
    if (this.mode === 'poll' || !this.client) return null;
    let sum = this.heardForAll;
    for (const t of types) sum += this.heard.get(t) ?? 0;
    return sum;
  }

  /**
   * Calls `listener` whenever jobs of one of `types` become runnable in one
   * tenant's queue, with the tenant and how many (as the committing
   * transition notified them). Returns the unsubscribe.
   */
  onRunnable(types: string[], listener: RunnableListener): () => void {
    addPerType(this.runnableListeners, types, listener);
    return () => removePerType(this.runnableListeners, types, listener);
  }

  /**
   * Registers interest before the caller looks for work, so a notification
   * that lands between an empty claim and the wait is not missed.
   */
  register(types: string[]): { promise: Promise<void>; cancel: () => void } {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    const waiter: Waiter = {
      types,
      wake: () => {
        this.remove(waiter);
        resolve();
      },
    };
    addPerType(this.waiters, types, waiter);
    return { promise, cancel: () => this.remove(waiter) };
  }

  private remove(waiter: Waiter): void {
    removePerType(this.waiters, waiter.types, waiter);
  }

  private wake(type: string, count: number): void {
    const set = this.waiters.get(type);
    if (!set) return;
    for (const w of [...set].slice(0, count)) w.wake();
  }

  private wakeAll(): void {
    this.heardForAll++;
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w.wake();
  }
}

function addPerType<T>(map: Map<string, Set<T>>, types: string[], item: T): void {
  for (const t of types) {
    let set = map.get(t);
    if (!set) map.set(t, (set = new Set()));
    set.add(item);
  }
}

function removePerType<T>(map: Map<string, Set<T>>, types: string[], item: T): void {
  for (const t of types) {
    const set = map.get(t);
    set?.delete(item);
    if (set?.size === 0) map.delete(t);
  }
}
