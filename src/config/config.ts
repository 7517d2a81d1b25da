import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import { DEFAULT_EVENT_SUBJECT_PREFIX } from '../wire.ts';

/**
 * Every tunable of the server in one object, read from the environment and
 * validated once at start-up so that a typo fails loudly instead of at 3 a.m.
 */
export const ConfigSchema = Type.Object({
  databaseUrl: Type.Optional(Type.String({ minLength: 1 })),
  /**
   * Migrations run with this URL (the schema owner) when set; the server itself then uses
   * databaseUrl, a role without ownership (a member of orch_service: migrations/0010_service_role.sql).
   */
  migrationDatabaseUrl: Type.Optional(Type.String({ minLength: 1 })),
  /** NATS server for JetStream events; unset: events go to the outbox and the SSE stream only. */
  natsUrl: Type.Optional(Type.String({ minLength: 1 })),
  events: Type.Object({
    stream: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    /** Events go to `<subjectPrefix>.<tenant>.<jobType>.<eventType>`: deployments sharing a NATS account each take their own. */
    subjectPrefix: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}(\\.[A-Za-z0-9_-]{1,64}){0,7}$' }),
    maxAgeMs: Type.Integer({ minimum: 60_000 }),
    maxBytes: Type.Integer({ minimum: 1024 * 1024 }),
    duplicateWindowMs: Type.Integer({ minimum: 1000 }),
    replicas: Type.Integer({ minimum: 1, maximum: 5 }),
    /** Published outbox rows (or all, without a bus) are kept this long: the SSE stream's Last-Event-ID window. */
    outboxRetentionMs: Type.Integer({ minimum: 60_000 }),
    relayBatchRows: Type.Integer({ minimum: 1, maximum: 100_000 }),
    ssePollMs: Type.Integer({ minimum: 10, maximum: 60_000 }),
    sseHeartbeatMs: Type.Integer({ minimum: 100, maximum: 300_000 }),
    sseMaxBufferBytes: Type.Integer({ minimum: 16 * 1024 }),
  }),
  /**
   * Authentication. "open" (no tokens; every caller has every scope) is allowed only on a
   * loopback address; "required" checks bearer tokens: API tokens (orch tokens create), and
   * JWTs when a secret or JWKS is set.
   */
  auth: Type.Object({
    mode: Type.Union([Type.Literal('open'), Type.Literal('required')]),
    jwtSecret: Type.Optional(Type.String({ minLength: 32 })),
    jwksUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
    jwksFile: Type.Optional(Type.String({ minLength: 1 })),
    issuer: Type.Optional(Type.String({ minLength: 1 })),
    audience: Type.Optional(Type.String({ minLength: 1 })),
    /** Failed authentications per client address per minute before it gets 429s. */
    failedPerMinute: Type.Integer({ minimum: 1, maximum: 100_000 }),
  }),
  /** Largest nesting of a JSON request body (objects and arrays). */
  maxJsonDepth: Type.Integer({ minimum: 2, maximum: 1000 }),
  dataDir: Type.String({ minLength: 1 }),
  httpHost: Type.String({ minLength: 1 }),
  /** The console's build to serve at `/`; null: the one shipped in the package (dist/console). */
  consoleDir: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  httpPort: Type.Integer({ minimum: 0, maximum: 65535 }),
  logLevel: Type.Union([Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')]),
  /** pretty lines for a person, JSON lines for machines; auto: pretty when stderr (where logs go) is a terminal (src/logging.ts). */
  logFormat: Type.Union([Type.Literal('auto'), Type.Literal('pretty'), Type.Literal('json')]),
  dbPoolSize: Type.Integer({ minimum: 2, maximum: 200 }),
  /** How long a connection may sit idle in a pool before it is closed. */
  dbPoolIdleMs: Type.Integer({ minimum: 100, maximum: 3_600_000 }),
  maxJobTypes: Type.Integer({ minimum: 1, maximum: 100_000 }),
  maxPayloadBytes: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024 }),
  maxBatchSize: Type.Integer({ minimum: 1, maximum: 100_000 }),
  /** Backpressure: enqueue is refused (429) while a tenant has this many jobs waiting; 0 turns it off. */
  maxQueuedPerTenant: Type.Integer({ minimum: 0, maximum: 1_000_000_000 }),
  maxClaimWaitMs: Type.Integer({ minimum: 0, maximum: 300_000 }),
  /** How often an idle long-poll looks again without a wake-up (delayed and retried jobs become runnable silently). */
  claimPollIntervalMs: Type.Integer({ minimum: 10, maximum: 300_000 }),
  /**
   * Replicas sharing the database: this one's id in `orch cluster status` (default host-pid-random),
   * how often the leader renews its lease (a dead leader is replaced within two renewals), and how
   * idle claimers wake: listen (LISTEN/NOTIFY), poll (every pollMs, for PgBouncer in transaction
   * mode, where LISTEN does not work), or auto (listen if a self-probe at start sees its own NOTIFY).
   */
  cluster: Type.Object({
    replicaId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' })),
    leaderRenewMs: Type.Integer({ minimum: 100, maximum: 60_000 }),
    notify: Type.Union([Type.Literal('auto'), Type.Literal('listen'), Type.Literal('poll')]),
    pollMs: Type.Integer({ minimum: 10, maximum: 10_000 }),
  }),
  /**
   * A worker silent this long is marked lost and its leases are released. At least 15 s: the SDK
   * heartbeats every 10 s while it holds leases, and the registry records a worker at most every 2 s.
   */
  workerLostAfterMs: Type.Integer({ minimum: 15_000, maximum: 24 * 3600 * 1000 }),
  /** How long a starting server waits for its database to answer (restarted together, or started before it). */
  databaseWaitMs: Type.Integer({ minimum: 0, maximum: 3600 * 1000 }),
  /** `orch leases list` flags a lease stuck when its last heartbeat is older than this. */
  leaseStuckAfterMs: Type.Integer({ minimum: 1000, maximum: 24 * 3600 * 1000 }),
  /** Jobs replayed per transaction by the replay runner. */
  replayBatchSize: Type.Integer({ minimum: 1, maximum: 100_000 }),
  /** Most entries one DLQ snapshot or replay may select. */
  dlqMaxSelection: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
  jobTypeDefaults: Type.Object({
    maxAttempts: Type.Integer({ minimum: 1, maximum: 1000 }),
    backoffBaseMs: Type.Integer({ minimum: 0 }),
    backoffMaxMs: Type.Integer({ minimum: 0 }),
    backoffJitter: Type.Number({ minimum: 0, maximum: 1 }),
    leaseMs: Type.Integer({ minimum: 1000 }),
    timeoutMs: Type.Union([Type.Integer({ minimum: 1000 }), Type.Null()]),
  }),
  /** Background loops: each has an interval; all share the Service shape in src/maintenance. */
  maintenance: Type.Object({
    leaseReaperIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000 }),
    leaseReaperBatchSize: Type.Integer({ minimum: 1, maximum: 100_000 }),
    /**
     * After the server starts and after a database outage, the reaper takes no lease back for this
     * long, so workers cut off meanwhile can heartbeat first. At least the SDK's longest heartbeat
     * pause (10 s) plus a margin.
     */
    leaseGraceMs: Type.Integer({ minimum: 0, maximum: 600_000 }),
    quotaKeeperIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000 }),
    queueCountRollupIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000 }),
    replayRunnerIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000 }),
    outboxRelayIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000 }),
    outboxPrunerIntervalMs: Type.Integer({ minimum: 10, maximum: 3_600_000 }),
    /** How often the scheduler looks for due ticks; it also wakes up for the next tick due sooner. */
    schedulerIntervalMs: Type.Integer({ minimum: 10, maximum: 60_000 }),
    /** A tick at most this late still fires whatever the catch-up policy; older ones were missed (docs/schedules.md). */
    scheduleGraceMs: Type.Integer({ minimum: 0, maximum: 86_400_000 }),
    backfillRunnerIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000 }),
    jobPrunerIntervalMs: Type.Integer({ minimum: 10, maximum: 3_600_000 }),
  }),
  /** Jobs that ended (succeeded, canceled, timed out, cleared) leave the ledger, with their history, this long after; 0 keeps them. */
  jobRetentionMs: Type.Integer({ minimum: 0 }),
});
export type Config = Static<typeof ConfigSchema>;

