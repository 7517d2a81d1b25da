import type { Queryable } from '../ledger/db.ts';
import { queueGauges, type DepthSample, type OldestSample } from '../flow/queue-depth.ts';
import { leaseSamples, type LeaseSample } from '../recovery/leases.ts';
import { attemptOutcomesSince } from './history.ts';

/**
 * The conditions of the alerts in ops/devops/orchestrator/alerts.yaml,
 * evaluated now for one tenant from what the server keeps: the gauges from
 * the same queries that fill /metrics (queue counts, leases, cluster), the
 * rates from the job history over the alerts' windows (an index range of
 * orch.job_transitions). Prometheus also waits out each rule's `for:`; this
 * does not: "firing" means the condition holds now. Thresholds and windows
 * are alerts.yaml's (test/alerts-api.test.ts checks the alert names match).
 */

export const ALERT_NAMES = [
  'OrchestratorQueueDepthHigh', 'OrchestratorDLQDepthHigh', 'OrchestratorFailuresHigh', 'OrchestratorErrorCluster',
  'OrchestratorFailureBurnRateHigh', 'OrchestratorLeaseStall', 'OrchestratorNoLeader', 'OrchestratorBackpressure',
  'OrchestratorScheduleMissedTicks', 'OrchestratorCriticalPersistent', 'OrchestratorDualCritical',
] as const;
export type AlertName = (typeof ALERT_NAMES)[number];
export type Severity = 'warning' | 'critical' | 'page';

/** One rule of alerts.yaml (an alert name may have several: a warning and a critical threshold). */
export interface AlertRule {
  severity: Severity;
  /** The rule's `for:` (null: none), which this evaluation does not wait out. */
  for: string | null;
  /** The condition in words, with its thresholds and windows. */
  condition: string;
}

/** A label set for which a rule's condition holds now, with the value the alert's expression gives. */
export interface Firing {
  severity: Severity;
  labels: Record<string, string>;
  value: number;
}

export interface AlertHealth {
  alert: AlertName;
  /** firing: some rule's condition holds now (without its `for:`); ok: none does. */
  state: 'ok' | 'firing';
  /** The labels its alerts carry (besides severity), as the runbook link passes them. */
  labels: string[];
  rules: AlertRule[];
  firing: Firing[];
}

/** What the gauges say now about one job type of the tenant. */
export interface JobTypeGauges {
  jobType: string;
  /** orchestrator_queue_depth by state: queued (runnable), throttled, paused, leased, waiting (for parents). */
  queued: number;
  throttled: number;
  paused: number;
  leased: number;
  waiting: number;
  deadLettered: number;
  oldestQueuedAgeSeconds: number;
  leases: number;
  oldestHeartbeatAgeSeconds: number;
  workers: number;
}

export interface AlertReport {
  tenantId: string;
  evaluatedAt: string;
  alerts: AlertHealth[];
  jobTypes: JobTypeGauges[];
  cluster: { replicasUp: number; leading: boolean };
}

/** Per job type and error class, attempts counted in each window the rules read. */
interface OutcomeCounts {
  jobType: string;
  /** failed | retried | dead_lettered | timed_out: an error; succeeded: not; canceled never counted. */
  bad: boolean;
  errorClass: string | null;
  windows: Record<Window, number>;
}
const WINDOWS = { '5m': 300, '10m': 600, '15m': 900, '30m': 1800, '1h': 3600, '6h': 21600 } as const;
type Window = keyof typeof WINDOWS;

/** Everything the evaluation reads, gathered in one read-only transaction of the tenant (evaluate() is pure). */
export interface AlertInputs {
  tenantId: string;
  depth: DepthSample[];
  oldest: OldestSample[];
  leases: LeaseSample[];
  outcomes: OutcomeCounts[];
  /** Enabled schedules whose next tick is more than the grace overdue. */
  overdueSchedules: { schedule: string; overdueSeconds: number; missedTicks: number }[];
  cluster: { replicasUp: number; leading: boolean };
  /** ORCH_MAX_QUEUED_PER_TENANT: enqueues are refused while this many jobs wait. */
  maxQueuedPerTenant: number;
}

