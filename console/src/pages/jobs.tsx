import { keepPreviousData, useQuery, useQueryClient } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { Link, useSearchParams } from 'react-router';
import { JOB_STATES, type Job } from '../../../src/ledger/types.ts';
import { ago } from '../components/format.ts';
import { useLiveEvents } from '../components/live.ts';
import { Loaded, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { useClient } from '../session.tsx';

const column = createColumnHelper<Job>();
const COLUMNS = [
  column.accessor('id', { header: 'Job', cell: (c) => <Link to={`/jobs/${c.getValue()}`}>{c.getValue().slice(0, 13)}…</Link> }),
  column.accessor('jobType', { header: 'Type' }),
  column.accessor('state', { header: 'State', cell: (c) => <StateBadge state={c.getValue()} /> }),
  column.accessor('attempt', { header: 'Attempt', cell: (c) => `${c.getValue()} / ${c.row.original.maxAttempts}` }),
  column.accessor('priority', { header: 'Priority' }),
  column.accessor('createdAt', { header: 'Created', cell: (c) => <time dateTime={c.getValue()}>{ago(c.getValue())}</time> }),
  column.accessor((j) => j.lastError?.class ?? '', { id: 'error', header: 'Error class' }),
];

/** Jobs of the tenant: filters in the URL (a link shares the view), keyset pages, refreshed live by the event stream. */
export function JobsPage() {
  const client = useClient();
  const queries = useQueryClient();
  const [params, setParams] = useSearchParams();
  const filter = {
    state: (params.get('state') || undefined) as Job['state'] | undefined,
    jobType: params.get('jobType') || undefined,
    sort: (params.get('sort') || undefined) as 'newest' | 'oldest' | 'priority' | undefined,
    cursor: params.get('cursor') || undefined,
    limit: 50,
  };
  const jobs = useQuery({ queryKey: ['jobs', filter], queryFn: () => client.listJobs(filter), placeholderData: keepPreviousData });
  useLiveEvents({ jobType: filter.jobType }, () => void queries.invalidateQueries({ queryKey: ['jobs'] }));
  const set = (key: string, value: string) => setParams((p) => {
    const next = new URLSearchParams(p);
    if (value) next.set(key, value); else next.delete(key);
    if (key !== 'cursor') next.delete('cursor');
    return next;
  });
  return (
    <section>
      <h1>Jobs</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>State
          <select value={filter.state ?? ''} onChange={(e) => set('state', e.target.value)}>
            <option value="">any</option>
            {JOB_STATES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <label>Job type <input value={filter.jobType ?? ''} onChange={(e) => set('jobType', e.target.value)} /></label>
        <label>Sort
          <select value={filter.sort ?? 'newest'} onChange={(e) => set('sort', e.target.value)}>
            <option value="newest">newest</option>
            <option value="oldest">oldest</option>
            <option value="priority">priority (queued or failed)</option>
          </select>
        </label>
      </form>
      <Loaded query={jobs}>
        {(page) => (
          <>
            <DataTable label="Jobs" data={page.jobs} columns={COLUMNS} rowId={(j) => j.id} empty="No job matches." />
            <div className="pager">
              {filter.cursor && <button type="button" onClick={() => set('cursor', '')}>First page</button>}
              {page.nextCursor && <button type="button" onClick={() => set('cursor', page.nextCursor!)}>Next page</button>}
            </div>
          </>
        )}
      </Loaded>
    </section>
  );
}
