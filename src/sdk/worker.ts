/**
 * The worker: claim, run, ack, heartbeat and stop loops over the leases it
 * holds. Long because those loops share one state (the leases in hand, the
 * ack batches, the capacity left): split, each part would reach into the others.
 */
import { FairBuffer } from './fair-buffer.ts';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { CompleteInput, FailInput, HeartbeatInput, Lease, LeaseRef, RefusalReason } from '../ledger/types.ts';
import { errorInfo, RunningJob, type Handler } from './job.ts';
import { createLogger, type Logger } from '../logging.ts';
import { HttpTransport, type ClaimParams, type WorkerTransport } from './transport.ts';

export { NonRetryableError, type Handler, type JobContext } from './job.ts';

export interface WorkerOptions<P = unknown> {
  jobTypes: string[];
  handler: Handler<P>;
  /** Handlers running at once. Default 10. */
  concurrency?: number;
  /** Remote mode: the orchestrator's URL (e.g. http://127.0.0.1:8080), with token and tenant if needed. */
  apiUrl?: string;
  token?: string;
  tenant?: string;
  /** In-process mode: talk to the ledger's PostgreSQL directly. */
  connectionString?: string;
  pool?: pg.Pool;
  /** Any other transport (tests, custom bridges). */
  transport?: WorkerTransport;
  workerId?: string;
  /** Your worker's version, shown in the worker registry (orch workers list). */
  version?: string;
  /** Most jobs asked for in one claim. Default 100. */
  batchSize?: number;
  /** Leases held beyond those running, so handlers never wait on a claim round trip. Default = concurrency. */
  prefetch?: number;
  /** Claim requests in flight at once; 2 keeps a busy worker fed while one claim is on the wire. Default 1. */
  claimers?: number;
  /** Ack batches in flight at once. Default 2. */
  ackers?: number;
  /** Long-poll time of an idle claim. Default 30 s. */
  waitMs?: number;
  /** Install SIGTERM/SIGINT handlers that stop gracefully. Default true. */
  handleSignals?: boolean;
  /** How long stop() lets running handlers finish before aborting them. Default 30 s. */
  shutdownTimeoutMs?: number;
  log?: Logger;
}

const HEARTBEAT_TICK_MS = 250;
/** Most jobs one express claim takes (past the prefetch limit): enough for a burst, not a second bulk claim. */
const EXPRESS_LIMIT = 10;
/** How long one express long-poll waits before it is sent again with the tenants busy by then. */
const EXPRESS_WAIT_MS = 250;
/**
 * A worker holding leases heartbeats at least this often, whatever its lease
 * lengths: the server marks a worker silent for ORCH_WORKER_LOST_AFTER_MS
 * (default 30 s) lost and releases its leases.
 */
const PULSE_MS = 10_000;
/** Sent with claims for the worker registry; a host name outside the API's pattern is left out. */
const HOST = /^[A-Za-z0-9._:-]{1,255}$/.test(hostname()) ? hostname() : undefined;

const jobKey = (l: Lease) => `${l.tenantId}\u0000${l.jobId}`;

/**
 * A pool of handlers fed by batched claims. Claims ask for as many jobs as
 * there is room for (running + prefetched + unacked <= concurrency + prefetch),
 * acks and heartbeats go out in batches, and stop() finishes or hands back
 * every lease it holds.
 *
 * Events: "completed" (lease, result), "failed" (lease, error), "lost" (lease, reason),
 * "transportError" (error), "stopped".
 */