/**
 * Reads the inputs with `db` as the tenant reader (row-level security keeps
 * them to the tenant): the queue and lease gauges, the attempt outcomes of the
 * last 6 h by window, the overdue schedules.
 */
export async function readAlertInputs(db: Queryable, o: { tenantId: string; scheduleGraceMs: number; maxQueuedPerTenant: number; cluster: AlertInputs['cluster'] }): Promise<AlertInputs> {
  const { depth, oldest } = await queueGauges(db);
  const leases = await leaseSamples(db);
  const windowColumns = Object.entries(WINDOWS)
    .map(([w, s]) => `count(*) FILTER (WHERE o.at > now() - make_interval(secs => ${s}))::int AS "${w}"`).join(', ');
  const { rows } = await db.query<{ job_type: string; bad: boolean; error_class: string | null } & Record<Window, number>>(`
    SELECT o.job_type, o.outcome <> 'succeeded' AS bad, CASE WHEN o.outcome <> 'succeeded' THEN o.error_class END AS error_class, ${windowColumns}
    FROM (${attemptOutcomesSince(`now() - make_interval(secs => ${WINDOWS['6h']})`)}) o
    WHERE o.outcome <> 'canceled' GROUP BY 1, 2, 3`);
  const outcomes = rows.map((r) => ({
    jobType: r.job_type, bad: r.bad, errorClass: r.error_class,
    windows: Object.fromEntries(Object.keys(WINDOWS).map((w) => [w, r[w as Window]])) as Record<Window, number>,
  }));
  const schedules = await db.query<{ name: string; overdue: number; missed_ticks: string }>(
    `SELECT name, extract(epoch FROM now() - next_tick_at)::float8 AS overdue, missed_ticks FROM orch.schedules
     WHERE enabled AND next_tick_at < now() - make_interval(secs => $1::float8 / 1000) ORDER BY name`, [o.scheduleGraceMs]);
  return {
    tenantId: o.tenantId, depth, oldest, leases, outcomes, cluster: o.cluster, maxQueuedPerTenant: o.maxQueuedPerTenant,
    overdueSchedules: schedules.rows.map((r) => ({ schedule: r.name, overdueSeconds: Math.round(r.overdue), missedTicks: Number(r.missed_ticks) })),
  };
}

/** The gauges per job type, from the inputs. */
export function jobTypeGauges(i: AlertInputs): JobTypeGauges[] {
  const byType = new Map<string, JobTypeGauges>();
  const of = (jobType: string) => {
    let g = byType.get(jobType);
    if (!g) {
      byType.set(jobType, (g = { jobType, queued: 0, throttled: 0, paused: 0, leased: 0, waiting: 0, deadLettered: 0, oldestQueuedAgeSeconds: 0, leases: 0, oldestHeartbeatAgeSeconds: 0, workers: 0 }));
    }
    return g;
  };
  for (const d of i.depth) {
    const g = of(d.jobType);
    if (d.state === 'dead_lettered') g.deadLettered += d.n;
    else g[d.state] += d.n;
  }
  for (const o of i.oldest) of(o.jobType).oldestQueuedAgeSeconds = o.ageSeconds;
  for (const l of i.leases) Object.assign(of(l.jobType), { leases: l.leases, oldestHeartbeatAgeSeconds: l.oldestHeartbeatAgeSeconds, workers: l.workers });
  return [...byType.values()].sort((a, b) => a.jobType.localeCompare(b.jobType));
}

