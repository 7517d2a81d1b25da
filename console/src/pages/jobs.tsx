import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { useState } from 'react';
import { Link } from 'react-router';
import { PagedTable, useUrlFilters } from '../components/paging.tsx';
import type { BulkResult } from '../../../src/ledger/queries.ts';
import { JOB_STATES, type BulkAction, type Job, type JobSort, type JobState } from '../../../src/ledger/types.ts';
import type { JobSelection, OrchClient } from '../../../src/sdk/client.ts';
import { ActionButton } from '../components/action.tsx';
import { useLiveRefresh } from '../components/live.ts';
import { Loaded, StateBadge } from '../components/status.tsx';
import { fromUtcInput, toUtcInput, When } from '../components/when.tsx';
import { useClient, useSession } from '../session.tsx';

const column = createColumnHelper<Job>();
const COLUMNS = [
  column.accessor('id', { header: 'Job', cell: (c) => <Link to={`/jobs/${c.getValue()}`}>{c.getValue()}</Link> }),
  column.accessor('jobType', { header: 'Type' }),
  column.accessor('state', { header: 'State', cell: (c) => <StateBadge state={c.getValue()} /> }),
  column.accessor('attempt', { header: 'Attempt', cell: (c) => `${c.getValue()} / ${c.row.original.maxAttempts}` }),
  column.accessor('priority', { header: 'Priority' }),
  column.accessor('createdAt', { header: 'Created', cell: (c) => <When iso={c.getValue()} /> }),
  column.accessor((j) => j.lastError?.class ?? '', { id: 'error', header: 'Error class' }),
];

/** The URL parameters that select jobs besides the state (the payload as JSON text). */
const SELECTION_KEYS = ['jobType', 'errorClass', 'createdAfter', 'createdBefore', 'payload', 'correlationId'] as const;

/** The bulk actions, with what their button and confirmation say. */
const BULK: { action: BulkAction; label: string; verb: string; danger: boolean }[] = [
  { action: 'cancel', label: 'Cancel matching', verb: 'Cancels', danger: true },
  { action: 'replay', label: 'Replay matching', verb: 'Replays as new jobs', danger: false },
  { action: 'retry', label: 'Retry matching now', verb: 'Makes runnable now', danger: false },
];

/** The job selection a URL describes; a payload that is not a JSON object is left out (the payload field says why). */
function selectionOf(params: URLSearchParams): JobSelection {
  const text = (key: string) => params.get(key) || undefined;
  const payload = parseObject(params.get('payload') ?? '');
  return {
    jobType: text('jobType'), errorClass: text('errorClass'), createdAfter: text('createdAfter'), createdBefore: text('createdBefore'),
    correlationId: text('correlationId'), payload: typeof payload === 'object' ? payload : undefined,
  };
}

/** A JSON object from text, or why not (empty text: none given). */
function parseObject(text: string): Record<string, unknown> | string | undefined {
  if (!text.trim()) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : 'give a JSON object, e.g. {"customer":"c-42"}';
  } catch {
    return 'not JSON: give a JSON object, e.g. {"customer":"c-42"}';
  }
}

/** The URL value a payload text stands for: compact JSON, '' for none, null when it is no JSON object. */
function appliedPayload(text: string): string | null {
  const p = parseObject(text);
  return typeof p === 'object' ? JSON.stringify(p) : p === undefined ? '' : null;
}


/**
 * Jobs of the tenant: filters in the URL (a link shares the view), counts per
 * state (a click filters by it), keyset pages, bulk actions on everything the
 * filter matches; refreshed live by the event stream.
 */