export class Worker<P = unknown> extends EventEmitter {
  readonly id: string;
  private readonly concurrency: number;
  private readonly capacity: number;
  private readonly batchSize: number;
  private readonly waitMs: number;
  private readonly shutdownTimeoutMs: number;
  /** Claimed, not yet started: renewed by heartbeats like running jobs. */
  private readonly buffer = new FairBuffer<RunningJob<P>>();
  /**
   * Running handlers by lease id, not job id: after a force release or a lost lease the same job can
   * come back to this worker under a new lease while the old run still unwinds, and the two runs'
   * bookkeeping must never touch each other.
   */
  private readonly running = new Map<string, RunningJob<P>>();
  /** The newest lease this worker holds of each job (tenant and id), buffered or running. */
  private readonly newest = new Map<string, RunningJob<P>>();
  private completes: CompleteInput[] = [];
  /** Set when stop() gave up delivering acks: no flush is scheduled again. */
  private acksAbandoned = false;
  private fails: FailInput[] = [];
  private readonly flushes = new Set<Promise<void>>();
  private flushQueued = false;
  /** Jobs asked for by claims in flight, so parallel claimers never overfill the worker. */
  private reserved = 0;
  private heartbeating = false;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private readonly claimAbort = new AbortController();
  private fetchLoops: Promise<void>[] = [];
  private expressLoop: Promise<void> | null = null;
  /** The last bulk claim took all it asked for: more work waits than the claims take, so claims run back to back. */
  private behind = false;
  /**
   * Tenants with a backlog: at least EXPRESS_LIMIT of their jobs came in the last bulk claim. Their new
   * jobs queue behind their own backlog, so an express claim would only take that backlog's head.
   */
  private busyTenants: string[] = [];
  private behindWaiters: (() => void)[] = [];
  private slotWaiters: (() => void)[] = [];
  /** Resolved when the last running handler returns (stop() waits on it). */
  private idleWaiters: (() => void)[] = [];
  private ticker: NodeJS.Timeout | null = null;
  private readonly signalHandler = (signal: NodeJS.Signals) => {
    this.removeSignalHandlers();
    void this.stop().finally(() => process.kill(process.pid, signal));
  };

  constructor(
    private readonly transport: WorkerTransport,
    private readonly opts: WorkerOptions<P>,
    private readonly log: Logger,
    id: string,
  ) {
    super();
    this.id = id;
    this.concurrency = opts.concurrency ?? 10;
    this.capacity = this.concurrency + (opts.prefetch ?? this.concurrency);
    this.batchSize = opts.batchSize ?? 100;
    this.waitMs = opts.waitMs ?? 30_000;
    this.shutdownTimeoutMs = opts.shutdownTimeoutMs ?? 30_000;
  }

  start(): void {
    this.fetchLoops = Array.from({ length: inFlightLimits(this.opts).claimers }, () => this.fetch());
    this.expressLoop = this.express();
    this.ticker = setInterval(() => void this.heartbeat(), HEARTBEAT_TICK_MS);
    this.ticker.unref();
    if (this.opts.handleSignals !== false) {
      process.once('SIGTERM', this.signalHandler);
      process.once('SIGINT', this.signalHandler);
    }
  }

  /** Jobs claimed and not yet acked. */
  get held(): number {
    return this.buffer.length + this.running.size + this.completes.length + this.fails.length;
  }

  private async fetch(): Promise<void> {
    let backoff = 0;
    while (!this.stopping) {
      const want = Math.min(this.batchSize, this.capacity - this.held - this.reserved);
      if (want <= 0) {
        await new Promise<void>((r) => this.slotWaiters.push(r));
        continue;
      }
      try {
        const leases = await this.claimInto(want, this.waitMs);
        this.busyTenants = tenantsWithAtLeast(leases, EXPRESS_LIMIT);
        this.behind = leases.length === want;
        if (this.behind) this.behindWaiters.splice(0).forEach((w) => w());
        backoff = 0;
      } catch (err) {
        if (this.stopping) break;
        // an outage fails every claim: say so once, and try again soon after it ends (at most 2 s late)
        if (backoff === 0) this.log.warn({ err, workerId: this.id }, 'claim failed; retrying until the orchestrator answers');
        this.emit('transportError', err);
        backoff = await this.backOff(backoff);
      }
    }
  }

  /** Waits the next step of a doubling backoff (100 ms to 2 s) after a failed claim, or until stop(); returns that step. */
  private async backOff(previous: number): Promise<number> {
    const next = Math.min(2000, previous * 2 || 100);
    await sleep(next, undefined, { signal: this.claimAbort.signal }).catch(() => undefined);
    return next;
  }