export const defaultConfig: Config = {
  auth: { mode: 'open', failedPerMinute: 30 },
  maxJsonDepth: 32,
  dataDir: './.orch',
  httpHost: '127.0.0.1',
  consoleDir: null,
  httpPort: 8080,
  logLevel: 'info',
  logFormat: 'auto',
  dbPoolSize: 20,
  dbPoolIdleMs: 10_000,
  maxJobTypes: 1000,
  maxPayloadBytes: 1024 * 1024,
  maxBatchSize: 10_000,
  maxQueuedPerTenant: 1_000_000,
  maxClaimWaitMs: 60_000,
  claimPollIntervalMs: 1000,
  cluster: { leaderRenewMs: 1000, notify: 'auto', pollMs: 100 },
  workerLostAfterMs: 30_000,
  databaseWaitMs: 30_000,
  leaseStuckAfterMs: 60_000,
  replayBatchSize: 5000,
  dlqMaxSelection: 1_000_000,
  events: {
    stream: 'ORCH_EVENTS',
    subjectPrefix: DEFAULT_EVENT_SUBJECT_PREFIX,
    maxAgeMs: 7 * 24 * 3600 * 1000,
    maxBytes: 1024 ** 3,
    duplicateWindowMs: 10 * 60 * 1000,
    replicas: 1,
    outboxRetentionMs: 24 * 3600 * 1000,
    relayBatchRows: 500,
    ssePollMs: 250,
    sseHeartbeatMs: 15_000,
    sseMaxBufferBytes: 1024 * 1024,
  },
  jobTypeDefaults: {
    maxAttempts: 5,
    backoffBaseMs: 1000,
    backoffMaxMs: 3_600_000,
    backoffJitter: 0.5,
    leaseMs: 30_000,
    timeoutMs: null,
  },
  maintenance: {
    leaseReaperIntervalMs: 1000,
    leaseReaperBatchSize: 1000,
    leaseGraceMs: 15_000,
    quotaKeeperIntervalMs: 5000,
    queueCountRollupIntervalMs: 1000,
    replayRunnerIntervalMs: 1000,
    outboxRelayIntervalMs: 100,
    outboxPrunerIntervalMs: 60_000,
    schedulerIntervalMs: 250,
    scheduleGraceMs: 60_000,
    backfillRunnerIntervalMs: 500,
    jobPrunerIntervalMs: 60_000,
  },
  jobRetentionMs: 7 * 24 * 3600 * 1000,
};

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function num(env: Env, name: string, fallback: number, integer = false): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (integer ? !Number.isInteger(n) : !Number.isFinite(n)) {
    throw new ConfigError(`${name} must be ${integer ? 'an integer' : 'a number'}, got "${raw}"`);
  }
  return n;
}

