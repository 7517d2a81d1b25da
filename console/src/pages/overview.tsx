import { useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { useMemo } from 'react';
import { Link } from 'react-router';
import type { AlertHealth, JobTypeGauges } from '../../../src/metrics/alert-conditions.ts';
import type { Throughput } from '../../../src/metrics/history.ts';
import { TimeChart, type Series } from '../components/chart.tsx';
import { duration } from '../components/format.ts';
import { useLiveRefresh } from '../components/live.ts';
import { Loaded, Metric, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { useClient } from '../session.tsx';

/** Ages and rates move by the second: the gauges are read again this often, and at once on every job event. */
const REFRESH_MS = 5_000;
const MINUTES = 60;
export const ALERTS_KEY = ['alerts'];
const THROUGHPUT_KEY = ['throughput', MINUTES];
// distinct hues that keep their contrast on the console's white background
const COLORS = ['#1f6feb', '#c2410c', '#15803d', '#7e22ce', '#b91c1c', '#0e7490', '#a16207', '#be185d'];

/** The runbook page of an alert, with the labels of one firing label set in its query, as alerts.yaml links it. */
export function runbookLink(alert: string, labels: Record<string, string> = {}): string {
  const q = new URLSearchParams(Object.entries(labels).filter(([, v]) => v !== ''));
  return `/runbook/${alert}${q.size > 0 ? `?${q}` : ''}`;
}

/** "tenant=a, job_type=b" */
export const labelText = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(', ') || 'no labels';

const gauge = createColumnHelper<JobTypeGauges>();
const GAUGE_COLUMNS = [
  gauge.accessor('jobType', { header: 'Job type', cell: (c) => <Link to={`/jobs?jobType=${encodeURIComponent(c.getValue())}`}>{c.getValue()}</Link> }),
  gauge.accessor('queued', { header: 'Queued' }),
  gauge.accessor((g) => g.throttled + g.paused, { id: 'held', header: 'Held (quota, pause)' }),
  gauge.accessor('oldestQueuedAgeSeconds', { header: 'Oldest waiting', cell: (c) => (c.getValue() > 0 ? duration(c.getValue() * 1000) : '—') }),
  gauge.accessor('leases', { header: 'Leases' }),
  gauge.accessor('oldestHeartbeatAgeSeconds', { header: 'Oldest heartbeat', cell: (c) => (c.row.original.leases > 0 ? `${duration(c.getValue() * 1000)} ago` : '—') }),
  gauge.accessor('workers', { header: 'Workers' }),
  gauge.accessor('deadLettered', { header: 'Dead letters', cell: (c) => (c.getValue() > 0 ? <Link to={`/dead-letters?jobType=${encodeURIComponent(c.row.original.jobType)}`}>{c.getValue()}</Link> : 0) }),
];

/** One chart's lines: one per job type, from one series of the throughput. */
function lines(t: Throughput, pick: (s: Throughput['jobTypes'][number]) => number[]): Series[] {
  return t.jobTypes.map((s, i) => ({ label: s.jobType, values: pick(s), color: COLORS[i % COLORS.length]! }));
}

/** The tenant at a glance: the alert conditions, the gauges per job type, and the last hour per minute. */
export function OverviewPage() {
  const client = useClient();
  const alerts = useQuery({ queryKey: ALERTS_KEY, queryFn: () => client.alerts(), refetchInterval: REFRESH_MS });
  const throughput = useQuery({ queryKey: THROUGHPUT_KEY, queryFn: () => client.throughput(MINUTES), refetchInterval: REFRESH_MS * 6 });
  useLiveRefresh({}, [ALERTS_KEY, ['throughput']]);
  return (
    <section>
      <h1>Overview</h1>
      <Loaded query={alerts}>
        {(r) => {
          const total = (f: (g: JobTypeGauges) => number) => r.jobTypes.reduce((n, g) => n + f(g), 0);
          const oldest = Math.max(0, ...r.jobTypes.map((g) => g.oldestQueuedAgeSeconds));
          return (
            <>
              <div className="metrics">
                <Metric label="Alert conditions holding" value={r.alerts.filter((a) => a.state === 'firing').length} hint="without the rules' for: durations" />
                <Metric label="Queued" value={total((g) => g.queued)} />
                <Metric label="Oldest waiting" value={oldest > 0 ? duration(oldest * 1000) : '—'} />
                <Metric label="Dead letters" value={total((g) => g.deadLettered)} />
                <Metric label="Active leases" value={total((g) => g.leases)} />
                <Metric label="Workers" value={Math.max(0, ...r.jobTypes.map((g) => g.workers))} hint="the most active workers of any one job type" />
                <Metric label="Leader" value={r.cluster.leading ? 'yes' : 'none'} hint={`${r.cluster.replicasUp} replicas up`} />
              </div>
              <h2>Alert conditions</h2>
              <p className="muted">Each alert of alerts.yaml evaluated now for this tenant. Firing means the condition holds now; Prometheus also waits out the rule&apos;s <code>for:</code>.</p>
              <AlertTable alerts={r.alerts} />
              <h2>Job types</h2>
              <DataTable label="Job types now" data={r.jobTypes} columns={GAUGE_COLUMNS} rowId={(g) => g.jobType} empty="No job of this tenant yet." sortable />
            </>
          );
        }}
      </Loaded>
      <h2>Last hour, per minute</h2>
      <Loaded query={throughput}>{(t) => <Charts t={t} />}</Loaded>
    </section>
  );
}

function Charts({ t }: { t: Throughput }) {
  const times = useMemo(() => t.times.map((iso) => Date.parse(iso) / 1000), [t.times]);
  const charts = useMemo(() => [
    { title: 'Succeeded per minute', series: lines(t, (s) => s.succeeded) },
    { title: 'Failed (retrying) and dead-lettered per minute', series: lines(t, (s) => s.failed.map((n, i) => n + s.deadLettered[i]!)) },
    { title: 'Jobs waiting', series: lines(t, (s) => s.waiting) },
  ], [t]);
  if (t.jobTypes.length === 0) return <p className="muted">Nothing ran in the last hour.</p>;
  return <div className="grid-2">{charts.map((c) => <TimeChart key={c.title} title={c.title} times={times} series={c.series} />)}</div>;
}

/** Every alert with its state and the label sets that hold, each linking its runbook page. */
export function AlertTable({ alerts }: { alerts: AlertHealth[] }) {
  return (
    <table aria-label="Alert conditions">
      <thead><tr><th scope="col">Alert</th><th scope="col">State</th><th scope="col">Where it holds</th></tr></thead>
      <tbody>
        {alerts.map((a) => (
          <tr key={a.alert}>
            <td><Link to={runbookLink(a.alert)}>{a.alert}</Link></td>
            <td><StateBadge state={a.state} /></td>
            <td>
              {a.firing.length === 0 ? <span className="muted">—</span> : (
                <ul>
                  {a.firing.map((f) => (
                    <li key={`${f.severity} ${labelText(f.labels)}`}>
                      <Link to={runbookLink(a.alert, f.labels)}>{f.severity}: {labelText(f.labels)}</Link> (value {Number.isInteger(f.value) ? f.value : f.value.toFixed(3)})
                    </li>
                  ))}
                </ul>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
