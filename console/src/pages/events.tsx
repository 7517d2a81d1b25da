import { createColumnHelper } from '@tanstack/react-table';
import { useState } from 'react';
import { Link } from 'react-router';
import type { EventType } from '../../../src/events/envelope.ts';
import { Choice, keysOf } from '../components/choices.tsx';
import { time } from '../components/format.ts';
import { JsonDetails } from '../components/json.tsx';
import { useLiveEvents, type OrchEvent, type StreamFilter } from '../components/live.ts';
import { useUrlFilters } from '../components/paging.tsx';
import { StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import '../components/timeline.css';

const EVENT_TYPES = keysOf<EventType>({
  'job.enqueued': 0, 'job.waiting': 0, 'job.ready': 0, 'job.leased': 0, 'job.progress': 0, 'job.succeeded': 0, 'job.retry_scheduled': 0,
  'job.dead_lettered': 0, 'job.canceled': 0, 'job.timed_out': 0, 'job.replayed': 0, 'lease.expired': 0, 'lease.released': 0,
  'jobtype.paused': 0, 'jobtype.resumed': 0, 'quota.changed': 0, 'dlq.cleared': 0, 'schedule.ticked': 0, 'schedule.changed': 0,
  'backfill.progress': 0, 'backfill.changed': 0, 'watermark.advanced': 0, 'workflow.started': 0, 'workflow.finished': 0,
});
/** Rows the tail keeps: older ones drop off the bottom, so a busy tenant cannot grow the page without bound. */
const CAP = 500;

const column = createColumnHelper<OrchEvent>();
const COLUMNS = [
  column.accessor('occurredAt', { header: 'When', cell: (c) => <time dateTime={c.getValue()}>{time(c.getValue())}</time> }),
  column.accessor('eventType', { header: 'Event', cell: (c) => <code>{c.getValue()}</code> }),
  column.accessor((e) => e.job?.type ?? '', { id: 'jobType', header: 'Job type' }),
  column.accessor((e) => e.job?.id, { id: 'job', header: 'Job', cell: (c) => { const id = c.getValue(); return id ? <Link to={`/jobs/${id}`}>{id}</Link> : ''; } }),
  column.accessor((e) => e.job?.status, { id: 'status', header: 'Job state', cell: (c) => { const s = c.getValue(); return s ? <StateBadge state={s} /> : ''; } }),
  column.accessor((e) => e.actor.subject, { id: 'actor', header: 'Actor' }),
  column.accessor((e) => e.job?.reason ?? '', { id: 'reason', header: 'Reason' }),
  column.accessor('data', { header: 'Details', cell: (c) => <JsonDetails summary="data" value={c.getValue()} /> }),
];

/** A live tail of the tenant's event stream, newest first; the filters (in the URL) go to the stream itself. */
export function EventsPage() {
  const url = useUrlFilters();
  const eventType = EVENT_TYPES.find((t) => t === url.get('eventType'));
  const filter: StreamFilter = { jobType: url.get('jobType'), eventType: eventType ? [eventType] : undefined };
  return (
    <section>
      <h1>Events</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>Job type <input value={filter.jobType ?? ''} onChange={(e) => url.set('jobType', e.target.value.trim())} /></label>
        <Choice label="Event type" value={eventType} options={EVENT_TYPES} onChange={(v) => url.set('eventType', v)} any="any" />
      </form>
      {/* a new filter is a new stream: the tail starts empty rather than mixing events of two filters */}
      <Tail key={JSON.stringify(filter)} filter={filter} />
    </section>
  );
}

function Tail({ filter }: { filter: StreamFilter }) {
  const [rows, setRows] = useState<OrchEvent[]>([]);
  // while paused, arriving events are held (not lost) and join the tail on resume
  const [held, setHeld] = useState<OrchEvent[]>([]);
  const [paused, setPaused] = useState(false);
  const { connected } = useLiveEvents(filter, (e) => (paused ? setHeld : setRows)((list) => [e, ...list].slice(0, CAP)));
  const resume = () => {
    setRows((r) => [...held, ...r].slice(0, CAP));
    setHeld([]);
    setPaused(false);
  };
  return (
    <>
      <div className="actions">
        {paused
          ? <button type="button" className="primary" onClick={resume}>Resume the tail</button>
          : <button type="button" onClick={() => setPaused(true)}>Pause the tail</button>}
        <button type="button" onClick={() => setRows([])} disabled={rows.length === 0}>Clear</button>
        <span role="status" className={connected ? 'live' : 'muted'}>
          {connected ? 'Live' : 'Connecting…'}{paused && ` · paused, ${held.length} new event${held.length === 1 ? '' : 's'} held`} · {rows.length} shown (at most {CAP})
        </span>
      </div>
      <DataTable label="Events" data={rows} columns={COLUMNS} rowId={(e) => e.eventId} empty={connected ? 'Waiting for events…' : 'Connecting to the event stream…'} />
    </>
  );
}