  /**
   * Claims up to `limit` jobs into the buffer (if stop() began meanwhile, it hands them back). An express
   * claim takes its jobs past the prefetch limit, so it reserves no room of the bulk claims'.
   */
  private async claimInto(limit: number, waitMs: number, express?: ClaimParams['express']): Promise<Lease[]> {
    const reserving = express ? 0 : limit;
    this.reserved += reserving;
    const leases = await this.transport.claim(
      { workerId: this.id, jobTypes: this.opts.jobTypes, limit, waitMs, express, host: HOST, version: this.opts.version },
      this.claimAbort.signal,
    ).finally(() => (this.reserved -= reserving));
    const now = Date.now();
    for (const l of leases) this.accept(new RunningJob<P>(l, now));
    this.pump();
    return leases;
  }

  /**
   * While the worker is behind (its last bulk claim came back full, so its
   * claims run back to back, each a whole batch that takes tens of
   * milliseconds under load), it keeps an express claim open beside them:
   * new jobs of a tenant without a backlog are claimed as soon as they are
   * runnable (Dispatcher.claimExpress), past the prefetch limit by at most
   * EXPRESS_LIMIT, instead of after the bulk claim in flight. A worker that
   * keeps up sends none: its own long-poll wakes on the same notification.
   */
  private async express(): Promise<void> {
    let backoff = 0;
    while (!this.stopping) {
      if (!this.behind) {
        await new Promise<void>((r) => this.behindWaiters.push(r));
        continue;
      }
      // never more than EXPRESS_LIMIT past the prefetch limit in all, however many express claims came back
      const room = Math.min(EXPRESS_LIMIT, this.capacity + EXPRESS_LIMIT - this.held - this.reserved);
      if (room <= 0) {
        await new Promise<void>((r) => this.slotWaiters.push(r));
        continue;
      }
      try {
        await this.claimInto(room, EXPRESS_WAIT_MS, { exceptTenants: this.busyTenants });
        backoff = 0;
      } catch (err) {
        if (this.stopping) break;
        // the bulk claims say so once per outage; these jobs wait for them meanwhile
        backoff = await this.backOff(backoff);
      }
    }
  }

  /**
   * Takes a new lease into the buffer. Holding an older lease of the same job means that lease is gone
   * (released by force, or lapsed and claimed again): its run is aborted at once and whatever it does
   * later is refused by the server, which checks the lease id.
   */
  private accept(job: RunningJob<P>): void {
    const key = jobKey(job.lease);
    const older = this.newest.get(key);
    if (older) this.loseLease(older, 'lease_lost');
    this.newest.set(key, job);
    this.buffer.push(job);
  }

  private pump(): void {
    while (this.running.size < this.concurrency && this.buffer.length > 0 && !this.stopping) {
      const job = this.buffer.shift()!;
      this.running.set(job.leaseId, job);
      void this.run(job);
    }
  }

  /** Forgets a lease that ended (acked, lost, handed back); a newer lease of the same job stays. */
  private forget(job: RunningJob<P>): void {
    const key = jobKey(job.lease);
    if (this.newest.get(key) === job) this.newest.delete(key);
  }

  private async run(job: RunningJob<P>): Promise<void> {
    const { lease } = job;
    try {
      const result = await this.opts.handler(job);
      if (!job.lost) {
        this.completes.push({ tenantId: lease.tenantId, jobId: lease.jobId, leaseId: lease.leaseId, result: result === undefined ? null : result, artifacts: job.artifacts });
        this.emit('completed', lease, result);
      }
    } catch (err) {
      if (!job.lost) {
        this.fails.push({ tenantId: lease.tenantId, jobId: lease.jobId, leaseId: lease.leaseId, error: errorInfo(err) });
        this.emit('failed', lease, err);
      }
    } finally {
      this.running.delete(lease.leaseId);
      this.forget(job);
      this.scheduleFlush();
      this.pump();
      if (this.running.size === 0) this.idleWaiters.splice(0).forEach((r) => r());
    }
  }

