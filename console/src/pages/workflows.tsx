import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { createColumnHelper } from '@tanstack/react-table';
import { useState } from 'react';
import { Link, useParams } from 'react-router';
import { REPLAYABLE_STATES, type JobState } from '../../../src/ledger/types.ts';
import type { Workflow, WorkflowDetail, WorkflowState, WorkflowStep } from '../../../src/workflows/workflows.ts';
import { ActionButton } from '../components/action.tsx';
import { Choice, keysOf } from '../components/choices.tsx';
import { JsonDetails } from '../components/json.tsx';
import { useLiveRefresh, type OrchEvent } from '../components/live.ts';
import { PagedTable, useUrlFilters } from '../components/paging.tsx';
import { Loaded, Metric, StateBadge } from '../components/status.tsx';
import { DataTable } from '../components/table.tsx';
import { When } from '../components/when.tsx';
import { WorkflowGraph } from '../components/workflow-graph.tsx';
import { useClient } from '../session.tsx';

const STATES = keysOf<WorkflowState>({ running: 0, succeeded: 0, failed: 0, canceled: 0 });
/** Past this many steps a graph is a blur of boxes and dagre takes seconds: the steps table alone shows them. */
const MAX_DRAWN_STEPS = 400;

const column = createColumnHelper<Workflow>();
const COLUMNS = [
  column.accessor('name', { header: 'Workflow', cell: (c) => <Link to={`/workflows/${c.row.original.id}`}>{c.getValue()}</Link> }),
  column.accessor('state', { header: 'State', cell: (c) => <><StateBadge state={c.getValue()} />{c.row.original.cancelRequested && c.getValue() === 'running' && ' cancel requested'}</> }),
  column.accessor('stepCount', { header: 'Steps ended', cell: (c) => `${c.getValue() - c.row.original.openSteps} / ${c.getValue()}` }),
  column.accessor('failedSteps', { header: 'Failed steps', cell: (c) => (c.getValue() > 0 ? <strong className="error">{c.getValue()}</strong> : 0) }),
  column.accessor('actor', { header: 'Submitted by' }),
  column.accessor('createdAt', { header: 'Submitted', cell: (c) => <When iso={c.getValue()} /> }),
  column.accessor('finishedAt', { header: 'Finished', cell: (c) => <When iso={c.getValue()} /> }),
];

/** Workflows of the tenant, newest first, a page at a time; refreshed when one starts or finishes. */
export function WorkflowsPage() {
  const client = useClient();
  const url = useUrlFilters('before');
  const filter = { state: STATES.find((s) => s === url.get('state')), before: url.get('before'), limit: 50 };
  const list = useQuery({ queryKey: ['workflows', filter], queryFn: () => client.listWorkflows(filter), placeholderData: keepPreviousData });
  useLiveRefresh({ eventType: ['workflow.started', 'workflow.finished'] }, [['workflows']]);
  return (
    <section>
      <h1>Workflows</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <Choice label="State" value={filter.state} options={STATES} onChange={(v) => url.set('state', v)} any="any" />
      </form>
      <PagedTable query={list} rows={(page) => page.workflows} label="Workflows" columns={COLUMNS} rowId={(w) => w.id} empty="No workflow matches."
        cursor={filter.before} onPage={(c) => url.set('before', c)} />
    </section>
  );
}

const stepColumn = createColumnHelper<WorkflowStep>();
const STEP_COLUMNS = [
  stepColumn.accessor('name', { header: 'Step' }),
  stepColumn.accessor((s) => s.job.state, { id: 'state', header: 'State', cell: (c) => <StateBadge state={c.getValue()} /> }),
  stepColumn.accessor((s) => s.job.id, { id: 'job', header: 'Latest job', cell: (c) => <Link to={`/jobs/${c.getValue()}`}>{c.getValue()}</Link> }),
  stepColumn.accessor((s) => s.job.jobType, { id: 'jobType', header: 'Job type' }),
  stepColumn.accessor((s) => `${s.job.attempt} / ${s.job.maxAttempts}`, { id: 'attempt', header: 'Attempt' }),
  stepColumn.accessor('runs', { header: 'Runs' }),
  stepColumn.accessor((s) => s.dependsOn.map((d) => (d.onFailure === 'cancel' ? d.step : `${d.step} (${d.onFailure})`)).join(', '), { id: 'after', header: 'After' }),
];

