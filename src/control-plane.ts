import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import { Elector, type LeaderWork, type StepDownCause } from './cluster/elector.ts';
import { clusterStatus } from './cluster/status.ts';
import { VERSION } from './version.ts';
import type { Config } from './config/config.ts';
import { buildApi } from './api/server.ts';
import type { ReadinessCheck } from './api/context.ts';
import { Dispatcher } from './dispatch/dispatcher.ts';
import { Pauses } from './flow/pauses.ts';
import { QuotaKeeper } from './flow/quota-keeper.ts';
import { queueGauges } from './flow/queue-depth.ts';
import { Quotas } from './flow/quotas.ts';
import { JobNotifier, notificationsArrive } from './dispatch/notifier.ts';
import { createPool, isDatabaseUnavailable, SERVICE_ROLE } from './ledger/db.ts';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './ledger/embedded.ts';
import { Ledger } from './ledger/ledger.ts';
import { migrate, migrationsApplied } from './ledger/migrate.ts';
import type { Logger } from './logging.ts';
import type { PeriodicService } from './maintenance/service.ts';
import { Metrics } from './metrics/metrics.ts';
import { Authenticator } from './auth/authenticator.ts';
import { JwtVerifier } from './auth/jwt.ts';
import { ApiTokens } from './auth/tokens.ts';
import { LeaseReaper } from './recovery/lease-reaper.ts';
import { leaseSamples } from './recovery/leases.ts';
import { DeadLetters } from './recovery/dead-letters.ts';
import { Replays, ReplayRunner } from './recovery/replays.ts';
import { Snapshots } from './recovery/snapshots.ts';
import { DeltaRollup } from './maintenance/delta-rollup.ts';
import { EventBus } from './events/bus.ts';
import { OutboxPruner } from './events/pruner.ts';
import { OutboxRelay } from './events/relay.ts';
import { JobPruner } from './maintenance/job-pruner.ts';
import { EventStream } from './events/stream.ts';
import { Schedules } from './schedules/schedules.ts';
import { Scheduler } from './schedules/scheduler.ts';
import { Backfills } from './backfills/backfills.ts';
import { BackfillRunner } from './backfills/runner.ts';
import { workflowOutcomes, Workflows } from './workflows/workflows.ts';
import { windowSamples } from './windows/samples.ts';

export interface ControlPlane {
  /** Base URL the HTTP server listens on, e.g. http://127.0.0.1:8080 */
  url: string;
  connectionString: string;
  ledger: Ledger;
  metrics: Metrics;
  /** Leader election; `term` is set while this replica leads. */
  elector: Elector;
  /** The background services running here now: the elector, and the leader-only ones while this replica leads. */
  readonly services: readonly PeriodicService[];
  stop(): Promise<void>;
}


/** Opens the configured database, or starts the embedded one under dataDir. */
export async function openDatabase(config: Config, log: Logger): Promise<{ connectionString: string; embedded: EmbeddedDatabase | null }> {
  if (config.databaseUrl) return { connectionString: config.databaseUrl, embedded: null };
  const embedded = await startEmbeddedDatabase(config.dataDir, log);
  return { connectionString: embedded.connectionString, embedded };
}

