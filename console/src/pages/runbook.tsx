/// <reference types="vite/client" />
import { useQuery } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import Markdown from 'react-markdown';
import { Link, useParams, useSearchParams } from 'react-router';
import runbook from '../../../ops/devops/orchestrator/incident-response.md?raw';
import type { AlertHealth } from '../../../src/metrics/alert-conditions.ts';
import { ActionButton } from '../components/action.tsx';
import { ErrorNote, Loaded, StateBadge } from '../components/status.tsx';
import { useClient, useSession } from '../session.tsx';
import { ALERTS_KEY, AlertTable, labelText, runbookLink } from './overview.tsx';

const REFRESH_MS = 5_000;

/** The runbook's "## " sections by heading; built into the bundle, so the page shows the runbook of the server's release. */
const SECTIONS = new Map(runbook.split(/^## /m).slice(1).map((s) => {
  const newline = s.indexOf('\n');
  return [s.slice(0, newline).trim(), s.slice(newline + 1)] as const;
}));

/** /runbook: every alert and its state now; /runbook/:alert: what fires, the steps, and their actions. */
export function RunbookPage() {
  const { alert } = useParams();
  const client = useClient();
  const alerts = useQuery({ queryKey: ALERTS_KEY, queryFn: () => client.alerts(), refetchInterval: REFRESH_MS });
  if (!alert) {
    return (
      <section>
        <h1>Runbook</h1>
        <p className="muted">The on-call runbook (ops/devops/orchestrator/incident-response.md), one page per alert, with each alert&apos;s condition evaluated now for this tenant.</p>
        <Loaded query={alerts}>{(r) => <AlertTable alerts={r.alerts} />}</Loaded>
        {['Before you start', 'Synthetic checks', 'Backup and restore', 'Escalation'].map((h) => SECTIONS.has(h) && (
          <article key={h}><h2>{h}</h2><Markdown>{SECTIONS.get(h)!}</Markdown></article>
        ))}
      </section>
    );
  }
  const section = SECTIONS.get(alert);
  if (section === undefined) return <ErrorNote error={{ status: 404, code: 'not_found', message: `the runbook has no section ${alert}` }} />;
  return (
    <section>
      <p><Link to="/runbook">Runbook</Link> / {alert}</p>
      <h1>{alert}</h1>
      <Loaded query={alerts}>{(r) => <AlertNow health={r.alerts.find((a) => a.alert === alert)} />}</Loaded>
      <h2>Steps</h2>
      <article className="runbook"><Markdown>{section}</Markdown></article>
    </section>
  );
}

/** The alert's state now, the label sets that hold, the labels of the link that led here, and the actions for them. */
function AlertNow({ health }: { health: AlertHealth | undefined }) {
  const [params] = useSearchParams();
  const { tenant, setTenant } = useSession();
  if (!health) return <p className="muted">This alert is not evaluated by the server.</p>;
  const fromLink = Object.fromEntries([...params].filter(([, v]) => v !== ''));
  // the labels to act on: the alert link's, else the first label set that holds now
  const target = Object.keys(fromLink).length > 0 ? fromLink : health.firing[0]?.labels ?? {};
  const otherTenant = target.tenant && target.tenant !== tenant ? target.tenant : null;
  return (
    <>
      <p>State now: <StateBadge state={health.state} /> <span className="muted">(the condition, without the rule&apos;s <code>for:</code>)</span></p>
      <ul>{health.rules.map((r) => <li key={r.severity + r.condition}>{r.severity}{r.for ? `, for ${r.for}` : ''}: {r.condition}</li>)}</ul>
      {health.firing.length > 0 && (
        <>
          <h2>Firing now</h2>
          <ul aria-label="Firing label sets">
            {health.firing.map((f) => (
              <li key={`${f.severity} ${labelText(f.labels)}`}>
                <Link to={runbookLink(health.alert, f.labels)}>{f.severity}: {labelText(f.labels)}</Link> (value {Number.isInteger(f.value) ? f.value : f.value.toFixed(3)})
              </li>
            ))}
          </ul>
        </>
      )}
      <h2>Acting on</h2>
      <p aria-label="Labels">{labelText(target)}{Object.keys(fromLink).length > 0 ? ' (from the alert link)' : ''}</p>
      {otherTenant ? (
        <p>These labels are of tenant {otherTenant}; the console acts for {tenant}. <button type="button" onClick={() => setTenant(otherTenant)}>Switch to {otherTenant}</button></p>
      ) : <Actions alert={health.alert} labels={target} />}
    </>
  );
}