export function JobsPage() {
  const client = useClient();
  const url = useUrlFilters('cursor');
  const params = url.params;
  const selection = selectionOf(params);
  const state = (params.get('state') || undefined) as JobState | undefined;
  const filter = {
    ...selection, state,
    sort: (params.get('sort') || undefined) as JobSort | undefined,
    cursor: params.get('cursor') || undefined,
    limit: 50,
  };
  const jobs = useQuery({ queryKey: ['jobs', filter], queryFn: () => client.listJobs(filter), placeholderData: keepPreviousData });
  const counts = useQuery({ queryKey: ['job-counts', selection], queryFn: () => client.jobCounts(selection), placeholderData: keepPreviousData });
  useLiveRefresh({ jobType: selection.jobType }, [['jobs'], ['job-counts']]);
  const set = url.setMany;
  // sort=priority lists waiting work only: choosing it without such a state picks queued
  const setSort = (sort: string) => set(sort === 'priority' && state !== 'queued' && state !== 'failed' ? { sort, state: 'queued' } : { sort });
  const setState = (s: string) => set(filter.sort === 'priority' && s !== 'queued' && s !== 'failed' ? { state: s, sort: '' } : { state: s });
  return (
    <section>
      <h1>Jobs</h1>
      <form className="filters" role="search" aria-label="Job filters" onSubmit={(e) => e.preventDefault()}>
        <label>State
          <select value={state ?? ''} onChange={(e) => setState(e.target.value)}>
            <option value="">any</option>
            {JOB_STATES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <label>Job type <input value={params.get('jobType') ?? ''} onChange={(e) => set({ jobType: e.target.value })} /></label>
        <label>Error class <input value={params.get('errorClass') ?? ''} onChange={(e) => set({ errorClass: e.target.value })} /></label>
        <label>Created after (UTC) <input type="datetime-local" value={toUtcInput(selection.createdAfter)} onChange={(e) => set({ createdAfter: fromUtcInput(e.target.value) ?? undefined })} /></label>
        <label>Created before (UTC) <input type="datetime-local" value={toUtcInput(selection.createdBefore)} onChange={(e) => set({ createdBefore: fromUtcInput(e.target.value) ?? undefined })} /></label>
        <PayloadFilter value={params.get('payload') ?? ''} onChange={(payload) => set({ payload })} />
        <label>Correlation id <input value={params.get('correlationId') ?? ''} onChange={(e) => set({ correlationId: e.target.value })} /></label>
        <label>Sort
          <select value={filter.sort ?? 'newest'} onChange={(e) => setSort(e.target.value)}>
            <option value="newest">newest</option>
            <option value="oldest">oldest</option>
            <option value="priority">priority (queued or failed)</option>
          </select>
        </label>
        {SELECTION_KEYS.some((k) => params.has(k)) || state ? <button type="button" onClick={() => set(Object.fromEntries([...params.keys()].map((k) => [k, undefined])))}>Clear filters</button> : null}
      </form>
      <Loaded query={counts}>
        {(c) => (
          <div className="metrics" role="group" aria-label="Jobs per state (select one to filter)">
            {c.counts.map((s) => (
              <button key={s.state} type="button" className="metric" aria-pressed={state === s.state}
                title={s.capped ? 'at least: only the newest jobs were counted' : undefined} onClick={() => setState(state === s.state ? '' : s.state)}>
                <span className="metric-value">{s.capped ? '≥ ' : ''}{s.count.toLocaleString()}</span>{' '}
                <span className="metric-label"><StateBadge state={s.state} /></span>
              </button>
            ))}
          </div>
        )}
      </Loaded>
      <div className="actions" role="group" aria-label="Bulk actions on every matching job">
        {BULK.map((b) => <BulkButton key={b.action} {...b} client={client} filter={{ ...selection, state }} />)}
      </div>
      <PagedTable query={jobs} rows={(page) => page.jobs} label="Jobs" columns={COLUMNS} rowId={(j) => j.id} empty="No job matches."
        cursor={filter.cursor} onPage={(c) => url.set('cursor', c)} />
    </section>
  );
}

/** The payload search: JSON text, applied once it is a JSON object (the jobs whose payload contains it). */
function PayloadFilter({ value, onChange }: { value: string; onChange: (payload: string) => void }) {
  const [draft, setDraft] = useState(value);
  const [seen, setSeen] = useState(value);
  // the URL changed under the field (clear filters, back): show it, unless it is what the draft already says
  if (value !== seen) {
    setSeen(value);
    if (appliedPayload(draft) !== value) setDraft(value);
  }
  const parsed = parseObject(draft);
  const problem = typeof parsed === 'string' ? parsed : null;
  return (
    <label>Payload contains (JSON)
      <input value={draft} placeholder='{"customer":"c-42"}' aria-invalid={problem !== null} aria-describedby={problem ? 'payload-problem' : undefined}
        onChange={(e) => {
          setDraft(e.target.value);
          const applied = appliedPayload(e.target.value);
          if (applied !== null) onChange(applied);
        }} />
      {problem && <span id="payload-problem" className="error">{problem}</span>}
    </label>
  );
}

/** One bulk action on everything the filter matches; its confirmation shows what the preview found first. */
function BulkButton({ action, label, verb, danger, client, filter }: (typeof BULK)[number] & { client: OrchClient; filter: JobSelection & { state?: JobState } }) {
  const { denied } = useSession();
  const allowed = denied('orch:operate') === null;
  const [result, setResult] = useState<BulkResult | null>(null);
  const preview = useQuery({
    queryKey: ['bulk-preview', action, filter],
    queryFn: () => client.previewBulkJobs({ action, filter }),
    enabled: allowed,
    retry: false,
  });
  const p = preview.data;
  const blocked = preview.error ? (preview.error as Error).message : p?.matched === 0 ? 'no job matches' : p ? null : 'counting…';
  return (
    <span>
      <ActionButton label={label} scope="orch:operate" danger={danger} disabled={allowed ? blocked : null}
        confirm={p && (
          <p>
            {verb} <strong>{p.matched.toLocaleString()}</strong> job{p.matched === 1 ? '' : 's'} matching this filter
            {p.more ? ` (the oldest ${p.matched.toLocaleString()}: more match; run it again for the rest)` : ''}.
          </p>
        )}
        run={(why) => client.bulkJobs({ action, filter }, why)}
        invalidates={[['jobs'], ['job-counts'], ['bulk-preview'], ['job']]}
        onDone={(r) => setResult(r as BulkResult)} />
      {result && <span role="status" className="muted"> {result.applied.toLocaleString()} of {result.matched.toLocaleString()} done</span>}
    </span>
  );
}
