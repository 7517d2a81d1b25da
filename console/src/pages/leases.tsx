import { useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { Link } from 'react-router';
import type { WorkerRecord } from '../../../src/ledger/workers.ts';
import type { LeaseView, LockView } from '../../../src/recovery/leases.ts';
import { ActionButton } from '../components/action.tsx';
import { duration } from '../components/format.ts';
import { useLiveRefresh } from '../components/live.ts';
import { Loaded, Metric, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { When } from '../components/when.tsx';
import { useClient } from '../session.tsx';

/** Heartbeat ages grow by the second; the lists are read again this often (and on every lease event). */
const REFRESH_MS = 3_000;
const LEASES = ['leases'];

/**
 * Where a released lease's job goes, as the release transition decides: back
 * to the queue with the attempt counted, as an expiry would, so a job on its
 * last attempt dead-letters; a holder still heartbeating gets its attempt back.
 */
const RELEASE_OUTCOME = 'Its job goes back to the queue with the attempt counted, as a lease expiry would (dead-lettered if that was its last attempt); a lease whose worker still heartbeats gets its attempt back. The old holder\'s late ack or heartbeat is refused.';

/** Force release of one lease. */
function ReleaseOne({ lease }: { lease: LeaseView }) {
  const client = useClient();
  return (
    <ActionButton label="Release" scope="orch:operate"
      confirm={<p>Takes lease {lease.leaseId.slice(0, 8)} of job {lease.jobId} ({lease.jobType}) from {lease.workerId ?? 'its worker'}, silent for {duration(lease.heartbeatAgeSeconds * 1000)}.
        {' '}{RELEASE_OUTCOME}</p>}
      run={(why) => client.releaseLeases({ leaseIds: [lease.leaseId] }, why)}
      invalidates={[LEASES]} />
  );
}

const leaseColumn = createColumnHelper<LeaseView>();
const LEASE_COLUMNS = [
  leaseColumn.accessor('stuck', { header: 'State', cell: (c) => <StateBadge state={c.getValue() ? 'stuck' : 'leased'} /> }),
  leaseColumn.accessor('jobId', { header: 'Job', cell: (c) => <Link to={`/jobs/${c.getValue()}`}>{c.getValue()}</Link> }),
  leaseColumn.accessor('jobType', { header: 'Type' }),
  leaseColumn.accessor('workerId', { header: 'Worker', cell: (c) => c.getValue() ?? '—' }),
  leaseColumn.accessor('attempt', { header: 'Attempt' }),
  leaseColumn.accessor('heartbeatAgeSeconds', { header: 'Last heartbeat', cell: (c) => `${duration(c.getValue() * 1000)} ago` }),
  leaseColumn.accessor('ageSeconds', { header: 'Held for', cell: (c) => duration(c.getValue() * 1000) }),
  leaseColumn.accessor('leaseUntil', {
    header: 'Lease ends',
    cell: (c) => <When iso={c.getValue()} />,
  }),
  leaseColumn.accessor('progress', {
    header: 'Progress',
    cell: (c) => c.getValue() === null ? '—' : `${Math.round(c.getValue()! * 100)}%${c.row.original.progressMessage ? ` ${c.row.original.progressMessage}` : ''}`,
  }),
  leaseColumn.display({ id: 'release', header: 'Force release', cell: (c) => <ReleaseOne lease={c.row.original} /> }),
];

const lockColumn = createColumnHelper<LockView>();
const LOCK_COLUMNS = [
  lockColumn.accessor('pid', { header: 'PID' }),
  lockColumn.accessor('role', { header: 'Role' }),
  lockColumn.accessor('blockedBy', { header: 'Blocked by', cell: (c) => c.getValue().join(', ') || '—' }),
  lockColumn.accessor('transactionSeconds', { header: 'Transaction', cell: (c) => c.getValue() === null ? '—' : duration(c.getValue()! * 1000) }),
  lockColumn.accessor('application', { header: 'Application', cell: (c) => c.getValue() ?? '—' }),
  lockColumn.accessor('relations', { header: 'Tables', cell: (c) => c.getValue().join(', ') }),
  lockColumn.accessor('query', { header: 'Query', cell: (c) => <code>{c.getValue() ?? ''}</code> }),
];

const workerColumn = createColumnHelper<WorkerRecord>();
const WORKER_COLUMNS = [
  workerColumn.accessor('workerId', { header: 'Worker' }),
  workerColumn.accessor('status', { header: 'State', cell: (c) => <StateBadge state={c.getValue()} /> }),
  workerColumn.accessor('jobTypes', { header: 'Job types', cell: (c) => c.getValue().join(', ') || 'any' }),
  workerColumn.accessor('tenantId', { header: 'Tenant', cell: (c) => (c.getValue() === '*' ? 'every tenant' : c.getValue()) }),
  workerColumn.accessor('lastSeen', { header: 'Last heartbeat', cell: (c) => <When iso={c.getValue()} /> }),
  workerColumn.accessor('inFlight', { header: 'Leases held' }),
  workerColumn.accessor('host', { header: 'Host', cell: (c) => c.getValue() ?? '—' }),
  workerColumn.accessor('version', { header: 'Version', cell: (c) => c.getValue() ?? '—' }),
  workerColumn.accessor((w) => w.lostAt ?? w.stoppedAt, { id: 'ended', header: 'Lost or stopped', cell: (c) => <When iso={c.getValue()} /> }),
];

/**
 * Leases of the tenant, stuck first with their heartbeat age, force release
 * of one or every stuck one; the PostgreSQL lock waits on the ledger; the
 * workers with their job types, last heartbeat and state.
 */
export function LeasesPage() {
  const client = useClient();
  const leases = useQuery({ queryKey: ['leases', 'list'], queryFn: () => client.listLeases({ limit: 500 }), refetchInterval: REFRESH_MS });
  const workers = useQuery({ queryKey: ['leases', 'workers'], queryFn: () => client.listWorkers(), refetchInterval: REFRESH_MS });
  useLiveRefresh({ eventType: ['job.leased', 'lease.expired', 'lease.released', 'job.succeeded', 'job.retry_scheduled', 'job.dead_lettered'] }, [LEASES]);
  return (
    <section>
      <h1>Leases and workers</h1>
      <Loaded query={leases}>
        {(l) => (
          <>
            <div className="metrics">
              <Metric label="Leases" value={l.leases.length} />
              <Metric label="Stuck" value={l.stuck} hint="heartbeat older than the threshold, or past the lease's end" />
              <Metric label="Stuck after" value={duration(l.stuckAfterMs)} hint="ORCH_LEASE_STUCK_AFTER_MS" />
              <Metric label="Lock waits" value={l.locks.length} />
            </div>
            <div className="actions">
              <ActionButton label={`Release all stuck (${l.stuck})`} scope="orch:operate" danger
                disabled={l.stuck === 0 ? 'no lease is stuck' : null}
                confirm={<p>Force releases the <strong>{l.stuck} lease{l.stuck === 1 ? '' : 's'}</strong> whose heartbeat is older than {duration(l.stuckAfterMs)}.
                  {' '}{RELEASE_OUTCOME}</p>}
                run={(why) => client.releaseLeases({ stuck: true, stuckAfterMs: l.stuckAfterMs }, why)}
                invalidates={[LEASES]} />
            </div>
            <h2>Leases</h2>
            <DataTable label="Leases" data={l.leases} columns={LEASE_COLUMNS} rowId={(x) => x.leaseId} empty="No job is leased." />
            {l.locks.length > 0 && (
              <>
                <h2>Lock waits on the ledger</h2>
                <DataTable label="Lock waits" data={l.locks} columns={LOCK_COLUMNS} rowId={(x) => String(x.pid)} />
              </>
            )}
          </>
        )}
      </Loaded>
      <h2>Workers</h2>
      <Loaded query={workers}>
        {(w) => (
          <>
            <p className="muted">A worker silent for {duration(w.lostAfterMs)} without saying it stopped is lost, and its leases are released.</p>
            <DataTable label="Workers" data={w.workers} columns={WORKER_COLUMNS} rowId={(x) => `${x.tenantId}/${x.workerId}`} empty="No worker has been seen." sortable />
          </>
        )}
      </Loaded>
    </section>
  );
}