  /**
   * Acks leave in batches: the first waits one event-loop turn to gather
   * company; while batches are in flight, another starts only once a full
   * batch is waiting (up to `ackers` at once).
   */
  private scheduleFlush(): void {
    const pending = this.completes.length + this.fails.length;
    if (pending === 0 || this.flushQueued || this.acksAbandoned) return;
    const inFlight = this.flushes.size;
    if (inFlight >= inFlightLimits(this.opts).ackers || (inFlight > 0 && pending < this.batchSize)) return;
    this.flushQueued = true;
    const flush: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => {
        this.flushQueued = false;
        return this.flush();
      })
      .finally(() => {
        this.flushes.delete(flush);
        this.scheduleFlush();
        this.wakeFetcher();
      });
    this.flushes.add(flush);
  }

  private async flush(): Promise<void> {
    const completes = this.completes;
    const fails = this.fails;
    this.completes = [];
    this.fails = [];
    try {
      const [c, f] = await Promise.all([this.transport.complete(completes), this.transport.fail(fails)]);
      // outcomes come back in the order of the acks sent
      const sent: LeaseRef[] = [...completes, ...fails];
      [...c, ...f].forEach((o, i) => {
        if (o.status === 'refused') this.emit('lost', sent[i], o.reason);
      });
    } catch (err) {
      // Keep the acks: a refused-later ack is harmless, a dropped one would re-run the job.
      this.completes.unshift(...completes);
      this.fails.unshift(...fails);
      this.emit('transportError', err);
      this.log.warn({ err, workerId: this.id }, 'ack failed; retrying');
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  private wakeFetcher(): void {
    const waiters = this.slotWaiters;
    this.slotWaiters = [];
    for (const w of waiters) w();
  }

  private async heartbeat(): Promise<void> {
    if (this.heartbeating) return;
    const now = Date.now();
    const due: HeartbeatInput[] = [];
    const sent: RunningJob<P>[] = [];
    for (const a of [...this.running.values(), ...this.buffer.values()]) {
      if (a.lost) continue;
      if (a.progressDirty || now - a.renewedAt >= Math.min(a.lease.leaseMs / 3, PULSE_MS)) {
        due.push({ tenantId: a.tenantId, jobId: a.id, leaseId: a.leaseId, progress: a.progressValue, message: a.message });
        a.progressDirty = false;
        sent.push(a);
      }
    }
    if (due.length === 0) return;
    this.heartbeating = true;
    try {
      // outcomes come back in the order of the heartbeats sent
      const outcomes = await this.transport.heartbeat(due);
      outcomes.forEach((o, i) => {
        const a = sent[i]!;
        if (o.status === 'ok') a.renewedAt = now;
        else this.loseLease(a, o.reason);
      });
    } catch (err) {
      this.emit('transportError', err);
    } finally {
      this.heartbeating = false;
    }
  }

  /** The lease is gone: a running handler's signal fires (its outcome will not be acked); a buffered job is dropped. */
  private loseLease(job: RunningJob<P>, reason: RefusalReason): void {
    if (job.lost) return;
    job.lose(`lease lost: ${reason}`);
    this.emit('lost', job.lease, reason);
    if (this.running.get(job.leaseId) === job) return; // run() forgets it when the handler returns
    this.forget(job);
    if (this.buffer.remove((b) => b === job)) this.wakeFetcher();
  }

  /**
   * Graceful stop: no new claims; prefetched leases go back to the queue;
   * running handlers get shutdownTimeoutMs to finish, then their signals fire
   * and any still running are handed back; pending acks are flushed.
   */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.removeSignalHandlers();
    this.claimAbort.abort();
    this.wakeFetcher();
    this.behindWaiters.splice(0).forEach((w) => w());
    await Promise.all([...this.fetchLoops, this.expressLoop]);
    // Prefetched leases go back first: waiting for running handlers could outlast their leases.
    const prefetchedBack = await this.handBack(this.buffer.takeAll().map((b) => {
      this.forget(b);
      return { tenantId: b.tenantId, jobId: b.id, leaseId: b.leaseId };
    }));
    if (this.running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => (timer = setTimeout(r, this.shutdownTimeoutMs))),
      ]);
      clearTimeout(timer);
    }
    const interrupted = [...this.running.values()].filter((a) => !a.lost).map((a) => {
      a.lose('worker shutting down');
      return { tenantId: a.lease.tenantId, jobId: a.lease.jobId, leaseId: a.lease.leaseId };
    });
    // Acks are retried while the orchestrator is unreachable, but not forever: a worker told to stop
    // stops. Undelivered acks leave their jobs leased; they run again once the leases expire.
    const giveUpAt = Date.now() + this.shutdownTimeoutMs;
    while (this.flushes.size > 0 || this.completes.length + this.fails.length > 0) {
      if (Date.now() > giveUpAt) {
        this.log.warn({ workerId: this.id, acks: this.completes.length + this.fails.length },
          'stopping with acks the orchestrator did not take; those jobs run again when their leases expire');
        this.acksAbandoned = true;
        break;
      }
      if (this.flushes.size === 0) this.scheduleFlush();
      await Promise.all(this.flushes);
    }
    const interruptedBack = await this.handBack(interrupted);
    if (this.ticker) clearInterval(this.ticker);
    if (prefetchedBack && interruptedBack && !this.acksAbandoned) {
      // Said last, once nothing is held: a stopped worker is never reported lost (nor pages through LeaseStall).
      await this.transport.reportStopped(this.id).catch((err: unknown) => this.log.warn({ err }, 'could not report the stop; the worker will show as lost'));
    } else {
      // A stop that leaves leases behind is not clean: unreported, the worker goes lost and the
      // reaper releases its leases then, instead of at their deadlines.
      this.log.warn({ workerId: this.id }, 'stopping with leases still held: the worker will show as lost and its leases be released');
    }
    await this.transport.close();
    this.emit('stopped');
  }

  /** Hands leases back; false when the orchestrator did not take them (they stay leased). */
  private async handBack(leases: LeaseRef[]): Promise<boolean> {
    if (leases.length === 0) return true;
    try {
      await this.transport.release(leases);
      return true;
    } catch (err) {
      this.log.warn({ err }, 'could not hand back leases');
      return false;
    }
  }

  private removeSignalHandlers(): void {
    process.removeListener('SIGTERM', this.signalHandler);
    process.removeListener('SIGINT', this.signalHandler);
  }
}