/** Waits until the database answers, logging once; fails after waitMs or on any other error. */
async function databaseReachable(pool: pg.Pool, waitMs: number, log: Logger): Promise<void> {
  const until = Date.now() + waitMs;
  for (let logged = false; ; logged = true) {
    try {
      await pool.query('SELECT 1');
      if (logged) log.info('database reachable');
      return;
    } catch (err) {
      if (!isDatabaseUnavailable(err) || Date.now() > until) {
        throw new Error(`the database is not reachable: ${(err as Error).message}`, { cause: err });
      }
      if (!logged) log.warn({ err: (err as Error).message }, `database not reachable: waiting up to ${waitMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/**
 * Waits for the database, then applies migrations as the schema owner: ORCH_MIGRATION_DATABASE_URL,
 * else the server's own URL (on a connection of its own: the server's pool acts as orch_service,
 * which a first migration has yet to create).
 */
export async function migrateAsOwner(config: Config, connectionString: string, log: Logger): Promise<string[]> {
  const owner = createPool(config.migrationDatabaseUrl ?? connectionString, 1);
  try {
    await databaseReachable(owner, config.databaseWaitMs, log);
    return await migrate(owner);
  } finally {
    await owner.end();
  }
}

/** Starts everything `orch serve` runs: database, migrations, background services, HTTP API. */
export async function startControlPlane(config: Config, log: Logger): Promise<ControlPlane> {
  const { connectionString, embedded } = await openDatabase(config, log);
  let pool: pg.Pool | null = null;
  let bus: EventBus | null = null;
  try {
    const applied = await migrateAsOwner(config, connectionString, log);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    // Every connection of the server acts as orch_service, whatever role the URL logs in as: it
    // cannot alter the schema nor rewrite or switch off the audit log (docs/security.md).
    pool = createPool(connectionString, config.dbPoolSize, { role: SERVICE_ROLE, idleMs: config.dbPoolIdleMs });

    const ledger = new Ledger(pool, config);
    const metrics = new Metrics();
    ledger.observe(metrics);
    metrics.watchQueues(() => queueGauges(ledger.pool));
    metrics.watchLeases(() => leaseSamples(ledger.pool));
    metrics.watchWindows(() => windowSamples(ledger.pool));
    metrics.watchWorkflows(() => workflowOutcomes(ledger.pool));
    const notify = config.cluster.notify !== 'auto' ? config.cluster.notify : (await notificationsArrive(connectionString)) ? 'listen' : 'poll';
    if (notify === 'poll') {
      log.warn({ pollMs: config.cluster.pollMs, setting: config.cluster.notify },
        `no LISTEN/NOTIFY${config.cluster.notify === 'auto' ? ' (its self-probe got no notification: PgBouncer in transaction mode?)' : ''}: idle claimers look for work every ${config.cluster.pollMs} ms`);
    }
    const notifier = new JobNotifier(connectionString, log, notify);
    await notifier.start();
    const dispatcher = new Dispatcher(ledger, notifier, notify === 'poll' ? Math.min(config.claimPollIntervalMs, config.cluster.pollMs) : config.claimPollIntervalMs);
    const quotas = new Quotas(pool, ledger.tenants);
    metrics.watchQuotas(() => quotas.summary());
    // Every tenant and job type in the ledger gets its refusal counters at 0 before any claim can throttle it.
    await metrics.refresh();
    const deadLetters = new DeadLetters(pool);
    const snapshots = new Snapshots(pool, ledger, deadLetters, config.dlqMaxSelection);
    const replays = new Replays(pool, ledger, deadLetters, snapshots, { batchSize: config.replayBatchSize, maxJobs: config.dlqMaxSelection });
    const m = config.maintenance;
    const ev = config.events;
    // Without NATS the server still runs: events stay in the outbox (and the SSE stream) until NATS is configured.
    bus = config.natsUrl ? new EventBus(config.natsUrl, {
      name: ev.stream, maxAgeMs: ev.maxAgeMs, maxBytes: ev.maxBytes, duplicateWindowMs: ev.duplicateWindowMs, replicas: ev.replicas,
      subjectPrefix: ev.subjectPrefix,
    }, log) : null;
    bus?.start();
    const stream = new EventStream(pool, { pollMs: ev.ssePollMs, heartbeatMs: ev.sseHeartbeatMs, maxBufferBytes: ev.sseMaxBufferBytes });
    const relayBus = bus;
    /** When the API began listening: the lease reaper's grace counts from it (set below, before any term starts). */
    let listeningSince = Date.now();
    // The work that must run once per cluster, on the leader only, on connections that carry its
    // term: the database refuses their writes once the term is over (src/cluster/elector.ts).
    const leaderWork: LeaderWork = {
      // 6: the scheduler and the backfill runner each hold a transaction while their enqueue asks the pool for a
      // second connection (job type and tenant registration, backpressure), beside the single statements of the others
      openPool: (term) => createPool(connectionString, 6, { role: SERVICE_ROLE, settings: { 'orch.leader_term': String(term) }, name: 'orch-leader', idleMs: config.dbPoolIdleMs }),
      services(leaderPool) {
        const l = new Ledger(leaderPool, config);
        l.observe(metrics);
        const dead = new DeadLetters(leaderPool);
        const runner = new Replays(leaderPool, l, dead, new Snapshots(leaderPool, l, dead, config.dlqMaxSelection), { batchSize: config.replayBatchSize, maxJobs: config.dlqMaxSelection });
        return [
          new LeaseReaper(l, {
            batchSize: m.leaseReaperBatchSize, workerLostAfterMs: config.workerLostAfterMs, graceMs: m.leaseGraceMs,
            // workers could heartbeat since this API listened and the database last came back, not before
            since: Math.max(listeningSince, elector.databaseBackAt),
          }, m.leaseReaperIntervalMs, log),
          new QuotaKeeper(new Quotas(leaderPool, l.tenants), m.quotaKeeperIntervalMs, log),
          new DeltaRollup([l.counts, dead.clusterFold], m.queueCountRollupIntervalMs, log),
          new ReplayRunner(runner, m.replayRunnerIntervalMs, log),
          new OutboxPruner(leaderPool, ev.outboxRetentionMs, relayBus !== null, m.outboxPrunerIntervalMs, log),
          // retention 0 keeps every job: no pruner then
          ...(config.jobRetentionMs > 0 ? [new JobPruner(l, config.jobRetentionMs, (n) => metrics.jobsPruned.inc(n), m.jobPrunerIntervalMs, log)] : []),
          new Scheduler(l, metrics, m.scheduleGraceMs, m.schedulerIntervalMs, log),
          new BackfillRunner(l, m.backfillRunnerIntervalMs, log),
          ...(relayBus ? [new OutboxRelay(leaderPool, relayBus, ev.relayBatchRows, m.outboxRelayIntervalMs, log, metrics)] : []),
        ];
      },
    };
    const elector = new Elector(pool, leaderWork, {
      replicaId: config.cluster.replicaId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
      host: hostname(), version: VERSION, notify: notifier.mode, renewMs: config.cluster.leaderRenewMs,
    }, log);
    elector.on('follower', (_term: number, cause: StepDownCause) => metrics.leaderStepDowns.inc({ cause }));
    metrics.watchCluster(async () => ({
      replicasUp: (await clusterStatus(ledger.pool, config.cluster.leaderRenewMs)).replicas.filter((r) => r.state === 'up').length,
      leading: elector.term !== null,
    }));
    const db = pool;
    const readiness = async (): Promise<ReadinessCheck> => {
      const checks: ReadinessCheck['checks'] = {};
      try {
        checks.database = { ok: true };
        checks.migrations = { ok: await migrationsApplied(db) };
      } catch (err) {
        checks.database = { ok: false, detail: (err as Error).message };
      }
      if (bus) {
        checks.bus = bus.connected ? { ok: true }
          : { ok: false, degraded: true, detail: bus.problem ?? 'NATS disconnected: events wait in the outbox' };
      }
      return { ok: Object.values(checks).every((c) => c.ok || c.degraded), checks };
    };
    const recovery = { deadLetters, snapshots, replays, nudgeReplays: () => elector.nudgeLeaderService('replay-runner') };
    const tokens = new ApiTokens(pool);
    const authenticator = new Authenticator(config.auth, tokens, await JwtVerifier.fromConfig(config.auth));
    if (authenticator.open) log.warn({ host: config.httpHost }, 'authentication is off (ORCH_AUTH=open): every local caller has every scope; set ORCH_AUTH=required before exposing the API');
    const app = await buildApi({
      config, ledger, dispatcher, pauses: new Pauses(pool), quotas, metrics, recovery, events: { stream }, readiness, auth: { authenticator, tokens },
      cluster: { status: () => clusterStatus(db, config.cluster.leaderRenewMs) },
      schedules: new Schedules(pool, ledger, config.maxPayloadBytes, () => elector.nudgeLeaderService('scheduler')),
      backfills: new Backfills(pool, ledger, config.maxPayloadBytes, () => elector.nudgeLeaderService('backfill-runner')),
      workflows: new Workflows(pool, ledger),
    }, log);
    await app.listen({ host: config.httpHost, port: config.httpPort }).catch(async (err: unknown) => {
      await app.close().catch(() => undefined);
      await notifier.stop().catch(() => undefined);
      throw err;
    });
    // The services start once the API listens: the lease reaper's grace period is counted from the
    // moment workers can heartbeat again, not from when the process began.
    listeningSince = Date.now();
    await elector.begin();
    const addr = app.server.address();
    const port = addr && typeof addr === 'object' ? addr.port : config.httpPort;
    const url = `http://${config.httpHost.includes(':') ? `[${config.httpHost}]` : config.httpHost}:${port}`;
    log.info({ url }, 'orchestrator listening');

    // In order, each step whatever the one before did, so a failing step cannot leave the
    // database (or the embedded server's process) running; the first error is reported.
    const shutdown = async () => {
      let failure: unknown = null;
      const step = async (f: () => unknown) => {
        try {
          await f();
        } catch (err) {
          failure ??= err;
        }
      };
      await step(() => {
        dispatcher.close();
        stream.close();
      });
      // In-flight requests get a grace period; connections still open after it (e.g. a client
      // that connected and never spoke) are cut so shutdown cannot hang.
      const cut = setTimeout(() => app.server.closeAllConnections(), 3000);
      await step(() => app.close());
      clearTimeout(cut);
      await step(() => elector.stop());
      await step(() => notifier.stop());
      await step(() => bus?.close());
      await step(() => db.end());
      await step(() => embedded?.stop());
      if (failure) throw failure;
    };
    let stopping: Promise<void> | null = null;

    return {
      url, connectionString, ledger, metrics, elector,
      get services() {
        return [elector, ...elector.leaderServices];
      },
      /** Stops everything once; a second call waits for the first (a test's clean-up after an explicit stop). */
      stop() {
        stopping ??= shutdown();
        return stopping;
      },
    };
  } catch (err) {
    await bus?.close().catch(() => undefined);
    await pool?.end().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw err;
  }
}
