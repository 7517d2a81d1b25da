import { useQuery, useQueryClient } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { useState } from 'react';
import type { Pause } from '../../../src/flow/pauses.ts';
import type { Quota, QuotaLimits, QuotaUse } from '../../../src/flow/quotas.ts';
import type { JobTypeDefinition } from '../../../src/ledger/types.ts';
import type { JobTypeSettings } from '../../../src/sdk/client.ts';
import { ActionButton } from '../components/action.tsx';
import { Countdown } from '../components/countdown.tsx';
import { NumberFields, useNumberFields, type NumberSpec } from '../components/fields.tsx';
import { ago, duration } from '../components/format.ts';
import { useLiveRefresh } from '../components/live.ts';
import { Loaded, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { When } from '../components/when.tsx';
import { useClient, useSession } from '../session.tsx';

/** Every query of this page starts with 'controls': one invalidation refreshes it after an action or an event. */
const CONTROLS = ['controls'];
/** Current quota use (active leases, tokens) moves by itself: read again this often. */
const REFRESH_MS = 5_000;
const ALL = '*';

/** Why the signed-in token may not act for every tenant (job type defaults, pauses of every tenant), or null. */
function useEveryTenant(): string | null {
  const { me } = useSession();
  return me?.tenants === '*' ? null : 'this needs a token of every tenant';
}


// ---- job types

const JOB_TYPE_FIELDS: NumberSpec<keyof Required<JobTypeSettings>>[] = [
  { key: 'maxAttempts', label: 'Max attempts', min: 1, max: 1000 },
  { key: 'backoffBaseMs', label: 'Backoff base (ms)', min: 0 },
  { key: 'backoffMaxMs', label: 'Backoff max (ms)', min: 0 },
  { key: 'backoffJitter', label: 'Jitter (0–1)', min: 0, max: 1, step: 'any' },
  { key: 'leaseMs', label: 'Lease (ms)', min: 1000 },
  { key: 'timeoutMs', label: 'Timeout (ms, empty: none)', min: 1000 },
];

function EditJobType({ def }: { def: JobTypeDefinition }) {
  const client = useClient();
  const everyTenant = useEveryTenant();
  const fields = useNumberFields({
    maxAttempts: def.maxAttempts, backoffBaseMs: def.backoffBaseMs, backoffMaxMs: def.backoffMaxMs,
    backoffJitter: def.backoffJitter, leaseMs: def.leaseMs, timeoutMs: def.timeoutMs,
  });
  const { timeoutMs, ...rest } = fields.values;
  // an emptied field leaves that setting as it is, except the timeout, where empty means "no run-time limit"
  const settings: JobTypeSettings = {
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== null)),
    timeoutMs,
  };
  return (
    <ActionButton label="Edit" scope="orch:operate" disabled={everyTenant}
      confirm={<><p>Changes the defaults of {def.name} for every tenant; jobs already submitted keep theirs.</p><NumberFields specs={JOB_TYPE_FIELDS} fields={fields} /></>}
      run={(why) => client.defineJobType(def.name, settings, why)}
      invalidates={[CONTROLS]} />
  );
}

/** Pauses covering a job type: its own and those of every job type. */
const pausesOf = (pauses: Pause[], jobType: string) => pauses.filter((p) => p.jobType === jobType || p.jobType === ALL);
const tenantName = (t: string) => (t === ALL ? 'every tenant' : t);

const typeColumn = createColumnHelper<JobTypeDefinition>();