/** Claim requests and ack batches a worker keeps in flight at once. */
function inFlightLimits(opts: Pick<WorkerOptions, 'claimers' | 'ackers'>): { claimers: number; ackers: number } {
  return { claimers: Math.max(1, opts.claimers ?? 1), ackers: Math.max(1, opts.ackers ?? 2) };
}

function tenantsWithAtLeast(leases: Lease[], n: number): string[] {
  const count = new Map<string, number>();
  for (const l of leases) count.set(l.tenantId, (count.get(l.tenantId) ?? 0) + 1);
  return [...count].filter(([, c]) => c >= n).map(([t]) => t);
}

/**
 * Starts a worker. Remote: give `apiUrl`. In-process: give `connectionString`
 * (or `pool` plus `connectionString` for the notification listener).
 */
export async function createWorker<P = unknown>(opts: WorkerOptions<P>): Promise<Worker<P>> {
  if (!Array.isArray(opts.jobTypes) || opts.jobTypes.length === 0) throw new Error('createWorker: jobTypes must name at least one job type');
  if (typeof opts.handler !== 'function') throw new Error('createWorker: handler must be a function');
  const log = opts.log ?? createLogger(process.env.ORCH_LOG_LEVEL ?? 'warn');
  const id = opts.workerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  let transport = opts.transport;
  if (!transport && opts.connectionString) {
    // the in-process transport brings pg and the ledger: loaded only by workers that use it
    const { InProcessTransport } = await import('./in-process.ts');
    // a connection for each claimer and acker, and one each for heartbeats and express claims, which must not wait behind them
    const { claimers, ackers } = inFlightLimits(opts);
    const poolSize = claimers + ackers + 2;
    transport = await InProcessTransport.open({ connectionString: opts.connectionString, pool: opts.pool, workerId: id, log, poolSize });
  } else if (!transport && opts.apiUrl) {
    transport = new HttpTransport({ apiUrl: opts.apiUrl, token: opts.token, tenant: opts.tenant });
  }
  if (!transport) throw new Error('createWorker: give apiUrl (remote) or connectionString (in-process)');
  const worker = new Worker<P>(transport, opts, log, id);
  worker.start();
  return worker;
}
