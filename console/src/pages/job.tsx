import { useQuery } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { CANCELABLE_STATES, REPLAYABLE_STATES, type HistoryEntry, type Job, type JobState } from '../../../src/ledger/types.ts';
import { ActionButton } from '../components/action.tsx';
import { ago, json, time } from '../components/format.ts';
import { useLiveRefresh } from '../components/live.ts';
import { Loaded, StateBadge } from '../components/status.tsx';
import { useClient } from '../session.tsx';

/** One attempt: the claim that started it and the transition that ended it (none while it runs). */
interface Attempt { n: number; started: HistoryEntry; ended: HistoryEntry | undefined }

/** The attempts in a job's history: each claim (-> leased), with the next transition out of leased. */
function attemptsOf(history: HistoryEntry[]): Attempt[] {
  return history.flatMap((e, i) => (e.to === 'leased'
    ? [{ n: e.attempt, started: e, ended: history.slice(i + 1).find((x) => x.from === 'leased') }]
    : []));
}

/**
 * One job: its state, live progress, history as a timeline (who, when, why),
 * attempts with their errors, payload, result, artifacts, related jobs, and
 * cancel / replay. Every event of the job refetches it, so the page follows
 * the job without a reload.
 */
export function JobPage() {
  const { jobId = '' } = useParams();
  const client = useClient();
  const navigate = useNavigate();
  const detail = useQuery({ queryKey: ['job', jobId], queryFn: () => client.getJob(jobId) });
  const { connected } = useLiveRefresh({ jobId }, [['job', jobId]]);
  return (
    <section>
      <h1>Job {jobId}</h1>
      <p className="muted" role="status">{connected ? 'Live: updates as the job changes.' : 'Connecting to the event stream…'}</p>
      <Loaded query={detail}>
        {({ job, history }) => (
          <>
            <Summary job={job} />
            <div className="actions">
              <ActionButton label="Cancel job" scope="orch:operate" danger
                disabled={(CANCELABLE_STATES as readonly JobState[]).includes(job.state) ? null : `the job has ended (${job.state})`}
                confirm={<p>Cancels job {job.id} ({job.jobType}, {job.state}). A running job&apos;s worker learns at its next heartbeat.</p>}
                run={(why) => client.cancel(job.id, why.reason)} invalidates={[['job', jobId], ['jobs']]} />
              <ActionButton label="Replay job" scope="orch:operate"
                disabled={(REPLAYABLE_STATES as readonly JobState[]).includes(job.state) ? null : `only a job that ended without success can be replayed (it is ${job.state})`}
                confirm={<p>Enqueues a new job with the payload of job {job.id}; a job already replayed returns its earlier replay.</p>}
                run={(why) => client.replayJob(job.id, why)} invalidates={[['jobs']]}
                onDone={(r) => navigate(`/jobs/${(r as { job: Job }).job.id}`)} />
            </div>
            <div className="grid-2">
              <div>
                <h2>History</h2>
                <Timeline history={history} />
              </div>
              <div>
                <h2>Attempts</h2>
                <Attempts attempts={attemptsOf(history)} />
                {job.lastError && (
                  <>
                    <h2>Last error</h2>
                    <p><strong>{job.lastError.class}</strong>: {job.lastError.message}</p>
                    {job.lastError.details !== undefined && <pre>{json(job.lastError.details)}</pre>}
                  </>
                )}
              </div>
            </div>
            <div className="grid-2">
              <div>
                <h2>Payload</h2>
                <pre tabIndex={0} aria-label="Payload">{json(job.payload)}</pre>
              </div>
              <div>
                <h2>Result</h2>
                {job.result === null ? <p className="muted">No result{job.finishedAt ? '.' : ' yet.'}</p> : <pre tabIndex={0} aria-label="Result">{json(job.result)}</pre>}
                <h2>Artifacts</h2>
                {job.artifacts?.length ? (
                  <ul>
                    {job.artifacts.map((a) => <li key={a.name}><strong>{a.name}</strong>: <code>{a.uri}</code> <span className="muted">sha256 {a.sha256.slice(0, 12)}…</span></li>)}
                  </ul>
                ) : <p className="muted">None.</p>}
              </div>
            </div>
          </>
        )}
      </Loaded>
    </section>
  );
}