/** One workflow: its graph, kept current by the event stream, its steps, and cancel and retry. */
export function WorkflowPage() {
  const id = useParams().workflowId ?? '';
  const client = useClient();
  const key = ['workflow', id];
  const workflow = useQuery({ queryKey: key, queryFn: () => client.getWorkflow(id) });
  const jobs = new Set(workflow.data?.steps.map((s) => s.job.id));
  // the stream cannot filter by workflow: keep the events of this workflow and of its steps' jobs, and
  // replays, whose new job is not yet one of its steps' (a step replayed from the dead-letter page)
  const concerns = (e: OrchEvent) => e.data?.workflowId === id || (e.job !== null && jobs.has(e.job.id)) || e.eventType === 'job.replayed';
  useLiveRefresh({}, [key], concerns);
  return (
    <Loaded query={workflow}>
      {(w) => (
        <section>
          <h1>Workflow {w.name}</h1>
          <WorkflowSummary workflow={w} />
          {w.steps.length <= MAX_DRAWN_STEPS
            ? <WorkflowGraph steps={w.steps} />
            : <p className="muted">{w.steps.length} steps are too many to draw; the table below lists them.</p>}
          <h2>Steps</h2>
          <DataTable label="Steps" data={w.steps} columns={STEP_COLUMNS} rowId={(s) => s.name} />
          {w.state !== 'running' && (
            <>
              <h2>Result</h2>
              <JsonDetails summary="Results of the final steps" value={w.result} />
            </>
          )}
        </section>
      )}
    </Loaded>
  );
}

function WorkflowSummary({ workflow: w }: { workflow: WorkflowDetail }) {
  const client = useClient();
  const [includeRunning, setIncludeRunning] = useState(false);
  const retryable = w.steps.filter((s) => (REPLAYABLE_STATES as readonly JobState[]).includes(s.job.state)).length;
  const invalidates = [['workflow', w.id], ['workflows']];
  return (
    <>
      <p>
        <StateBadge state={w.state} /> {w.cancelRequested && w.state === 'running' && <strong>cancel requested </strong>}
        <code>{w.id}</code> · submitted by {w.actor} <When iso={w.createdAt} />{w.finishedAt && <> · finished <When iso={w.finishedAt} /></>}
      </p>
      <div className="metrics">
        <Metric label="steps" value={w.stepCount} />
        <Metric label="open" value={w.openSteps} hint="steps not ended yet" />
        <Metric label="failed" value={w.failedSteps} hint="steps whose latest run ended without success" />
      </div>
      <div className="actions">
        <ActionButton label="Cancel workflow" scope="orch:operate" danger invalidates={invalidates}
          disabled={w.state === 'running' ? null : `the workflow is ${w.state}`}
          confirm={(
            <>
              <p>Cancels every step of <strong>{w.name}</strong> not started yet; running steps finish unless canceled too.</p>
              <label className="inline"><input type="checkbox" checked={includeRunning} onChange={(e) => setIncludeRunning(e.target.checked)} /> Cancel the running steps too</label>
            </>
          )}
          run={(why) => client.cancelWorkflow(w.id, why, includeRunning)} />
        <ActionButton label="Retry failed steps" scope="orch:operate" invalidates={invalidates}
          disabled={retryable > 0 ? null : 'no step ended without success'}
          confirm={<p>Replays the {retryable} step{retryable === 1 ? '' : 's'} of <strong>{w.name}</strong> whose latest run failed or was canceled; succeeded steps are left alone.</p>}
          run={(why) => client.retryWorkflow(w.id, why)} />
      </div>
    </>
  );
}