/** Evaluates every alert's conditions on the inputs. */
export function evaluate(i: AlertInputs): AlertHealth[] {
  const tenant = i.tenantId;
  const gauges = jobTypeGauges(i);
  const sum = (jobType: string, bad: boolean | null, w: Window) => i.outcomes
    .filter((o) => o.jobType === jobType && (bad === null || o.bad === bad)).reduce((n, o) => n + o.windows[w], 0);
  const ratio = (jobType: string, w: Window) => sum(jobType, true, w) / Math.max(sum(jobType, null, w), 1e-9);
  const attemptTypes = [...new Set(i.outcomes.map((o) => o.jobType))].sort();
  const health = (alert: AlertName, labels: string[], rules: AlertRule[], firing: Firing[]): AlertHealth =>
    ({ alert, state: firing.length > 0 ? 'firing' : 'ok', labels, rules, firing });

  const queueDepth = health('OrchestratorQueueDepthHigh', ['tenant', 'job_type'], [
    { severity: 'warning', for: '5m', condition: 'the oldest runnable job has waited over 15m, and runnable work is queued (not paused or held by a quota)' },
    { severity: 'critical', for: '5m', condition: 'the oldest runnable job has waited over 1h, and runnable work is queued' },
  ], gauges.filter((g) => g.queued > 0 && g.oldestQueuedAgeSeconds > 900).map((g) => ({
    severity: g.oldestQueuedAgeSeconds > 3600 ? 'critical' : 'warning', labels: { tenant, job_type: g.jobType }, value: g.oldestQueuedAgeSeconds,
  })));

  const dlq = health('OrchestratorDLQDepthHigh', ['tenant', 'job_type'], [
    { severity: 'warning', for: '10m', condition: 'more than 100 dead-lettered jobs' },
  ], gauges.filter((g) => g.deadLettered > 100).map((g) => ({ severity: 'warning', labels: { tenant, job_type: g.jobType }, value: g.deadLettered })));

  const failures = health('OrchestratorFailuresHigh', ['tenant', 'job_type'], [
    { severity: 'critical', for: '5m', condition: 'half or more of the attempts over 10m ended failed, retried, dead_lettered or timed_out, at least 10 of them' },
  ], attemptTypes.filter((t) => ratio(t, '10m') >= 0.5 && sum(t, true, '10m') >= 10)
    .map((t) => ({ severity: 'critical', labels: { tenant, job_type: t }, value: ratio(t, '10m') })));

  const clusters: Firing[] = [];
  for (const t of attemptTypes) {
    const classes = new Map<string, number>();
    for (const o of i.outcomes) if (o.jobType === t && o.bad && o.errorClass) classes.set(o.errorClass, (classes.get(o.errorClass) ?? 0) + o.windows['15m']);
    const all = [...classes.values()].reduce((a, b) => a + b, 0);
    for (const [cls, n] of classes) {
      // >= 1 failure a minute over 15m: 15 failures of the class
      if (n / Math.max(all, 1e-9) >= 0.8 && n >= 15) clusters.push({ severity: 'warning', labels: { job_type: t, error_class: cls }, value: n / all });
    }
  }
  const errorCluster = health('OrchestratorErrorCluster', ['job_type', 'error_class'], [
    { severity: 'warning', for: '10m', condition: 'one error class is 80% or more of the failures over 15m, at least one a minute' },
  ], clusters);

  const burn = (long: Window, short: Window, factor: number, minBad: number, severity: Severity) => attemptTypes
    .filter((t) => ratio(t, long) > factor * 0.01 && ratio(t, short) > factor * 0.01 && sum(t, true, long) >= minBad)
    .map((t): Firing => ({ severity, labels: { job_type: t, long_window: long, short_window: short }, value: ratio(t, long) }));
  const burnRate = health('OrchestratorFailureBurnRateHigh', ['job_type'], [
    { severity: 'critical', for: '2m', condition: 'the error ratio is over 14.4% (14.4x the 1% budget) over 1h and over 5m, at least 5 bad attempts in 1h' },
    { severity: 'warning', for: '15m', condition: 'the error ratio is over 6% (6x the 1% budget) over 6h and over 30m, at least 10 bad attempts in 6h' },
  ], [...burn('1h', '5m', 14.4, 5, 'critical'), ...burn('6h', '30m', 6, 10, 'warning')]);

  const leaseStall = health('OrchestratorLeaseStall', ['job_type'], [
    { severity: 'critical', for: '5m', condition: 'a lease held now has not heartbeated for over 5m' },
  ], gauges.filter((g) => g.leases > 0 && g.oldestHeartbeatAgeSeconds > 300)
    .map((g) => ({ severity: 'critical', labels: { job_type: g.jobType }, value: g.oldestHeartbeatAgeSeconds })));

  const noLeader = health('OrchestratorNoLeader', [], [
    { severity: 'critical', for: '2m', condition: 'replicas are up and none leads' },
  ], i.cluster.replicasUp > 0 && !i.cluster.leading ? [{ severity: 'critical', labels: {}, value: i.cluster.replicasUp }] : []);

  const waitingNow = gauges.reduce((n, g) => n + g.queued + g.throttled + g.paused, 0);
  const backpressure = health('OrchestratorBackpressure', ['tenant', 'job_type'], [
    { severity: 'warning', for: '30m', condition: 'a quota holds waiting work back now (rate, concurrency or hourly quota; not a pause) while the oldest job has waited over 10m; the value is the jobs held back (Prometheus: held-back claim rounds/s)' },
    { severity: 'critical', for: null, condition: 'enqueues are refused: the tenant has ORCH_MAX_QUEUED_PER_TENANT jobs waiting (labels: tenant only)' },
  ], [
    ...gauges.filter((g) => g.throttled > 0 && g.oldestQueuedAgeSeconds > 600)
      .map((g): Firing => ({ severity: 'warning', labels: { tenant, job_type: g.jobType }, value: g.throttled })),
    ...(waitingNow >= i.maxQueuedPerTenant ? [{ severity: 'critical' as const, labels: { tenant }, value: waitingNow }] : []),
  ]);

  const missedTicks = health('OrchestratorScheduleMissedTicks', ['tenant', 'schedule'], [
    { severity: 'warning', for: null, condition: 'a schedule\'s tick is overdue past ORCH_SCHEDULE_GRACE_MS now (its catch-up policy will count it missed); the value is the seconds overdue' },
  ], i.overdueSchedules.map((s) => ({ severity: 'warning', labels: { tenant, schedule: s.schedule }, value: s.overdueSeconds })));

  const sources = [queueDepth, dlq, failures, errorCluster, burnRate, leaseStall, noLeader, backpressure, missedTicks];
  const criticals = sources.flatMap((a) => a.firing.filter((f) => f.severity === 'critical').map((f) => ({ alert: a.alert, ...f })));
  // as alertmanager.yaml mutes it: a burn-rate critical of a job type whose FailuresHigh fires is the same problem
  const unmuted = criticals.filter((c) => c.alert !== 'OrchestratorFailureBurnRateHigh'
    || !failures.firing.some((f) => f.labels.job_type === c.labels.job_type));
  const names = new Set(unmuted.map((c) => c.alert));
  const jobTypes = new Set(unmuted.map((c) => c.labels.job_type ?? ''));
  const persistent = health('OrchestratorCriticalPersistent', ['critical_alert', 'tenant', 'job_type'], [
    { severity: 'page', for: '15m', condition: 'a critical alert fires (it pages once it has fired for 15m)' },
  ], criticals.map((c) => ({ severity: 'page', labels: { critical_alert: c.alert, ...c.labels }, value: 1 })));
  const dual = health('OrchestratorDualCritical', [], [
    { severity: 'page', for: '2m', condition: 'critical alerts of at least two names fire on at least two job types (muted ones left out)' },
  ], names.size >= 2 && jobTypes.size >= 2 ? [{ severity: 'page', labels: {}, value: names.size }] : []);
  return [...sources, persistent, dual];
}