function Summary({ job }: { job: Job }) {
  const rows: [string, ReactNode][] = [
    ['State', <><StateBadge state={job.state} />{job.paused ? <> <StateBadge state="paused" /></> : null}</>],
    ['Type', job.jobType],
    ['Attempt', `${job.attempt} of ${job.maxAttempts}`],
    ['Priority', job.priority],
    ['Progress', job.progress === null ? '—' : (
      <><progress max={1} value={job.progress} aria-label="Progress">{Math.round(job.progress * 100)}%</progress> {Math.round(job.progress * 100)}%{job.progressMessage ? ` ${job.progressMessage}` : ''}</>
    )],
    ['Worker', job.workerId ? `${job.workerId}${job.leaseUntil && job.state === 'leased' ? ` (lease until ${time(job.leaseUntil)})` : ''}` : '—'],
    ['Created', <time dateTime={job.createdAt}>{time(job.createdAt)} ({ago(job.createdAt)})</time>],
    ['Run after', <time dateTime={job.runAfter}>{time(job.runAfter)}</time>],
    ['Finished', job.finishedAt ? <time dateTime={job.finishedAt}>{time(job.finishedAt)}</time> : '—'],
    ['Correlation id', job.correlationId
      ? <>{job.correlationId} (<Link to={`/jobs?correlationId=${encodeURIComponent(job.correlationId)}`}>jobs with this correlation id</Link>)</>
      : '—'],
    ['Replay of', job.replayOf ? <Link to={`/jobs/${job.replayOf}`}>job {job.replayOf}</Link> : '—'],
    ['Workflow', job.workflowId ? <><Link to={`/workflows/${job.workflowId}`}>{job.workflowId.slice(0, 8)}…</Link>{job.stepName ? `, step ${job.stepName}` : ''}</> : '—'],
    ['Idempotency key', job.idempotencyKey ?? '—'],
  ];
  if (job.state === 'waiting') rows.push(['Waiting for', `${job.pendingParents} parent job${job.pendingParents === 1 ? '' : 's'}`]);
  return (
    <table aria-label="Job">
      <tbody>
        {rows.map(([k, v]) => <tr key={k}><th scope="row">{k}</th><td>{v}</td></tr>)}
      </tbody>
    </table>
  );
}

/** The history, oldest first: when, from what to what, what made it (cause), who (actor) and why (reason). */
function Timeline({ history }: { history: HistoryEntry[] }) {
  return (
    <ol className="timeline" aria-label="History">
      {history.map((e, i) => (
        <li key={i}>
          <time dateTime={e.at}>{time(e.at)}</time>{' '}
          {e.from ? <><StateBadge state={e.from} /> → </> : null}<StateBadge state={e.to} />
          <div>
            <strong>{e.cause.replaceAll('_', ' ')}</strong> by <code>{e.actor}</code>{e.attempt > 0 ? `, attempt ${e.attempt}` : ''}
            {e.reason ? <>: <q>{e.reason}</q></> : null}
          </div>
          {e.error && <div className="error">{e.error.class}: {e.error.message}</div>}
        </li>
      ))}
    </ol>
  );
}

function Attempts({ attempts }: { attempts: Attempt[] }) {
  if (attempts.length === 0) return <p className="muted">Not run yet.</p>;
  return (
    <table aria-label="Attempts">
      <thead><tr><th scope="col">Attempt</th><th scope="col">Worker</th><th scope="col">Started</th><th scope="col">Outcome</th><th scope="col">Error</th></tr></thead>
      <tbody>
        {attempts.map((a) => (
          <tr key={`${a.n}-${a.started.at}`}>
            <td>{a.n}</td>
            <td><code>{a.started.actor}</code></td>
            <td><time dateTime={a.started.at}>{time(a.started.at)}</time></td>
            <td>{a.ended ? <><StateBadge state={a.ended.to} /> {a.ended.cause.replaceAll('_', ' ')}</> : <StateBadge state="running" />}</td>
            <td>{a.ended?.error ? `${a.ended.error.class}: ${a.ended.error.message}` : ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