function JobTypes({ pauses }: { pauses: Pause[] }) {
  const client = useClient();
  const types = useQuery({ queryKey: ['controls', 'jobtypes'], queryFn: () => client.listJobTypes() });
  const columns = [
    typeColumn.accessor('name', { header: 'Job type' }),
    typeColumn.display({
      id: 'dispatch', header: 'Dispatch',
      cell: (c) => {
        const held = pausesOf(pauses, c.row.original.name);
        return held.length ? <><StateBadge state="paused" /> {held.map((p) => tenantName(p.tenantId)).join(', ')}</> : <StateBadge state="active" />;
      },
    }),
    typeColumn.accessor('maxAttempts', { header: 'Max attempts' }),
    typeColumn.accessor('backoffBaseMs', {
      header: 'Backoff',
      cell: (c) => `${duration(c.getValue())} → ${duration(c.row.original.backoffMaxMs)}, jitter ${c.row.original.backoffJitter}`,
    }),
    typeColumn.accessor('leaseMs', { header: 'Lease', cell: (c) => duration(c.getValue()) }),
    typeColumn.accessor('timeoutMs', { header: 'Timeout', cell: (c) => (c.getValue() === null ? 'none' : duration(c.getValue()!)) }),
    typeColumn.accessor('updatedAt', { header: 'Changed', cell: (c) => <When iso={c.getValue()} /> }),
    // keyed by the definition's time: the dialog's fields start again from the stored values after a change
    typeColumn.display({ id: 'edit', header: 'Defaults', cell: (c) => <EditJobType key={c.row.original.updatedAt} def={c.row.original} /> }),
  ];
  return (
    <>
      <h2>Job types</h2>
      <Loaded query={types}>
        {(list) => (
          <>
            <DataTable label="Job types" data={list} columns={columns} rowId={(t) => t.name} empty="No job type yet." />
            <PauseForm jobTypes={list.map((t) => t.name)} />
          </>
        )}
      </Loaded>
    </>
  );
}

// ---- pauses

function PauseForm({ jobTypes }: { jobTypes: string[] }) {
  const client = useClient();
  const { tenant } = useSession();
  const everyTenant = useEveryTenant();
  const [jobType, setJobType] = useState(jobTypes[0] ?? ALL);
  const [forTenant, setForTenant] = useState<string>(tenant);
  const scope = { jobType, tenantId: forTenant === ALL ? undefined : forTenant };
  const what = `${jobType === ALL ? 'every job type' : jobType} for ${tenantName(forTenant)}`;
  const blocked = forTenant === ALL ? (jobType === ALL ? 'pausing every job type needs a tenant' : everyTenant) : null;
  return (
    // a group, not a form: the action's dialog holds a form of its own
    <div className="filters" role="group" aria-label="Pause dispatch">
      <label>Job type
        <select value={jobType} onChange={(e) => setJobType(e.target.value)}>
          {jobTypes.map((t) => <option key={t} value={t}>{t}</option>)}
          <option value={ALL}>every job type</option>
        </select>
      </label>
      <label>For
        <select value={forTenant} onChange={(e) => setForTenant(e.target.value)}>
          <option value={tenant}>tenant {tenant}</option>
          <option value={ALL}>every tenant</option>
        </select>
      </label>
      <ActionButton label="Pause dispatch" scope="orch:operate" danger disabled={blocked}
        confirm={<p>Stops new claims of {what}. Queued work stays queued; running jobs finish. Resume it from the pauses below.</p>}
        run={(why) => client.setDispatch('pause', scope, why.reason, why.ticket)}
        invalidates={[CONTROLS]} />
    </div>
  );
}

function ResumeButton({ pause }: { pause: Pause }) {
  const client = useClient();
  const everyTenant = useEveryTenant();
  return (
    <ActionButton label="Resume" scope="orch:operate" disabled={pause.tenantId === ALL ? everyTenant : null}
      confirm={<p>Resumes dispatch of {pause.jobType === ALL ? 'every job type' : pause.jobType} for {tenantName(pause.tenantId)}, paused {ago(pause.pausedAt)} by {pause.actor}: {pause.reason}</p>}
      run={(why) => client.setDispatch('resume', { jobType: pause.jobType, tenantId: pause.tenantId === ALL ? undefined : pause.tenantId }, why.reason, why.ticket)}
      invalidates={[CONTROLS]} />
  );
}

const pauseColumn = createColumnHelper<Pause>();
const PAUSE_COLUMNS = [
  pauseColumn.accessor('jobType', { header: 'Job type', cell: (c) => (c.getValue() === ALL ? 'every job type' : c.getValue()) }),
  pauseColumn.accessor('tenantId', { header: 'Tenant', cell: (c) => tenantName(c.getValue()) }),
  pauseColumn.accessor('reason', { header: 'Reason' }),
  pauseColumn.accessor('ticket', { header: 'Ticket', cell: (c) => c.getValue() ?? '—' }),
  pauseColumn.accessor('actor', { header: 'By' }),
  pauseColumn.accessor('pausedAt', { header: 'Since', cell: (c) => <When iso={c.getValue()} /> }),
  pauseColumn.display({ id: 'resume', header: 'Resume', cell: (c) => <ResumeButton pause={c.row.original} /> }),
];