/** The actions the section's steps call for, with the alert's labels filled in. */
function Actions({ alert, labels }: { alert: string; labels: Record<string, string> }) {
  const client = useClient();
  const { tenant } = useSession();
  const jobType = labels.job_type;
  const type = jobType ?? '';
  const invalidates = [ALERTS_KEY];
  const pause = (action: 'pause' | 'resume') => (
    <ActionButton key={action} label={`${action === 'pause' ? 'Pause' : 'Resume'} ${type}`} scope="orch:operate" invalidates={invalidates}
      confirm={<p>{action === 'pause' ? 'Stops new dispatch of' : 'Resumes dispatch of'} {type} for tenant {tenant}{action === 'pause' ? ': running jobs finish, new jobs keep queueing, nothing is lost.' : '.'}</p>}
      run={(why) => client.setDispatch(action, { jobType: type, tenantId: tenant }, why.reason, why.ticket)} />
  );
  const snapshot = (errorClass?: string) => (
    <ActionButton key="snapshot" label="Snapshot the DLQ" scope="orch:read" invalidates={invalidates}
      confirm={<p>Records the dead letters of {type}{errorClass ? ` with error class ${errorClass}` : ''} as a snapshot to replay or clear against (Dead letters page).</p>}
      run={() => client.snapshotDlq({ jobType: type, ...(errorClass ? { errorClass } : {}) })} />
  );
  const scope = { tenantId: tenant, jobType: type };
  const byAlert: Record<string, ReactNode[]> = {
    OrchestratorQueueDepthHigh: [<Link key="oldest" to={`/jobs?state=queued&jobType=${encodeURIComponent(type)}&sort=oldest`}>Oldest waiting jobs</Link>, <Link key="workers" to="/leases">Workers</Link>],
    OrchestratorDLQDepthHigh: [snapshot(), <Link key="dlq" to="/dead-letters">Dead letters: replay or clear a snapshot</Link>],
    OrchestratorFailuresHigh: [pause('pause'), pause('resume'), snapshot()],
    OrchestratorErrorCluster: [pause('pause'), pause('resume'), snapshot(labels.error_class)],
    OrchestratorFailureBurnRateHigh: [pause('pause'), pause('resume')],
    OrchestratorLeaseStall: [
      <ActionButton key="release" label="Force release stuck leases" scope="orch:operate" danger invalidates={invalidates}
        confirm={<p>Takes every stuck lease of tenant {tenant} from its holder: the jobs go back to the queue with the attempt counted, the old holders&apos; late acks are refused.</p>}
        run={(why) => client.releaseLeases({ stuck: true }, why)} />,
      <Link key="leases" to="/leases">Leases and lock waits</Link>,
    ],
    OrchestratorBackpressure: [
      <ActionButton key="boost" label={`Boost the quota of ${type} (x2, 30 min)`} scope="orch:quota" invalidates={invalidates}
        confirm={<p>Doubles the limits of the quota of {tenant} / {type} for 30 minutes; they restore themselves afterwards.</p>}
        run={(why) => client.boostQuota(scope, { factor: 2, durationSeconds: 1800 }, why)} />,
      <ActionButton key="restore" label={`Restore the quota of ${type}`} scope="orch:quota" invalidates={invalidates}
        confirm={<p>Ends the boost of {tenant} / {type} now.</p>}
        run={(why) => client.quotaAction('restore', scope, why)} />,
      <Link key="controls" to="/controls">Quotas</Link>,
    ],
    OrchestratorScheduleMissedTicks: labels.schedule ? [
      <ActionButton key="trigger" label={`Run ${labels.schedule} now`} scope="orch:operate" invalidates={invalidates}
        confirm={<p>Enqueues one job of schedule {labels.schedule} now; its ticks are unchanged.</p>}
        run={(why) => client.triggerSchedule(labels.schedule!, why)} />,
      <Link key="schedules" to="/schedules">Schedules</Link>,
    ] : [<Link key="schedules" to="/schedules">Schedules</Link>],
    OrchestratorCriticalPersistent: labels.critical_alert ? [<Link key="critical" to={runbookLink(labels.critical_alert, { ...labels, critical_alert: '' })}>Runbook of {labels.critical_alert}</Link>] : [],
  };
  const needsType = !['OrchestratorLeaseStall', 'OrchestratorScheduleMissedTicks', 'OrchestratorCriticalPersistent'].includes(alert);
  const actions = needsType && !jobType ? [] : byAlert[alert] ?? [];
  if (actions.length === 0) return <p className="muted">No one-click action: follow the steps below{needsType && !jobType && byAlert[alert] ? ' (the actions need a job_type label)' : ''}.</p>;
  return <div className="actions">{actions}</div>;
}
