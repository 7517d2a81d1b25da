import type pg from 'pg';
import type { Logger } from '../logging.ts';
import { PeriodicService, ServiceGroup, type RunResult } from '../maintenance/service.ts';
import { electOrRenew, replicaStopped, reportReplica, resign, type ReplicaReport } from './election.ts';

export interface ElectorOptions {
  replicaId: string;
  host: string;
  version: string;
  notify: ReplicaReport['notify'];
  /** The leader renews its lease this often; the lease lasts 1.5 renewals, so a dead leader is replaced within two. */
  renewMs: number;
}

/**
 * Why a leader stopped leading: its renewal came too late (the database was
 * unreachable, or its event loop was held past the fence), another replica's
 * term began, or it was shut down.
 */
export const STEP_DOWN_CAUSES = ['renewal_late', 'superseded', 'shutdown'] as const;
export type StepDownCause = (typeof STEP_DOWN_CAUSES)[number];

/**
 * The leader-only services of one term: built on a pool of their own whose
 * connections carry the term (orch.leader_term), so the database refuses
 * their writes once the term is over (the fence in migrations/0013_cluster.sql).
 */
export interface LeaderWork {
  /** A pool whose sessions carry `term`. */
  openPool(term: number): pg.Pool;
  /** The services to run on it. */
  services(pool: pg.Pool): PeriodicService[];
}

/**
 * Elects one leader among the replicas sharing a database and runs the
 * leader-only services on it, and only while its term lasts:
 *
 * - Every run (a quarter of the renew interval) a follower tries to take an
 *   expired lease; the leader renews every half interval. A replica killed
 *   with -9, or cut from the database, stops renewing; another takes over
 *   within ttl (1.5 intervals) plus one run.
 * - A leader that cannot renew stops its services by itself before its lease
 *   expires (measured on its own monotonic clock from the start of its last
 *   renewal), and whatever it still writes after that is refused by the
 *   fence. A clean stop resigns, so the next leader starts at once.
 * - Each replica reports itself (host, version, services) every interval for
 *   `orch cluster status`.
 */
export class Elector extends PeriodicService {
  readonly name = 'leader-elector';
  private readonly ttlMs: number;
  private lead: { term: number; pool: pg.Pool; group: ServiceGroup } | null = null;
  /** performance.now() at the start of the last renewal that succeeded, and of the last report. */
  private renewedAt = 0;
  private reportedAt = -Infinity;
  private fence: NodeJS.Timeout | null = null;
  /** When the database last came back after this replica lost it (ms since the epoch; 0: never lost). */
  private databaseBack = 0;
  /** A run failed since the last one that reached the database. */
  private lostDatabase = false;
  private changing: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: pg.Pool,
    private readonly work: LeaderWork,
    private readonly opts: ElectorOptions,
    log: Logger,
  ) {
    super(Math.max(10, Math.floor(opts.renewMs / 4)), log);
    this.ttlMs = Math.round(opts.renewMs * 1.5);
    this.on('failed', () => (this.lostDatabase = true));
  }

  /** When the database last came back after an outage this replica saw (0: none); grace periods count from it. */
  get databaseBackAt(): number {
    return this.databaseBack;
  }

  /** The current term when this replica leads, else null. */
  get term(): number | null {
    return this.lead?.term ?? null;
  }

  /** The leader-only services running here now (none on a follower). */
  get leaderServices(): readonly PeriodicService[] {
    return this.lead?.group.services ?? [];
  }

  /** Runs a leader-only service at once if it runs here (new work for it arrived); the leader elsewhere finds it at its next run. */
  nudgeLeaderService(service: string): void {
    this.leaderServices.find((s) => s.name === service)?.nudge();
  }

  /** Runs the first election before returning (a lone replica leads once it is up), then keeps going. */
  async begin(): Promise<void> {
    await this.runOnce().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'first leader election failed; retrying'));
    this.fence = setInterval(() => this.selfFence(), this.intervalMs);
    this.fence.unref();
    this.start();
  }

  protected async runOnce(): Promise<RunResult> {
    const now = performance.now();
    // The leader renews twice per interval: a renewal that is slow (up to half an interval) still
    // lands before the self-fence below would stop a leader that holds a valid lease.
    if (this.lead === null || now - this.renewedAt >= this.opts.renewMs / 2) {
      const won = await electOrRenew(this.pool, this.opts.replicaId, this.ttlMs);
      if (won) this.renewedAt = now;
      // known before a term can start on it: the new term's lease reaper counts its grace from here
      if (this.lostDatabase) this.databaseBack = Date.now();
      this.lostDatabase = false;
      await this.change(async () => {
        if (this.lead && this.lead.term !== won?.term) await this.stepDown('superseded', won ? `term ${won.term} began` : 'another replica leads');
        if (won && !this.lead) await this.stepUp(won.term);
      });
    }
    if (now - this.reportedAt >= this.opts.renewMs) {
      await reportReplica(this.pool, { ...this.opts, id: this.opts.replicaId, services: [this.name, ...this.leaderServices.map((s) => s.name)] });
      this.reportedAt = now;
    }
    return { count: 0, more: false };
  }

  /** Leadership changes one at a time (a run and the fence timer may both want one). */
  private change(fn: () => Promise<void>): Promise<void> {
    this.changing = this.changing.then(fn, fn);
    return this.changing;
  }

  private async stepUp(term: number): Promise<void> {
    const pool = this.work.openPool(term);
    const group = new ServiceGroup(this.work.services(pool));
    this.lead = { term, pool, group };
    group.start();
    this.reportedAt = -Infinity;
    this.log.info({ term, replica: this.opts.replicaId, services: group.services.map((s) => s.name) }, 'this replica leads: leader-only services started');
    this.emit('leader', term);
  }

  private async stepDown(cause: StepDownCause, why: string): Promise<void> {
    const lead = this.lead;
    if (!lead) return;
    this.lead = null;
    await lead.group.stop();
    await lead.pool.end().catch(() => undefined);
    this.reportedAt = -Infinity;
    this.log.warn({ term: lead.term, replica: this.opts.replicaId, why }, 'this replica no longer leads: leader-only services stopped');
    this.emit('follower', lead.term, cause);
  }

  /** A leader that has not renewed stops before its lease can expire (a quarter interval of margin). */
  private selfFence(): void {
    if (this.lead && performance.now() - this.renewedAt > this.ttlMs - this.intervalMs) {
      void this.change(() => this.stepDown('renewal_late', 'could not renew the lease in time (database unreachable, or the event loop held?)'));
    }
  }

  override async stop(): Promise<void> {
    if (this.fence) clearInterval(this.fence);
    this.fence = null;
    await super.stop();
    const term = this.lead?.term;
    await this.change(() => this.stepDown('shutdown', 'shutting down'));
    if (term !== undefined) await resign(this.pool, this.opts.replicaId, term).catch(() => undefined);
    await replicaStopped(this.pool, this.opts.replicaId).catch(() => undefined);
  }
}