const int = (env: Env, name: string, fallback: number) => num(env, name, fallback, true);

/** ORCH_AUTH defaults to "required" as soon as a JWT secret or JWKS is configured, else "open". */
function authFrom(env: Env): Config['auth'] {
  const jwt = {
    jwtSecret: env.ORCH_AUTH_JWT_SECRET || undefined, jwksUrl: env.ORCH_AUTH_JWKS_URL || undefined, jwksFile: env.ORCH_AUTH_JWKS_FILE || undefined,
    issuer: env.ORCH_AUTH_ISSUER || undefined, audience: env.ORCH_AUTH_AUDIENCE || undefined,
  };
  const mode = env.ORCH_AUTH || (jwt.jwtSecret || jwt.jwksUrl || jwt.jwksFile ? 'required' : defaultConfig.auth.mode);
  if (mode !== 'open' && mode !== 'required') throw new ConfigError(`ORCH_AUTH must be "open" or "required", got "${mode}"`);
  const defined = Object.fromEntries(Object.entries(jwt).filter(([, v]) => v !== undefined));
  return { mode, ...defined, failedPerMinute: int(env, 'ORCH_AUTH_FAILED_PER_MINUTE', defaultConfig.auth.failedPerMinute) };
}

function notifyFrom(env: Env): Config['cluster']['notify'] {
  const v = env.ORCH_NOTIFY || defaultConfig.cluster.notify;
  if (v !== 'auto' && v !== 'listen' && v !== 'poll') throw new ConfigError(`ORCH_NOTIFY must be "auto", "listen" or "poll", got "${v}"`);
  return v;
}

/** Loopback addresses: the only ones an unauthenticated server may listen on. */
export const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

