import { useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { useState } from 'react';
import { Link } from 'react-router';
import type { CatchUp, Schedule, ScheduleSpec } from '../../../src/schedules/schedules.ts';
import { ActionButton } from '../components/action.tsx';
import { Choice, DurationField, keysOf } from '../components/choices.tsx';
import { duration } from '../components/format.ts';
import { JsonField, parseJson } from '../components/json.tsx';
import { useLiveRefresh } from '../components/live.ts';
import { Loaded, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { When } from '../components/when.tsx';
import { useClient } from '../session.tsx';
import '../components/timeline.css';

/** Every schedule route but the reads needs orch:operate (src/api/routes/schedules.ts). */
const SCOPE = 'orch:operate';
const QUERY = ['schedules'];
const CATCH_UP = keysOf<CatchUp>({ skip: 0, latest: 0, all: 0 });
const ZONES = Intl.supportedValuesOf('timeZone');

const column = createColumnHelper<Schedule>();
const COLUMNS = [
  column.accessor('name', { header: 'Name' }),
  column.accessor('jobType', { header: 'Job type' }),
  column.accessor((s) => s.cron ?? `every ${duration(s.everyMs ?? 0)}`, { id: 'recurrence', header: 'Cron or interval', cell: (c) => <code>{c.getValue()}</code> }),
  column.accessor('timeZone', { header: 'Time zone' }),
  column.accessor('nextTickAt', { header: 'Next run', cell: (c) => (c.row.original.enabled ? <When iso={c.getValue()} /> : <span className="muted">paused</span>) }),
  column.accessor('lastTickAt', {
    header: 'Last tick',
    cell: (c) => (
      <>
        <When iso={c.getValue()} />
        {c.row.original.lastJobId && <> · <Link to={`/jobs/${c.row.original.lastJobId}`}>job {c.row.original.lastJobId}</Link></>}
      </>
    ),
  }),
  column.accessor('enabled', { header: 'State', cell: (c) => <StateBadge state={c.getValue() ? 'active' : 'paused'} /> }),
  column.accessor('ticks', { header: 'Ticks' }),
  column.accessor('missedTicks', { header: 'Missed', cell: (c) => (c.getValue() > 0 ? <strong className="error">{c.getValue()}</strong> : 0) }),
  column.accessor('catchUp', { header: 'Catch-up', cell: (c) => (c.getValue() === 'all' ? `all (≤ ${c.row.original.catchUpMax})` : c.getValue()) }),
  column.accessor('watermark', { header: 'Watermark', cell: (c) => <When iso={c.getValue()} /> }),
  column.display({ id: 'actions', header: 'Actions', cell: (c) => <ScheduleActions schedule={c.row.original} /> }),
];

/** The tenant's schedules: when each ticks next and last, what it missed; create, pause, resume, trigger, delete. */
export function SchedulesPage() {
  const client = useClient();
  const schedules = useQuery({ queryKey: QUERY, queryFn: () => client.listSchedules(), refetchInterval: 30_000 });
  useLiveRefresh({ eventType: ['schedule.ticked', 'schedule.changed'] }, [QUERY]);
  return (
    <section>
      <h1>Schedules</h1>
      <Loaded query={schedules}>
        {(list) => <DataTable label="Schedules" data={list} columns={COLUMNS} rowId={(s) => s.id} empty="No schedule yet." sortable />}
      </Loaded>
      <NewSchedule />
      <datalist id="orch-time-zones">{ZONES.map((z) => <option key={z} value={z} />)}</datalist>
    </section>
  );
}

function ScheduleActions({ schedule: s }: { schedule: Schedule }) {
  const client = useClient();
  const [triggered, setTriggered] = useState<string | null>(null);
  return (
    <div className="row-actions">
      {s.enabled
        ? <ActionButton label="Pause" scope={SCOPE} invalidates={[QUERY]} confirm={<p>Schedule <strong>{s.name}</strong> stops ticking; no tick counts as missed while it is paused.</p>}
            run={(why) => client.scheduleAction(s.name, 'pause', why)} />
        : <ActionButton label="Resume" scope={SCOPE} invalidates={[QUERY]} confirm={<p>Schedule <strong>{s.name}</strong> ticks again from its next tick after now.</p>}
            run={(why) => client.scheduleAction(s.name, 'resume', why)} />}
      <ActionButton label="Trigger now" scope={SCOPE} invalidates={[QUERY]}
        confirm={<p>Enqueues one <code>{s.jobType}</code> job of schedule <strong>{s.name}</strong> now; its ticks are unchanged.</p>}
        run={async (why) => {
          const r = await client.triggerSchedule(s.name, why);
          setTriggered(r.jobId);
          return r;
        }} />
      <EditSchedule schedule={s} />
      <ActionButton label="Delete" scope={SCOPE} danger invalidates={[QUERY]}
        confirm={<p>Deletes schedule <strong>{s.name}</strong>; the jobs it made stay.</p>} run={(why) => client.deleteSchedule(s.name, why)} />
      {triggered && <span role="status">Triggered: <Link to={`/jobs/${triggered}`}>job {triggered}</Link></span>}
    </div>
  );
}

/**
 * The fields of a schedule, for a new one or an edit of `initial`: their
 * values as a spec, what is missing before the API can judge them, and the
 * fields to draw. An edit sends every field (PATCH keeps what is left out;
 * switching between cron and every clears the other).
 */
function useScheduleFields(initial?: Schedule) {
  const [jobType, setJobType] = useState(initial?.jobType ?? '');
  const [by, setBy] = useState<'cron' | 'every'>(initial?.everyMs ? 'every' : 'cron');
  const [cron, setCron] = useState(initial?.cron ?? '0 * * * *');
  const [everyMs, setEveryMs] = useState(initial?.everyMs ?? 15 * 60_000);
  const [timeZone, setTimeZone] = useState(initial?.timeZone ?? 'UTC');
  const [catchUp, setCatchUp] = useState<CatchUp>(initial?.catchUp ?? 'latest');
  const [catchUpMax, setCatchUpMax] = useState(initial?.catchUp === 'all' ? String(initial.catchUpMax) : '');
  const [payload, setPayload] = useState(initial && initial.payload !== null ? JSON.stringify(initial.payload) : '');
  const parsed = parseJson(payload);
  const spec: ScheduleSpec = {
    jobType, timeZone, catchUp,
    ...(by === 'cron' ? { cron: cron.trim(), ...(initial ? { everyMs: null } : {}) } : { everyMs, ...(initial ? { cron: null } : {}) }),
    ...(catchUp === 'all' && catchUpMax ? { catchUpMax: Number(catchUpMax) } : {}),
    ...(parsed.ok && parsed.value !== undefined ? { payload: parsed.value } : {}),
  };
  // the API checks the cron expression, zone and bounds and its answer shows in the dialog; these are what it cannot name yet
  const missing = !jobType.trim() ? 'give a job type'
    : by === 'every' && !Number.isFinite(everyMs) ? 'give the interval as a whole number' : !parsed.ok ? 'the payload is not JSON' : null;
  const recurrence = by === 'cron' ? <>at <code>{cron}</code> ({timeZone})</> : <>every {duration(everyMs)}</>;
  const fields = (
    <>
      <label>Job type <input value={jobType} onChange={(e) => setJobType(e.target.value)} /></label>
      <Choice label="Ticks by" value={by} options={['cron', 'every'] as const} onChange={(v) => v && setBy(v)} />
      {by === 'cron'
        ? <label>Cron expression <input value={cron} onChange={(e) => setCron(e.target.value)} placeholder="0 2 * * *" /></label>
        : <DurationField label="Every" defaultMs={everyMs} onChange={setEveryMs} />}
      <label>Time zone
        <input value={timeZone} onChange={(e) => setTimeZone(e.target.value)} list="orch-time-zones" />
      </label>
      <Choice label="Catch-up of missed ticks" value={catchUp} options={CATCH_UP} onChange={(v) => v && setCatchUp(v)} />
      {catchUp === 'all' && <label>At most <input type="number" min={1} max={10_000} value={catchUpMax} onChange={(e) => setCatchUpMax(e.target.value)} size={6} /></label>}
      <JsonField label="Payload (a template: {{windowStart}}, {{windowEnd}}, {{tick}}…)" value={payload} onChange={setPayload} placeholder='{"from":"{{windowStart}}"}' />
    </>
  );
  return { spec, missing, fields, jobType, recurrence };
}

function NewSchedule() {
  const client = useClient();
  const [name, setName] = useState('');
  const form = useScheduleFields();
  return (
    <fieldset className="create">
      <legend>New schedule</legend>
      <label>Name <input value={name} onChange={(e) => setName(e.target.value)} /></label>
      {form.fields}
      <ActionButton label="Create schedule" scope={SCOPE} invalidates={[QUERY]} disabled={!name.trim() ? 'give the schedule a name' : form.missing}
        confirm={<p>Creates schedule <strong>{name}</strong>: a <code>{form.jobType}</code> job {form.recurrence}.</p>}
        run={(why) => client.createSchedule(name.trim(), form.spec, why)} />
    </fieldset>
  );
}

/** An edit of one schedule: its fields in the action's own dialog, sent as PATCH /schedules/{name}. */
function EditSchedule({ schedule }: { schedule: Schedule }) {
  const client = useClient();
  const form = useScheduleFields(schedule);
  return (
    <ActionButton label="Edit" scope={SCOPE} invalidates={[QUERY]}
      confirm={<div className="edit-fields"><p>Changes schedule <strong>{schedule.name}</strong>; its next tick is worked out again.</p>{form.fields}{form.missing && <p className="error">{form.missing}</p>}</div>}
      run={(why) => client.updateSchedule(schedule.name, form.spec, why)} />
  );
}
