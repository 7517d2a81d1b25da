import { useMutation, useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { useState } from 'react';
import type { Backfill, BackfillPlan, BackfillSpec, BackfillState, PlannedWindow, Reprocess } from '../../../src/backfills/backfills.ts';
import type { Watermark } from '../../../src/windows/windows.ts';
import { ActionButton } from '../components/action.tsx';
import { Choice, DurationField, keysOf } from '../components/choices.tsx';
import { duration } from '../components/format.ts';
import { JsonField, parseJson } from '../components/json.tsx';
import { useLiveRefresh } from '../components/live.ts';
import { ErrorNote, Loaded, Metric, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { fromUtcInput, toUtcInput, utc, When } from '../components/when.tsx';
import { useClient } from '../session.tsx';
import '../components/timeline.css';

/** Starting and steering a backfill needs orch:backfill (with a reason and a ticket); its plan only orch:read. */
const SCOPE = 'orch:backfill';
const QUERY = ['backfills'];
const WATERMARKS = ['watermarks'];
const STATES = keysOf<BackfillState>({ running: 0, paused: 0, canceled: 0, done: 0 });
const REPROCESS = keysOf<Reprocess>({ none: 0, failed: 0, all: 0 });
/** Plan rows shown: a plan may have 10,000 windows; its counts say the rest. */
const PLAN_ROWS = 100;

/** The operator actions on a backfill, each offered only in the states the API accepts it in (src/backfills/backfills.ts). */
const ACTIONS: { action: 'pause' | 'resume' | 'cancel' | 'retry'; label: string; applies: (b: Backfill) => boolean; does: string }[] = [
  { action: 'pause', label: 'Pause', applies: (b) => b.state === 'running', does: 'starts no new window; running ones finish' },
  { action: 'resume', label: 'Resume', applies: (b) => b.state === 'paused', does: 'starts windows again' },
  { action: 'cancel', label: 'Cancel', applies: (b) => b.state === 'running' || b.state === 'paused', does: 'cancels the windows not started and the waiting jobs of started ones; running jobs finish' },
  { action: 'retry', label: 'Retry', applies: (b) => b.progress.failed + b.progress.canceled > 0, does: 'runs the failed and canceled windows again (succeeded ones are left alone)' },
];

const column = createColumnHelper<Backfill>();
const COLUMNS = [
  column.accessor('jobType', { header: 'Job type', cell: (c) => <>{c.getValue()}<br /><code className="muted">{c.row.original.id.slice(0, 8)}</code></> }),
  column.accessor('from', {
    header: 'Range',
    cell: (c) => <>{utc(c.getValue())} → {utc(c.row.original.to)}<br /><span className="muted">{c.row.original.windows} windows of {duration(c.row.original.windowMs)}, {c.row.original.concurrency} at once</span></>,
  }),
  column.accessor('state', { header: 'State', cell: (c) => <StateBadge state={c.getValue()} /> }),
  column.display({ id: 'progress', header: 'Progress', cell: (c) => <Progress backfill={c.row.original} /> }),
  column.accessor('watermark', { header: 'Watermark', cell: (c) => utc(c.getValue()) }),
  column.accessor('actor', { header: 'Started by', cell: (c) => <>{c.getValue()} <When iso={c.row.original.createdAt} /><br /><span className="muted">{c.row.original.ticket}: {c.row.original.reason}</span></> }),
  column.display({ id: 'actions', header: 'Actions', cell: (c) => <BackfillActions backfill={c.row.original} /> }),
];

const markColumn = createColumnHelper<Watermark>();
const WATERMARK_COLUMNS = [
  markColumn.accessor('jobType', { header: 'Job type' }),
  markColumn.accessor('tenantId', { header: 'Tenant' }),
  markColumn.accessor('watermark', { header: 'Complete up to', cell: (c) => utc(c.getValue()) }),
  markColumn.accessor('updatedAt', { header: 'Moved', cell: (c) => <When iso={c.getValue()} /> }),
];

/** Backfills of the tenant with their progress and the watermarks they move; start one from its plan (a dry run) first. */
export function BackfillsPage() {
  const client = useClient();
  const [state, setState] = useState<BackfillState | undefined>();
  const backfills = useQuery({ queryKey: [...QUERY, state], queryFn: () => client.listBackfills(state) });
  const watermarks = useQuery({ queryKey: WATERMARKS, queryFn: () => client.listWatermarks() });
  useLiveRefresh({ eventType: ['backfill.progress', 'backfill.changed', 'watermark.advanced'] }, [QUERY, WATERMARKS]);
  return (
    <section>
      <h1>Backfills</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <Choice label="State" value={state} options={STATES} onChange={setState} any="any" />
      </form>
      <Loaded query={backfills}>
        {(list) => <DataTable label="Backfills" data={list} columns={COLUMNS} rowId={(b) => b.id} empty="No backfill matches." />}
      </Loaded>
      <NewBackfill />
      <h2>Watermarks</h2>
      <p className="muted">The end of the windows of a job type that all completed, from the first, without a gap.</p>
      <Loaded query={watermarks}>
        {(list) => <DataTable label="Watermarks" data={list} columns={WATERMARK_COLUMNS} rowId={(w) => `${w.tenantId}/${w.jobType}`} empty="No watermark yet." sortable />}
      </Loaded>
    </section>
  );
}

function Progress({ backfill: b }: { backfill: Backfill }) {
  const p = b.progress;
  const done = p.succeeded + p.skipped;
  const others = (['canceled', 'skipped', 'covered'] as const).filter((s) => p[s] > 0).map((s) => `${p[s]} ${s}`);
  return (
    <div className="progress">
      <progress value={done} max={Math.max(b.windows, 1)} aria-label={`windows done of backfill ${b.id.slice(0, 8)}`} /> {done} / {b.windows}
      <div className="counts">
        <span>{p.pending} pending</span> · <span>{p.running} running</span> · <span className="state-succeeded">{p.succeeded} succeeded</span> · <span className={p.failed ? 'state-failed' : undefined}>{p.failed} failed</span>
        {others.length > 0 && <> · {others.join(' · ')}</>}
      </div>
      {b.state === 'running' && <div className="muted">{p.perMinute}/min{p.estimatedEndAt && <>, done <When iso={p.estimatedEndAt} /></>}</div>}
    </div>
  );
}

function BackfillActions({ backfill: b }: { backfill: Backfill }) {
  const client = useClient();
  return (
    <div className="row-actions">
      {ACTIONS.filter((a) => a.applies(b)).map((a) => (
        <ActionButton key={a.action} label={a.label} scope={SCOPE} danger={a.action === 'cancel'} invalidates={[QUERY]}
          confirm={<p>The <code>{b.jobType}</code> backfill {b.id.slice(0, 8)} {a.does}.</p>}
          run={(why) => client.backfillAction(b.id, a.action, why)} />
      ))}
    </div>
  );
}


function NewBackfill() {
  const client = useClient();
  const today = Math.floor(Date.now() / 86_400_000) * 86_400_000;
  const [jobType, setJobType] = useState('');
  const [from, setFrom] = useState(() => toUtcInput(today - 86_400_000));
  const [to, setTo] = useState(() => toUtcInput(today));
  const [windowMs, setWindowMs] = useState(3_600_000);
  const [concurrency, setConcurrency] = useState('1');
  const [reprocess, setReprocess] = useState<Reprocess>('none');
  const [payload, setPayload] = useState('');
  const parsed = parseJson(payload);
  const fromIso = fromUtcInput(from);
  const toIso = fromUtcInput(to);
  const missing = !jobType.trim() ? 'give a job type' : !fromIso || !toIso ? 'give the range' : !Number.isFinite(windowMs) ? 'give the window as a whole number'
    : !parsed.ok ? 'the payload is not JSON' : null;
  const spec: BackfillSpec | null = missing || !fromIso || !toIso ? null : {
    jobType: jobType.trim(), from: fromIso, to: toIso, windowMs, concurrency: Number(concurrency), reprocess,
    ...(parsed.ok && parsed.value !== undefined ? { payload: parsed.value } : {}),
  };
  const plan = useMutation({ mutationFn: async (s: BackfillSpec) => ({ plan: await client.planBackfill(s), spec: s }) });
  // the backfill starts exactly as previewed: a change to the form after the plan asks for a new plan
  const planned = plan.data && JSON.stringify(plan.data.spec) === JSON.stringify(spec) ? plan.data : null;
  return (
    <fieldset className="create">
      <legend>New backfill</legend>
      <label>Job type <input value={jobType} onChange={(e) => setJobType(e.target.value)} /></label>
      <label>From (UTC) <input type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} /></label>
      <label>To (UTC) <input type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} /></label>
      <DurationField label="Window" defaultMs={windowMs} onChange={setWindowMs} />
      <label>Windows at once <input type="number" min={1} max={10_000} size={5} value={concurrency} onChange={(e) => setConcurrency(e.target.value)} /></label>
      <Choice label="Windows that ran before" value={reprocess} options={REPROCESS} onChange={(v) => v && setReprocess(v)} />
      <JsonField label="Payload (a template: {{windowStart}}, {{windowEnd}}…)" value={payload} onChange={setPayload} placeholder='{"from":"{{windowStart}}","to":"{{windowEnd}}"}' />
      <div className="row-actions">
        <button type="button" disabled={spec === null || plan.isPending} onClick={() => spec && plan.mutate(spec)}>Preview plan</button>
        <ActionButton label="Start backfill" scope={SCOPE} invalidates={[QUERY]}
          disabled={missing ?? (planned ? null : 'preview the plan first')}
          confirm={planned && <p>Cuts {planned.plan.windows} windows of <code>{planned.spec.jobType}</code>: runs {planned.plan.run}, skips {planned.plan.skip}.</p>}
          run={async (why) => {
            if (!planned) throw new Error('preview the plan first');
            return client.createBackfill(planned.spec, why);
          }} onDone={() => plan.reset()} />
      </div>
      {plan.error && <ErrorNote error={plan.error} />}
      {planned && <PlanPreview plan={planned.plan} />}
    </fieldset>
  );
}