/** Builds the configuration from ORCH_* variables over the defaults, then validates it. */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const d = defaultConfig;
  const timeout = env.ORCH_DEFAULT_TIMEOUT_MS;
  const config: Config = {
    databaseUrl: env.ORCH_DATABASE_URL || undefined,
    migrationDatabaseUrl: env.ORCH_MIGRATION_DATABASE_URL || undefined,
    natsUrl: env.ORCH_NATS_URL || undefined,
    events: {
      stream: env.ORCH_EVENTS_STREAM || d.events.stream,
      subjectPrefix: env.ORCH_EVENTS_SUBJECT_PREFIX || d.events.subjectPrefix,
      maxAgeMs: int(env, 'ORCH_EVENTS_MAX_AGE_MS', d.events.maxAgeMs),
      maxBytes: int(env, 'ORCH_EVENTS_MAX_BYTES', d.events.maxBytes),
      duplicateWindowMs: int(env, 'ORCH_EVENTS_DUPLICATE_WINDOW_MS', d.events.duplicateWindowMs),
      replicas: int(env, 'ORCH_EVENTS_REPLICAS', d.events.replicas),
      outboxRetentionMs: int(env, 'ORCH_OUTBOX_RETENTION_MS', d.events.outboxRetentionMs),
      relayBatchRows: int(env, 'ORCH_OUTBOX_RELAY_BATCH_ROWS', d.events.relayBatchRows),
      ssePollMs: int(env, 'ORCH_SSE_POLL_MS', d.events.ssePollMs),
      sseHeartbeatMs: int(env, 'ORCH_SSE_HEARTBEAT_MS', d.events.sseHeartbeatMs),
      sseMaxBufferBytes: int(env, 'ORCH_SSE_MAX_BUFFER_BYTES', d.events.sseMaxBufferBytes),
    },
    auth: authFrom(env),
    maxJsonDepth: int(env, 'ORCH_MAX_JSON_DEPTH', d.maxJsonDepth),
    dataDir: env.ORCH_DATA_DIR || d.dataDir,
    httpHost: env.ORCH_HTTP_HOST || d.httpHost,
    consoleDir: env.ORCH_CONSOLE_DIR || d.consoleDir,
    httpPort: int(env, 'ORCH_HTTP_PORT', d.httpPort),
    logLevel: (env.ORCH_LOG_LEVEL || d.logLevel) as Config['logLevel'],
    logFormat: (env.ORCH_LOG_FORMAT || d.logFormat) as Config['logFormat'],
    dbPoolSize: int(env, 'ORCH_DB_POOL_SIZE', d.dbPoolSize),
    dbPoolIdleMs: int(env, 'ORCH_DB_POOL_IDLE_MS', d.dbPoolIdleMs),
    maxJobTypes: int(env, 'ORCH_MAX_JOB_TYPES', d.maxJobTypes),
    maxPayloadBytes: int(env, 'ORCH_MAX_PAYLOAD_BYTES', d.maxPayloadBytes),
    maxBatchSize: int(env, 'ORCH_MAX_BATCH_SIZE', d.maxBatchSize),
    maxClaimWaitMs: int(env, 'ORCH_MAX_CLAIM_WAIT_MS', d.maxClaimWaitMs),
    maxQueuedPerTenant: int(env, 'ORCH_MAX_QUEUED_PER_TENANT', d.maxQueuedPerTenant),
    claimPollIntervalMs: int(env, 'ORCH_CLAIM_POLL_INTERVAL_MS', d.claimPollIntervalMs),
    cluster: {
      ...(env.ORCH_REPLICA_ID ? { replicaId: env.ORCH_REPLICA_ID } : {}),
      leaderRenewMs: int(env, 'ORCH_LEADER_RENEW_MS', d.cluster.leaderRenewMs),
      notify: notifyFrom(env),
      pollMs: int(env, 'ORCH_NOTIFY_POLL_MS', d.cluster.pollMs),
    },
    workerLostAfterMs: int(env, 'ORCH_WORKER_LOST_AFTER_MS', d.workerLostAfterMs),
    databaseWaitMs: int(env, 'ORCH_DATABASE_WAIT_MS', d.databaseWaitMs),
    leaseStuckAfterMs: int(env, 'ORCH_LEASE_STUCK_AFTER_MS', d.leaseStuckAfterMs),
    replayBatchSize: int(env, 'ORCH_REPLAY_BATCH_SIZE', d.replayBatchSize),
    dlqMaxSelection: int(env, 'ORCH_DLQ_MAX_SELECTION', d.dlqMaxSelection),
    jobTypeDefaults: {
      maxAttempts: int(env, 'ORCH_DEFAULT_MAX_ATTEMPTS', d.jobTypeDefaults.maxAttempts),
      backoffBaseMs: int(env, 'ORCH_DEFAULT_BACKOFF_BASE_MS', d.jobTypeDefaults.backoffBaseMs),
      backoffMaxMs: int(env, 'ORCH_DEFAULT_BACKOFF_MAX_MS', d.jobTypeDefaults.backoffMaxMs),
      backoffJitter: num(env, 'ORCH_DEFAULT_BACKOFF_JITTER', d.jobTypeDefaults.backoffJitter),
      leaseMs: int(env, 'ORCH_DEFAULT_LEASE_MS', d.jobTypeDefaults.leaseMs),
      timeoutMs: timeout ? int(env, 'ORCH_DEFAULT_TIMEOUT_MS', 0) : d.jobTypeDefaults.timeoutMs,
    },
    maintenance: {
      leaseReaperIntervalMs: int(env, 'ORCH_LEASE_REAPER_INTERVAL_MS', d.maintenance.leaseReaperIntervalMs),
      leaseReaperBatchSize: int(env, 'ORCH_LEASE_REAPER_BATCH_SIZE', d.maintenance.leaseReaperBatchSize),
      leaseGraceMs: int(env, 'ORCH_LEASE_GRACE_MS', d.maintenance.leaseGraceMs),
      quotaKeeperIntervalMs: int(env, 'ORCH_QUOTA_KEEPER_INTERVAL_MS', d.maintenance.quotaKeeperIntervalMs),
      queueCountRollupIntervalMs: int(env, 'ORCH_QUEUE_COUNT_ROLLUP_INTERVAL_MS', d.maintenance.queueCountRollupIntervalMs),
      replayRunnerIntervalMs: int(env, 'ORCH_REPLAY_RUNNER_INTERVAL_MS', d.maintenance.replayRunnerIntervalMs),
      outboxRelayIntervalMs: int(env, 'ORCH_OUTBOX_RELAY_INTERVAL_MS', d.maintenance.outboxRelayIntervalMs),
      outboxPrunerIntervalMs: int(env, 'ORCH_OUTBOX_PRUNER_INTERVAL_MS', d.maintenance.outboxPrunerIntervalMs),
      schedulerIntervalMs: int(env, 'ORCH_SCHEDULER_INTERVAL_MS', d.maintenance.schedulerIntervalMs),
      scheduleGraceMs: int(env, 'ORCH_SCHEDULE_GRACE_MS', d.maintenance.scheduleGraceMs),
      backfillRunnerIntervalMs: int(env, 'ORCH_BACKFILL_RUNNER_INTERVAL_MS', d.maintenance.backfillRunnerIntervalMs),
      jobPrunerIntervalMs: int(env, 'ORCH_JOB_PRUNER_INTERVAL_MS', d.maintenance.jobPrunerIntervalMs),
    },
    jobRetentionMs: int(env, 'ORCH_JOB_RETENTION_MS', d.jobRetentionMs),
    ...overrides,
  };
  return validateConfig(config);
}

export function validateConfig(config: Config): Config {
  const errors = [...Value.Errors(ConfigSchema, config)];
  if (errors.length > 0) {
    const e = errors[0]!;
    throw new ConfigError(`invalid configuration at ${e.instancePath || '/'}: ${e.message}`);
  }
  if (config.auth.mode === 'open' && !isLoopback(config.httpHost)) {
    throw new ConfigError(`ORCH_HTTP_HOST=${config.httpHost} is not a loopback address: set ORCH_AUTH=required (API tokens, and ORCH_AUTH_JWT_SECRET or ORCH_AUTH_JWKS_URL for JWTs) before listening on it`);
  }
  if ([config.auth.jwtSecret, config.auth.jwksUrl, config.auth.jwksFile].filter(Boolean).length > 1) {
    throw new ConfigError('set one of ORCH_AUTH_JWT_SECRET, ORCH_AUTH_JWKS_URL, ORCH_AUTH_JWKS_FILE');
  }
  if (config.jobTypeDefaults.backoffMaxMs < config.jobTypeDefaults.backoffBaseMs) {
    throw new ConfigError('ORCH_DEFAULT_BACKOFF_MAX_MS must be >= ORCH_DEFAULT_BACKOFF_BASE_MS');
  }
  return config;
}
