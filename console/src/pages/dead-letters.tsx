import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { useCallback, useMemo, useState } from 'react';
import { Link } from 'react-router';
import { PagedTable, useUrlFilters } from '../components/paging.tsx';
import type { DlqCluster, DlqEntry, DlqFilter, DlqStats, DlqTypeStats } from '../../../src/recovery/dead-letters.ts';
import type { ReplayProgress, ReplaySelection } from '../../../src/recovery/replays.ts';
import type { ClearResult, SnapshotManifest } from '../../../src/recovery/snapshots.ts';
import type { OrchClient } from '../../../src/sdk/client.ts';
import { ActionButton } from '../components/action.tsx';
import { ago } from '../components/format.ts';
import { useLiveRefresh } from '../components/live.ts';
import { ErrorNote, Loaded, Metric, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { When } from '../components/when.tsx';
import { useClient } from '../session.tsx';

/** Most error clusters the stats return: enough that the replay preview can add up every cluster of an error class. */
const CLUSTERS = 1000;
/** Clusters listed on the page (largest first). */
const CLUSTERS_SHOWN = 20;

/** "type X, class Y" for a filter, or "the whole DLQ" for none. */
function describeFilter(f: DlqFilter & { jobIds?: string[] }): string {
  const parts = [
    f.jobType && `job type ${f.jobType}`, f.errorClass && `error class ${f.errorClass}`,
    f.since && `since ${f.since}`, f.until && `until ${f.until}`, f.jobIds && `${f.jobIds.length} given jobs`,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'the whole DLQ';
}

function describeSelection(s: ReplaySelection): string {
  if ('jobIds' in s) return `${s.jobIds.length} given jobs`;
  if ('snapshotId' in s) return `snapshot ${s.snapshotId.slice(0, 8)}`;
  return describeFilter(s.filter);
}

/**
 * How many dead letters the filter selects, from the stats (the replay API has
 * no dry run): per job type from the queue counts, per error class from the
 * clusters. `exact` is false when the cluster list was cut at CLUSTERS.
 */
function matching(stats: DlqStats, f: DlqFilter): { count: number; exact: boolean } {
  if (f.errorClass) {
    const count = stats.clusters
      .filter((c) => c.errorClass === f.errorClass && (!f.jobType || c.jobType === f.jobType))
      .reduce((n, c) => n + c.count, 0);
    return { count, exact: stats.clusters.length < CLUSTERS };
  }
  if (f.jobType) return { count: stats.byJobType.find((t) => t.jobType === f.jobType)?.depth ?? 0, exact: true };
  return { count: stats.depth, exact: true };
}

const filterLink = (f: DlqFilter) => ({ search: `?${new URLSearchParams(Object.entries(f).filter(([, v]) => v))}` });
const jobLink = (id: string) => <Link to={`/jobs/${id}`}>{id}</Link>;

const typeColumn = createColumnHelper<DlqTypeStats>();
const TYPE_COLUMNS = [
  typeColumn.accessor('jobType', { header: 'Job type', cell: (c) => <Link to={filterLink({ jobType: c.getValue() })}>{c.getValue()}</Link> }),
  typeColumn.accessor('depth', { header: 'Dead letters' }),
  typeColumn.accessor('oldestAt', { header: 'Oldest', cell: (c) => <When iso={c.getValue()} /> }),
];

const clusterColumn = createColumnHelper<DlqCluster>();
const CLUSTER_COLUMNS = [
  clusterColumn.accessor('jobType', { header: 'Job type' }),
  clusterColumn.accessor('errorClass', {
    header: 'Error class',
    cell: (c) => <Link to={filterLink({ jobType: c.row.original.jobType, errorClass: c.getValue() })}>{c.getValue()}</Link>,
  }),
  clusterColumn.accessor('message', { header: 'Message (normalised)', cell: (c) => <code>{c.getValue()}</code> }),
  clusterColumn.accessor('count', { header: 'Count' }),
  clusterColumn.accessor('lastSeen', { header: 'Last seen', cell: (c) => <When iso={c.getValue()} /> }),
];

const entryColumn = createColumnHelper<DlqEntry>();
const ENTRY_COLUMNS = [
  entryColumn.accessor((e) => e.job.id, { id: 'job', header: 'Job', cell: (c) => jobLink(c.getValue()) }),
  entryColumn.accessor((e) => e.job.jobType, { id: 'type', header: 'Type' }),
  entryColumn.accessor((e) => e.job.finishedAt, { id: 'at', header: 'Dead-lettered', cell: (c) => <When iso={c.getValue()} /> }),
  entryColumn.accessor((e) => `${e.job.attempt} / ${e.job.maxAttempts}`, { id: 'attempts', header: 'Attempts' }),
  entryColumn.accessor((e) => e.job.lastError?.class ?? '', { id: 'class', header: 'Error class' }),
  entryColumn.accessor((e) => e.job.lastError?.message ?? '', { id: 'message', header: 'Error message' }),
  entryColumn.accessor('replayJobId', { header: 'Replayed as', cell: (c) => { const id = c.getValue(); return id ? jobLink(id) : '—'; } }),
];

const replayColumn = createColumnHelper<ReplayProgress>();
const REPLAY_COLUMNS = [
  replayColumn.accessor('createdAt', { header: 'Started', cell: (c) => <When iso={c.getValue()} /> }),
  replayColumn.accessor('selection', { header: 'Of', cell: (c) => describeSelection(c.getValue()) }),
  replayColumn.accessor('state', { header: 'State', cell: (c) => <StateBadge state={c.getValue()} /> }),
  replayColumn.accessor('done', {
    header: 'Progress',
    cell: (c) => {
      const r = c.row.original;
      return <><progress value={r.done} max={Math.max(r.total, 1)} aria-label={`replay ${r.id.slice(0, 8)} progress`} /> {r.done} / {r.total}</>;
    },
  }),
  replayColumn.accessor('created', { header: 'New jobs' }),
  replayColumn.accessor('skipped', { header: 'Skipped', cell: (c) => <span title="replayed before, or no longer replayable">{c.getValue()}</span> }),
  replayColumn.accessor('actor', { header: 'By' }),
  replayColumn.accessor('reason', { header: 'Reason' }),
];

/** Every query of this page starts with 'dlq': one invalidation refreshes the page after an action or an event. */
const DLQ = ['dlq'];

/**
 * The tenant's dead-letter queue, as the runbook works it: stats and error
 * clusters, the entries (filter in the URL, keyset pages), snapshot, replay
 * with its count, clear against a snapshot, and replay progress.
 */
export function DeadLettersPage() {
  const client = useClient();
  const url = useUrlFilters('cursor');
  const filter: DlqFilter = { jobType: url.get('jobType'), errorClass: url.get('errorClass') };
  const cursor = url.get('cursor');
  const stats = useQuery({ queryKey: ['dlq', 'stats'], queryFn: () => client.dlqStats(CLUSTERS) });
  const entries = useQuery({
    queryKey: ['dlq', 'entries', filter, cursor],
    queryFn: () => client.listDeadLetters({ ...filter, cursor, limit: 50 }),
    placeholderData: keepPreviousData,
  });
  useLiveRefresh({ eventType: ['job.dead_lettered', 'job.replayed', 'dlq.cleared'] }, [DLQ]);
  const set = url.set;
  // the shown snapshot is in the URL too, without resetting the entries' page (the cursor is kept); stable, as the snapshot table's columns depend on it
  const { setMany } = url;
  const showSnapshot = useCallback((id: string) => setMany({ snapshot: id, cursor }), [setMany, cursor]);

  return (
    <section>
      <h1>Dead letters</h1>
      <Loaded query={stats}>
        {(s) => (
          <>
            <div className="metrics">
              <Metric label="Dead letters" value={s.depth} />
              <Metric label="Oldest" value={<When iso={s.oldestAt} />} hint={s.oldestAt ?? undefined} />
              <Metric label="Job types" value={s.byJobType.length} />
              <Metric label="Error clusters" value={s.clusters.length} />
            </div>
            <div className="grid-2">
              <div>
                <h2>By job type</h2>
                <DataTable label="Dead letters by job type" data={s.byJobType} columns={TYPE_COLUMNS} rowId={(t) => t.jobType} empty="The DLQ is empty." />
              </div>
              <div>
                <h2>Largest error clusters</h2>
                <DataTable label="Error clusters" data={s.clusters.slice(0, CLUSTERS_SHOWN)} columns={CLUSTER_COLUMNS}
                  rowId={(c) => `${c.jobType}\u0000${c.errorClass}\u0000${c.message}`} empty="No error clusters." />
              </div>
            </div>

            <h2>Entries</h2>
            <form className="filters" role="search" aria-label="Dead-letter filter" onSubmit={(e) => e.preventDefault()}>
              <label>Job type
                <select value={filter.jobType ?? ''} onChange={(e) => set('jobType', e.target.value)}>
                  <option value="">any</option>
                  {s.byJobType.map((t) => <option key={t.jobType} value={t.jobType}>{t.jobType}</option>)}
                </select>
              </label>
              <label>Error class
                <select value={filter.errorClass ?? ''} onChange={(e) => set('errorClass', e.target.value)}>
                  <option value="">any</option>
                  {[...new Set(s.clusters.filter((c) => !filter.jobType || c.jobType === filter.jobType).map((c) => c.errorClass))].sort()
                    .map((c) => <option key={c} value={c}>{c}</option>)}
                </select>
              </label>
            </form>
            <FilterActions filter={filter} stats={s} onSnapshot={showSnapshot} />
          </>
        )}
      </Loaded>
      <PagedTable query={entries} rows={(page) => page.entries} label="Dead letters" columns={ENTRY_COLUMNS} rowId={(e) => e.job.id} empty="No dead letter matches."
        cursor={cursor} onPage={(c) => set('cursor', c)} />
      <Snapshots selected={url.get('snapshot') ?? null} select={showSnapshot} />
      <Replays />
    </section>
  );
}

/** Snapshot and replay of what the filter selects, each saying how many entries that is before it runs. */
function FilterActions({ filter, stats, onSnapshot }: { filter: DlqFilter; stats: DlqStats; onSnapshot: (id: string) => void }) {
  const client = useClient();
  const { count, exact } = matching(stats, filter);
  const n = `${exact ? '' : 'about '}${count} dead letter${count === 1 ? '' : 's'}`;
  const none = count === 0 ? 'no dead letter matches the filter' : null;
  return (
    <div className="actions">
      <ActionButton label="Snapshot" scope="orch:read" disabled={none}
        confirm={<p>Writes the <strong>{n}</strong> of {describeFilter(filter)} to an NDJSON file with a manifest (entries, sha256). Clearing the DLQ needs a snapshot holding the entries.</p>}
        run={async () => { const m = await client.snapshotDlq(filter); onSnapshot(m.id); return m; }}
        invalidates={[DLQ]} />
      <ActionButton label="Replay matching" scope="orch:operate" disabled={none}
        confirm={<p>Replays the <strong>{n}</strong> of {describeFilter(filter)} as new jobs (priority raised by one). An entry replayed before is skipped: each is replayed at most once. The entries stay in the DLQ until cleared.</p>}
        run={(why) => client.replayDlq({ filter }, why)}
        invalidates={[DLQ]} />
    </div>
  );
}

const snapshotColumn = createColumnHelper<SnapshotManifest>();

/** The snapshots, newest first; the selected one's manifest with its download, replay and clear. */
function Snapshots({ selected, select }: { selected: string | null; select: (id: string) => void }) {
  const client = useClient();
  const snapshots = useQuery({ queryKey: ['dlq', 'snapshots'], queryFn: () => client.listSnapshots(20) });
  const columns = useMemo(() => [
    snapshotColumn.accessor('createdAt', { header: 'Taken', cell: (c) => <When iso={c.getValue()} /> }),
    snapshotColumn.accessor('filter', { header: 'Of', cell: (c) => describeFilter(c.getValue()) }),
    snapshotColumn.accessor('entries', { header: 'Entries' }),
    snapshotColumn.accessor('actor', { header: 'By' }),
    snapshotColumn.accessor('id', {
      header: 'Manifest',
      cell: (c) => c.getValue() === selected
        ? <strong>shown below</strong>
        : <button type="button" onClick={() => select(c.getValue())}>Show {c.getValue().slice(0, 8)}</button>,
    }),
  ], [selected, select]);
  return (
    <>
      <h2>Snapshots</h2>
      <Loaded query={snapshots}>
        {(list) => <DataTable label="Snapshots" data={list} columns={columns} rowId={(m) => m.id} empty="No snapshot yet: take one before a clear." />}
      </Loaded>
      {selected && <SnapshotDetail id={selected} />}
    </>
  );
}

function SnapshotDetail({ id }: { id: string }) {
  const client = useClient();
  const manifest = useQuery({ queryKey: ['dlq', 'snapshot', id], queryFn: () => client.getSnapshot(id) });
  const [cleared, setCleared] = useState<ClearResult | null>(null);
  const [downloadError, setDownloadError] = useState<unknown>(null);
  return (
    <Loaded query={manifest}>
      {(m) => (
        <section aria-labelledby="snapshot-title">
          <h2 id="snapshot-title">Snapshot {m.id}</h2>
          <dl>
            <dt>Of</dt><dd>{describeFilter(m.filter)}</dd>
            <dt>Entries</dt><dd>{m.entries}</dd>
            <dt>Size</dt><dd>{m.bytes} bytes</dd>
            <dt>sha256</dt><dd><code>{m.sha256}</code></dd>
            <dt>Taken</dt><dd>{<When iso={m.createdAt} />} by {m.actor}</dd>
          </dl>
          <div className="actions">
            <button type="button" onClick={() => { setDownloadError(null); download(client, m).catch(setDownloadError); }}>Download NDJSON</button>
            <ActionButton label="Replay snapshot" scope="orch:operate" disabled={m.entries === 0 ? 'the snapshot holds no entries' : null}
              confirm={<p>Replays the <strong>{m.entries} entries</strong> of snapshot {m.id.slice(0, 8)} ({describeFilter(m.filter)}) as new jobs. Entries replayed before are skipped.</p>}
              run={(why) => client.replayDlq({ snapshotId: m.id }, why)}
              invalidates={[DLQ]} />
            <ActionButton label="Clear" scope="orch:operate" danger disabled={m.entries === 0 ? 'the snapshot holds no entries' : null}
              confirm={
                <p>Removes from the DLQ the <strong>{m.entries} entries</strong> snapshot {m.id.slice(0, 8)} holds ({describeFilter(m.filter)}, taken {ago(m.createdAt)}),
                  and nothing else: dead letters that arrived since stay. The jobs keep their rows and history (state cleared) and can still be replayed.</p>
              }
              run={async (why) => { const r = await client.clearDlq(m.id, why); setCleared(r); return r; }}
              invalidates={[DLQ]} />
          </div>
          <ErrorNote error={downloadError} />
          {cleared && (
            <p role="status">Cleared {cleared.cleared} entr{cleared.cleared === 1 ? 'y' : 'ies'}{cleared.alreadyGone ? `; ${cleared.alreadyGone} were gone already` : ''}.</p>
          )}
        </section>
      )}
    </Loaded>
  );
}

/** Saves the snapshot's NDJSON: fetched with the token (a plain link would go without it), then handed to the browser as a file. */
async function download(client: OrchClient, m: SnapshotManifest): Promise<void> {
  const res = await client.downloadSnapshot(m.id);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = `dlq-snapshot-${m.id}.ndjson`;
  a.click();
  URL.revokeObjectURL(url);
}

/** Replays, newest first, polled each second while one is running (a large replay works in the background). */
function Replays() {
  const client = useClient();
  const replays = useQuery({
    queryKey: ['dlq', 'replays'],
    queryFn: () => client.listReplays(10),
    refetchInterval: (q) => (q.state.data?.some((r) => r.state === 'running') ? 1_000 : false),
  });
  return (
    <>
      <h2>Replays</h2>
      <Loaded query={replays}>
        {(list) => <DataTable label="Replays" data={list} columns={REPLAY_COLUMNS} rowId={(r) => r.id} empty="No replay yet." />}
      </Loaded>
    </>
  );
}