const planColumn = createColumnHelper<PlannedWindow>();
const PLAN_COLUMNS = [
  planColumn.accessor('index', { header: '#' }),
  planColumn.accessor('start', { header: 'Start', cell: (c) => utc(c.getValue()) }),
  planColumn.accessor('end', { header: 'End', cell: (c) => utc(c.getValue()) }),
  planColumn.accessor('action', { header: 'Action' }),
  planColumn.accessor('state', { header: 'Starts as', cell: (c) => <StateBadge state={c.getValue()} /> }),
  planColumn.accessor('reason', { header: 'Why', cell: (c) => c.getValue() ?? '' }),
];

function PlanPreview({ plan }: { plan: BackfillPlan }) {
  return (
    <section className="plan" aria-label="Plan">
      <h2>Plan (dry run: nothing enqueued)</h2>
      <div className="metrics">
        <Metric label="windows" value={plan.windows} />
        <Metric label="to run" value={plan.run} />
        <Metric label="to skip" value={plan.skip} hint="windows that ran before (see reprocess) or run in another backfill" />
      </div>
      <DataTable label="Planned windows" data={plan.items.slice(0, PLAN_ROWS)} columns={PLAN_COLUMNS} rowId={(w) => String(w.index)} />
      {plan.items.length > PLAN_ROWS && <p className="muted">…and {plan.items.length - PLAN_ROWS} more windows.</p>}
    </section>
  );
}