// ---- quotas

interface QuotaRow { quota: Quota; use: QuotaUse | undefined }

const LIMIT_FIELDS: NumberSpec<keyof QuotaLimits>[] = [
  { key: 'maxActive', label: 'Max active', min: 0 },
  { key: 'ratePerSecond', label: 'Rate (per s)', min: 0, step: 'any' },
  { key: 'burst', label: 'Burst', min: 1, step: 'any' },
  { key: 'maxPerHour', label: 'Max per hour', min: 0 },
];
const limitsOf = (q: Quota | undefined): QuotaLimits =>
  ({ maxActive: q?.maxActive ?? null, ratePerSecond: q?.ratePerSecond ?? null, burst: q?.burst ?? null, maxPerHour: q?.maxPerHour ?? null });
const limit = (v: number | null) => (v === null ? 'none' : String(v));

/** Sets a quota's limits (an empty field removes that limit); without `quota`, creates one for a tenant and job type typed in. */
function SetQuota({ quota }: { quota?: Quota }) {
  const client = useClient();
  const { tenant } = useSession();
  const [scope, setScope] = useState({ tenantId: quota?.tenantId ?? tenant, jobType: quota?.jobType ?? '' });
  const fields = useNumberFields(limitsOf(quota));
  return (
    <ActionButton label={quota ? 'Set limits' : 'New quota'} scope="orch:quota"
      confirm={
        <>
          {quota
            ? <p>Changes the limits of the quota of {quota.jobType === ALL ? 'every job type' : quota.jobType} for {tenantName(quota.tenantId)}. An empty field removes that limit.</p>
            : (
              <div className="filters">
                <label>Tenant (* for every tenant)<input value={scope.tenantId} required onChange={(e) => setScope({ ...scope, tenantId: e.target.value })} /></label>
                <label>Job type (* for every type)<input value={scope.jobType} required onChange={(e) => setScope({ ...scope, jobType: e.target.value })} /></label>
              </div>
            )}
          <NumberFields specs={LIMIT_FIELDS} fields={fields} />
        </>
      }
      run={(why) => client.setQuota(scope, fields.values, why)}
      invalidates={[CONTROLS]} />
  );
}

const BOOST_FIELDS: NumberSpec<'factor' | 'minutes'>[] = [
  { key: 'factor', label: 'Factor (rate, burst and cap ×)', min: 1, max: 100, step: 'any' },
  { key: 'minutes', label: 'For (minutes)', min: 1, step: 'any' },
];

function BoostQuota({ quota }: { quota: Quota }) {
  const client = useClient();
  const fields = useNumberFields({ factor: 2, minutes: 30 });
  const { factor, minutes } = fields.values;
  return (
    <ActionButton label="Boost" scope="orch:quota"
      confirm={
        <>
          <p>Multiplies the rate, burst and concurrency cap of {quota.jobType === ALL ? 'every job type' : quota.jobType} for {tenantName(quota.tenantId)} for a while;
            the quota&apos;s own limits (cap {limit(quota.maxActive)}, rate {limit(quota.ratePerSecond)}/s) return by themselves after it.
            {quota.boost && ' It replaces the boost in force.'}</p>
          <NumberFields specs={BOOST_FIELDS} fields={fields} />
        </>
      }
      run={(why) => client.boostQuota(quota, { factor: factor ?? undefined, durationSeconds: Math.round((minutes ?? 0) * 60) }, why)}
      invalidates={[CONTROLS]} />
  );
}

function QuotaActions({ quota }: { quota: Quota }) {
  const client = useClient();
  return (
    <div className="actions">
      <SetQuota key={quota.updatedAt} quota={quota} />
      <BoostQuota quota={quota} />
      {quota.boost && (
        <ActionButton label="Restore now" scope="orch:quota"
          confirm={<p>Ends the boost now: back to cap {limit(quota.maxActive)}, rate {limit(quota.ratePerSecond)}/s, burst {limit(quota.burst)}.</p>}
          run={(why) => client.quotaAction('restore', quota, why)}
          invalidates={[CONTROLS]} />
      )}
    </div>
  );
}

