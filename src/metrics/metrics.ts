import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DepthSample, OldestSample } from '../flow/queue-depth.ts';
import type { QuotaUse } from '../flow/quotas.ts';
import type { LeaseSample } from '../recovery/leases.ts';
import type { EventType } from '../events/envelope.ts';
import type { RelayObserver } from '../events/relay.ts';
import { STEP_DOWN_CAUSES } from '../cluster/elector.ts';
import type { WindowSamples } from '../windows/samples.ts';
import { NO_OUTCOME_CAUSES, THROTTLE_REASONS, type LedgerObserver, type Throttle, type TransitionRecord } from '../ledger/types.ts';

/** orchestrator_claims_total's outcomes: the claim took at least one job, or none. */
const CLAIM_OUTCOMES = ['leased', 'empty'] as const;

/**
 * The process's Prometheus registry. Counters and histograms are fed from
 * ledger transitions as they happen; nothing here reads the job table, so a
 * scrape stays cheap however large the ledger grows.
 */
export class Metrics implements LedgerObserver, RelayObserver {
  readonly registry = new Registry();
  readonly jobsEnqueued = new Counter({
    name: 'orchestrator_jobs_enqueued_total', help: 'Jobs accepted into the ledger.',
    labelNames: ['tenant', 'job_type'] as const, registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: 'orchestrator_jobs_total',
    help: 'Attempt outcomes: succeeded, failed (will retry), retried (lease expired, re-queued), dead_lettered, canceled, timed_out.',
    labelNames: ['tenant', 'job_type', 'outcome'] as const, registers: [this.registry],
  });
  readonly failures = new Counter({
    name: 'orchestrator_job_failures_total', help: 'Failed attempts by error class (worker failures, lease expiries, timeouts).',
    labelNames: ['job_type', 'error_class'] as const, registers: [this.registry],
  });
  readonly leaseExpired = new Counter({
    name: 'orchestrator_lease_expired_total', help: 'Leases that lapsed without a heartbeat.',
    labelNames: ['job_type'] as const, registers: [this.registry],
  });
  readonly throttled = new Counter({
    name: 'orchestrator_throttled_total',
    help: 'Claim rounds that found runnable work a control held back, by reason: rate (token bucket), concurrency (cap), quota (hourly count), paused.',
    labelNames: ['tenant', 'job_type', 'reason'] as const, registers: [this.registry],
  });
  readonly claims = new Counter({
    name: 'orchestrator_claims_total',
    help: 'Claim statements this replica ran (each a transaction on the ledger), by outcome: leased (took at least one job) or empty (found nothing to take).',
    labelNames: ['outcome'] as const, registers: [this.registry],
  });
  readonly boostRemaining = new Gauge({
    name: 'orchestrator_quota_boost_remaining_seconds',
    help: 'Seconds left of a temporary budget boost (orch quota boost); 0 when the quota runs on its own limits.',
    labelNames: ['tenant', 'job_type'] as const, registers: [this.registry],
  });
  readonly enqueueRefused = new Counter({
    name: 'orchestrator_enqueue_refused_total',
    help: 'Jobs refused at enqueue by backpressure (the tenant had ORCH_MAX_QUEUED_PER_TENANT jobs waiting).',
    labelNames: ['tenant'] as const, registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'orchestrator_queue_depth',
    help: 'Jobs by state: queued (runnable or waiting for a retry), throttled (a quota has no room now), paused, leased. From the queue counts, not the job table.',
    labelNames: ['tenant', 'job_type', 'state'] as const, registers: [this.registry],
  });
  readonly queueOldestAge = new Gauge({
    name: 'orchestrator_queue_oldest_age_seconds',
    help: 'Seconds the oldest runnable job (queued or waiting to retry) has waited since it became runnable; 0 when nothing waits.',
    labelNames: ['tenant', 'job_type'] as const, registers: [this.registry],
  });
  readonly dlqDepth = new Gauge({
    name: 'orchestrator_dlq_depth', help: 'Dead-lettered jobs.',
    labelNames: ['tenant', 'job_type'] as const, registers: [this.registry],
  });
  readonly dispatchLatency = new Histogram({
    name: 'orchestrator_dispatch_latency_seconds', help: 'From runnable (enqueue or run-after) to lease.',
    labelNames: ['job_type'] as const, registers: [this.registry],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  });
  readonly jobDuration = new Histogram({
    name: 'orchestrator_job_duration_seconds', help: 'From lease to the worker\'s ack.',
    labelNames: ['job_type', 'outcome'] as const, registers: [this.registry],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600],
  });

  readonly leasesActive = new Gauge({
    name: 'orchestrator_leases_active', help: 'Leases held now.',
    labelNames: ['job_type'] as const, registers: [this.registry],
  });
  readonly leaseOldestHeartbeatAge = new Gauge({
    name: 'orchestrator_lease_oldest_heartbeat_age_seconds', help: 'Age of the oldest last heartbeat (or claim, before the first) among leases held now.',
    labelNames: ['job_type'] as const, registers: [this.registry],
  });
  readonly leaseReleased = new Counter({
    name: 'orchestrator_lease_released_total', help: 'Leases taken from their holders before their deadline: force_released (operator), worker_lost (reaper).',
    labelNames: ['job_type', 'cause'] as const, registers: [this.registry],
  });
  readonly workersActive = new Gauge({
    name: 'orchestrator_workers_active', help: 'Workers neither stopped nor marked lost, per job type they claim.',
    labelNames: ['job_type'] as const, registers: [this.registry],
  });

  readonly replicas = new Gauge({
    name: 'orchestrator_replicas', help: 'Replicas of this orchestrator up (reported within three leader renew intervals), as orch.replicas says.',
    registers: [this.registry],
  });

  readonly leaderStepDowns = new Counter({
    name: 'orchestrator_leader_stepdowns_total',
    help: 'Times this replica stopped leading, by cause: renewal_late (its renewal came too late: the database unreachable or its event loop held), superseded (another replica\'s term began), shutdown.',
    labelNames: ['cause'] as const, registers: [this.registry],
  });

  readonly leader = new Gauge({
    name: 'orchestrator_leader', help: '1 on the replica that leads (runs the leader-only services), else 0.',
    registers: [this.registry],
  });

  readonly scheduleTickLag = new Histogram({
    name: 'orchestrator_schedule_tick_lag_seconds', help: 'How late (database clock) each schedule tick enqueued its job, on the leader.',
    labelNames: ['tenant', 'schedule'] as const, registers: [this.registry],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
  });
  readonly scheduleMissedTicks = new Counter({
    name: 'orchestrator_schedule_missed_ticks_total',
    help: 'Ticks that passed with no job (no server ran them in time, and the catch-up policy dropped them), as stored with each schedule: every replica reports the same count.',
    labelNames: ['tenant', 'schedule'] as const, registers: [this.registry],
  });
  readonly watermark = new Gauge({
    name: 'orchestrator_watermark_timestamp_seconds', help: 'Per tenant and job type, the end (Unix time) of the contiguous completed windows of its backfills and schedules.',
    labelNames: ['tenant', 'job_type'] as const, registers: [this.registry],
  });
  readonly backfillWindows = new Gauge({
    name: 'orchestrator_backfill_windows', help: 'Windows of backfills running, paused, or ended within the hour, by state.',
    labelNames: ['tenant', 'backfill', 'state'] as const, registers: [this.registry],
  });

  onTicks(ticks: { tenantId: string; schedule: string; lagMs: number }[]): void {
    for (const t of ticks) this.scheduleTickLag.observe({ tenant: t.tenantId, schedule: t.schedule }, Math.max(0, t.lagMs) / 1000);
  }

  /** Fills the schedule, watermark and backfill series from `read` (small tables, never the job table) before every scrape. */
  watchWindows(read: () => Promise<WindowSamples>): void {
    this.sources.push(async () => {
      const { schedules, watermarks, backfills } = await read();
      this.followAll(this.scheduleMissedTicks, schedules.map((s) => [{ tenant: s.tenantId, schedule: s.schedule }, s.missedTicks]));
      this.setAll(this.watermark, watermarks.map((w) => [{ tenant: w.tenantId, job_type: w.jobType }, Date.parse(w.watermark) / 1000]));
      this.setAll(this.backfillWindows, backfills.flatMap((b) => Object.entries(b.windows)
        .map(([state, n]): [Record<string, string>, number] => [{ tenant: b.tenantId, backfill: b.backfillId, state }, n])));
    });
  }

  readonly jobsPruned = new Counter({
    name: 'orchestrator_jobs_pruned_total', help: 'Jobs that ended and left the ledger with their history after ORCH_JOB_RETENTION_MS (on the leader).',
    registers: [this.registry],
  });

  readonly workflows = new Counter({
    name: 'orchestrator_workflows_total',
    help: 'Workflows that ended, by outcome (succeeded, failed, canceled); a retried workflow counts again when it ends. Stored in the database: every replica reports the same count.',
    labelNames: ['tenant', 'outcome'] as const, registers: [this.registry],
  });

  /** Fills orchestrator_workflows_total from the stored outcome counts (a row per tenant and outcome) before every scrape. */
  watchWorkflows(read: () => Promise<{ tenantId: string; outcome: string; n: number }[]>): void {
    this.sources.push(async () => this.followAll(this.workflows, (await read()).map((o) => [{ tenant: o.tenantId, outcome: o.outcome }, o.n])));
  }

  readonly httpRequests = new Histogram({
    name: 'orchestrator_http_request_duration_seconds', help: 'API requests by route template, method and status code.',
    labelNames: ['method', 'route', 'status_code'] as const, registers: [this.registry],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });

  /** Route is the template ("/jobs/:id"), or "unmatched" for 404s, so label values stay bounded. */
  onHttpResponse(method: string, route: string | undefined, statusCode: number, seconds: number): void {
    this.httpRequests.observe({ method, route: route ?? 'unmatched', status_code: String(statusCode) }, seconds);
  }

  readonly eventsPublished = new Counter({
    name: 'orchestrator_events_published_total', help: 'Events JetStream acknowledged, by type.',
    labelNames: ['event_type'] as const, registers: [this.registry],
  });
  readonly outboxPending = new Gauge({
    name: 'orchestrator_outbox_pending', help: 'Outbox rows (one per transition batch and tenant) not yet acknowledged by JetStream, as the relay last saw them.',
    registers: [this.registry],
  });
  readonly outboxLag = new Histogram({
    name: 'orchestrator_outbox_lag_seconds', help: 'From a transition\'s commit to JetStream\'s acknowledgement of its events.',
    registers: [this.registry], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
  });

  onPublished(published: ReadonlyMap<EventType, number>, lagsMs: number[]): void {
    for (const [eventType, n] of published) this.eventsPublished.inc({ event_type: eventType }, n);
    for (const lag of lagsMs) this.outboxLag.observe(lag / 1000);
  }

  onPending(rows: number): void {
    this.outboxPending.set(rows);
  }

  /**
   * Fills the queue gauges (depth, DLQ depth, oldest waiting age) from `read`
   * before every scrape. Series of a tenant and type whose count fell to zero
   * report 0 until the process restarts.
   */
  watchQueues(read: () => Promise<{ depth: DepthSample[]; oldest: OldestSample[] }>): void {
    this.sources.push(async () => {
      const { depth, oldest } = await read();
      this.knowPairs(depth);
      this.setAll(this.dlqDepth, depth.filter((s) => s.state === 'dead_lettered').map((s) => [{ tenant: s.tenantId, job_type: s.jobType }, s.n]));
      this.setAll(this.queueDepth, depth.filter((s) => s.state !== 'dead_lettered')
        .map((s) => [{ tenant: s.tenantId, job_type: s.jobType, state: s.state }, s.n]));
      this.setAll(this.queueOldestAge, oldest.map((s) => [{ tenant: s.tenantId, job_type: s.jobType }, s.ageSeconds]));
    });
  }

  /** Fills orchestrator_quota_boost_remaining_seconds from the quotas (a small table) before every scrape. */
  watchQuotas(read: () => Promise<QuotaUse[]>): void {
    this.sources.push(async () => {
      const quotas = await read();
      this.knowPairs(quotas);
      const now = Date.now();
      this.setAll(this.boostRemaining, quotas.map((q) => [{ tenant: q.tenantId, job_type: q.jobType },
        q.boostedUntil ? Math.max(0, (Date.parse(q.boostedUntil) - now) / 1000) : 0]));
    });
  }

  /** Fills the lease and worker gauges from `read` before every scrape. */
  watchLeases(read: () => Promise<LeaseSample[]>): void {
    this.sources.push(async () => {
      const samples = await read();
      this.setAll(this.leasesActive, samples.map((s) => [{ job_type: s.jobType }, s.leases]));
      this.setAll(this.leaseOldestHeartbeatAge, samples.map((s) => [{ job_type: s.jobType }, s.oldestHeartbeatAgeSeconds]));
      this.setAll(this.workersActive, samples.map((s) => [{ job_type: s.jobType }, s.workers]));
    });
  }

  /** Fills the cluster gauges from `read` before every scrape. */
  watchCluster(read: () => Promise<{ replicasUp: number; leading: boolean }>): void {
    this.sources.push(async () => {
      const c = await read();
      this.replicas.set(c.replicasUp);
      this.leader.set(c.leading ? 1 : 0);
    });
  }

  /** Brings the ledger gauges (and the tenants and job types they name) up to date. */
  async refresh(): Promise<void> {
    await Promise.all(this.sources.map((refresh) => refresh()));
  }

  /** The registry's text, with the ledger gauges brought up to date first. */
  async scrape(): Promise<string> {
    await this.refresh();
    return this.registry.metrics();
  }

  /** Sets a gauge's series to `values`; series reported before but missing now drop to 0. */
  /**
   * Moves counters up to totals stored in the database: the count lives there, the counter follows
   * it, so a new leader or another replica reports the same total, and it never goes back.
   */
  private followAll<L extends string>(counter: Counter<L>, totals: [Partial<Record<L, string>>, number][]): void {
    let counted = this.followed.get(counter);
    if (!counted) this.followed.set(counter, (counted = new Map()));
    for (const [labels, n] of totals) {
      const key = JSON.stringify(labels);
      counter.inc(labels, Math.max(0, n - (counted.get(key) ?? 0)));
      counted.set(key, Math.max(n, counted.get(key) ?? 0));
    }
  }

  private setAll<L extends string>(gauge: Gauge<L>, values: [Partial<Record<L, string>>, number][]): void {
    let reported = this.reported.get(gauge);
    if (!reported) this.reported.set(gauge, (reported = new Map()));
    const now = new Set<string>();
    for (const [labels, n] of values) {
      const key = JSON.stringify(labels);
      now.add(key);
      reported.set(key, labels);
      gauge.set(labels, n);
    }
    for (const [key, labels] of reported) if (!now.has(key)) gauge.set(labels as Partial<Record<L, string>>, 0);
  }

  /**
   * Exports every refusal counter of these tenants and job types at 0 from
   * the moment they are known (their first enqueue, a quota naming them, the
   * ledger at startup and at each scrape). prom-client creates a labelled
   * series only at its first increment, and increase() over a series that
   * first appears at 1 sees no increase: a tenant's first refusal would never
   * fire OrchestratorBackpressure. Scopes with "*" name no series.
   */
  knowPairs(pairs: Iterable<{ tenantId: string; jobType: string }>): void {
    for (const { tenantId, jobType } of pairs) {
      if (tenantId === '*' || jobType === '*') continue;
      const key = `${tenantId}\u0000${jobType}`;
      if (this.knownPairs.has(key)) continue;
      this.knownPairs.add(key);
      for (const reason of THROTTLE_REASONS) this.throttled.inc({ tenant: tenantId, job_type: jobType, reason }, 0);
      this.enqueueRefused.inc({ tenant: tenantId }, 0);
    }
  }

  onClaimed(leases: number): void {
    const outcome: (typeof CLAIM_OUTCOMES)[number] = leases > 0 ? 'leased' : 'empty';
    this.claims.inc({ outcome });
  }

  onThrottled(throttles: Throttle[]): void {
    for (const t of throttles) this.throttled.inc({ tenant: t.tenantId, job_type: t.jobType, reason: t.reason });
  }

  onEnqueueRefused(tenantId: string, jobs: number): void {
    this.enqueueRefused.inc({ tenant: tenantId }, jobs);
  }

  /** Error classes come from workers; cap them per job type so a buggy worker cannot explode label cardinality. */
  private readonly errorClasses = new Map<string, Set<string>>();
  static readonly MAX_ERROR_CLASSES_PER_TYPE = 20;
  /** Refresh the ledger gauges before a scrape (watchQueues, watchQuotas, watchLeases). */
  private readonly sources: (() => Promise<void>)[] = [];
  /** Tenant and job type pairs whose refusal counters exist (knowPairs). */
  private readonly knownPairs = new Set<string>();
  /** Label sets each gauge has reported, so a series that disappears reads 0 instead of its last value. */
  private readonly reported = new Map<Gauge<string>, Map<string, object>>();
  /** Per counter that follows stored totals: the total each label set was moved up to. */
  private readonly followed = new Map<Counter<string>, Map<string, number>>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'orchestrator_process_' });
    // at 0 from the start, so that increase() sees the first step-down
    for (const cause of STEP_DOWN_CAUSES) this.leaderStepDowns.inc({ cause }, 0);
    for (const outcome of CLAIM_OUTCOMES) this.claims.inc({ outcome }, 0);
  }

  /**
   * Transitions arrive in batches of hundreds: counts are summed per label set
   * first, so prom-client hashes each label set once per batch, not per job.
   */
  onTransitions(records: TransitionRecord[]): void {
    const counts = new Map<Counter<string>, Map<string, { labels: Record<string, string>; n: number }>>();
    const count = (counter: Counter<string>, labels: Record<string, string>) => {
      let byLabels = counts.get(counter);
      if (!byLabels) counts.set(counter, (byLabels = new Map()));
      const key = Object.values(labels).join('\u0000');
      const entry = byLabels.get(key);
      if (entry) entry.n++;
      else byLabels.set(key, { labels, n: 1 });
    };
    for (const r of records) {
      if (r.from === null) {
        // enqueued (or replayed), queued or waiting for its parents
        this.knowPairs([r]);
        count(this.jobsEnqueued, { tenant: r.tenantId, job_type: r.jobType });
      } else if (r.to === 'leased') {
        if (r.dispatchLatencyMs !== undefined) this.dispatchLatency.observe({ job_type: r.jobType }, r.dispatchLatencyMs / 1000);
      } else if (!NO_OUTCOME_CAUSES.has(r.cause)) {
        // an attempt's outcome (a dependent canceled by its parent's failure counts as canceled, as an operator's cancel of a queued job)
        const outcome = r.to === 'queued' ? 'retried' : r.to;
        count(this.jobs, { tenant: r.tenantId, job_type: r.jobType, outcome });
        if (r.runMs !== undefined) this.jobDuration.observe({ job_type: r.jobType, outcome }, r.runMs / 1000);
        if (r.cause === 'force_released' || r.cause === 'worker_lost') count(this.leaseReleased, { job_type: r.jobType, cause: r.cause });
        if (r.cause === 'lease_expired') {
          count(this.leaseExpired, { job_type: r.jobType });
          count(this.failures, { job_type: r.jobType, error_class: 'LeaseExpired' });
        } else if (r.errorClass) {
          count(this.failures, { job_type: r.jobType, error_class: this.errorClassLabel(r.jobType, r.errorClass) });
        }
      }
    }
    for (const [counter, byLabels] of counts) for (const { labels, n } of byLabels.values()) counter.inc(labels, n);
  }

  private errorClassLabel(jobType: string, errorClass: string): string {
    let seen = this.errorClasses.get(jobType);
    if (!seen) this.errorClasses.set(jobType, (seen = new Set()));
    const cls = errorClass.slice(0, 64);
    if (seen.has(cls)) return cls;
    if (seen.size >= Metrics.MAX_ERROR_CLASSES_PER_TYPE) return 'other';
    seen.add(cls);
    return cls;
  }
}