function BoostLeft({ until }: { until: string }) {
  const queries = useQueryClient();
  return <Countdown until={until} onEnd={() => void queries.invalidateQueries({ queryKey: CONTROLS })} />;
}

const quotaColumn = createColumnHelper<QuotaRow>();
const QUOTA_COLUMNS = [
  quotaColumn.accessor((r) => tenantName(r.quota.tenantId), { id: 'tenant', header: 'Tenant' }),
  quotaColumn.accessor((r) => (r.quota.jobType === ALL ? 'every job type' : r.quota.jobType), { id: 'type', header: 'Job type' }),
  quotaColumn.display({
    id: 'active', header: 'Active / cap',
    cell: (c) => { const { quota, use } = c.row.original; return `${use?.active ?? '—'} / ${limit(use?.limits.maxActive ?? quota.maxActive)}`; },
  }),
  quotaColumn.display({
    id: 'bucket', header: 'Rate, burst (tokens left)',
    cell: (c) => {
      const { quota, use } = c.row.original;
      const l = use?.limits ?? quota;
      if (l.ratePerSecond === null) return 'none';
      const left = use?.tokensLeft;
      return `${l.ratePerSecond}/s, burst ${limit(l.burst)}${left === null || left === undefined ? '' : ` (${Math.floor(left)} left)`}`;
    },
  }),
  quotaColumn.display({
    id: 'hour', header: 'This hour',
    cell: (c) => { const { quota, use } = c.row.original; return `${use?.usedThisHour ?? '—'} / ${limit(use?.limits.maxPerHour ?? quota.maxPerHour)}`; },
  }),
  quotaColumn.accessor((r) => r.quota.weight, { id: 'weight', header: 'Weight' }),
  quotaColumn.display({
    id: 'held', header: 'Held back by',
    cell: (c) => {
      const use = c.row.original.use;
      if (!use?.throttledBy) return '—';
      return <><StateBadge state={use.throttledBy} />{use.nextEligibleAt ? <>, eligible {<When iso={use.nextEligibleAt} />}</> : null}</>;
    },
  }),
  quotaColumn.display({
    id: 'boost', header: 'Boost',
    cell: (c) => { const b = c.row.original.quota.boost; return b ? <>cap {limit(b.maxActive)}, {limit(b.ratePerSecond)}/s: <BoostLeft until={b.until} /></> : '—'; },
  }),
  quotaColumn.display({ id: 'actions', header: 'Change', cell: (c) => <QuotaActions quota={c.row.original.quota} /> }),
];

function Quotas() {
  const client = useClient();
  const quotas = useQuery({ queryKey: ['controls', 'quotas'], queryFn: () => client.listQuotas() });
  const summary = useQuery({ queryKey: ['controls', 'quota-use'], queryFn: () => client.quotaSummary(), refetchInterval: REFRESH_MS });
  const key = (q: { tenantId: string; jobType: string }) => `${q.tenantId}/${q.jobType}`;
  const uses = new Map((summary.data ?? []).map((u) => [key(u), u]));
  return (
    <>
      <h2>Quotas</h2>
      <div className="actions"><SetQuota /></div>
      <Loaded query={quotas}>
        {(list) => (
          <DataTable label="Quotas" data={list.map((quota) => ({ quota, use: uses.get(key(quota)) }))} columns={QUOTA_COLUMNS}
            rowId={(r) => key(r.quota)} empty="No quota: every job type runs as fast as workers claim." />
        )}
      </Loaded>
    </>
  );
}

/** Job type defaults, dispatch pauses and quotas: the controls the runbook reaches for in an incident. */
export function ControlsPage() {
  const client = useClient();
  const pauses = useQuery({ queryKey: ['controls', 'pauses'], queryFn: () => client.listPauses() });
  useLiveRefresh({ eventType: ['jobtype.paused', 'jobtype.resumed', 'quota.changed'] }, [CONTROLS]);
  return (
    <section>
      <h1>Job types, quotas and pauses</h1>
      <JobTypes pauses={pauses.data ?? []} />
      <h2>Pauses</h2>
      <Loaded query={pauses}>
        {(list) => <DataTable label="Pauses" data={list} columns={PAUSE_COLUMNS} rowId={(p) => `${p.tenantId}/${p.jobType}`} empty="Nothing is paused." />}
      </Loaded>
      <Quotas />
    </section>
  );
}
