import { Option, type Command } from 'commander';
import type { WorkflowDetail, WorkflowSpec, WorkflowState } from '../../workflows/workflows.ts';
import { print, type OutputFormat } from '../output.ts';
import { clientFor, jsonArgument } from './jobs.ts';

const COLUMNS = ['id', 'name', 'state', 'stepCount', 'openSteps', 'failedSteps', 'createdAt', 'finishedAt'];
const STATES: readonly WorkflowState[] = ['running', 'succeeded', 'failed', 'canceled'];

const MARK: Record<string, string> = {
  succeeded: '✔', leased: '▶', queued: '•', failed: '↻', waiting: '…', dead_lettered: '✖', canceled: '⊘', timed_out: '⌛', cleared: '✖',
};

/**
 * The graph in the terminal: one line a step, parents before children, each
 * indented by its depth (the longest path from a step without parents) and
 * naming the steps it waits for, with the edge policy when it is not cancel.
 */
export function drawWorkflow(w: WorkflowDetail): string {
  const byName = new Map(w.steps.map((s) => [s.name, s]));
  const depth = new Map<string, number>();
  // the server keeps the graph acyclic (checked at submit; a replay only takes its original's place)
  const depthOf = (name: string): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    const parents = byName.get(name)?.dependsOn ?? [];
    const d = parents.length === 0 ? 0 : 1 + Math.max(...parents.map((p) => depthOf(p.step)));
    depth.set(name, d);
    return d;
  };
  const steps = [...w.steps].sort((a, b) => depthOf(a.name) - depthOf(b.name) || a.name.localeCompare(b.name));
  const label = (s: (typeof steps)[number]) => `${'  '.repeat(depthOf(s.name))}${depthOf(s.name) > 0 ? '└─ ' : ''}${s.name}`;
  const width = Math.max(4, ...steps.map((s) => label(s).length));
  const lines = [
    `workflow ${w.id} "${w.name}": ${w.state}, ${w.stepCount - w.openSteps}/${w.stepCount} steps ended, ${w.failedSteps} failed${w.cancelRequested ? ', cancel requested' : ''}`,
    `${'STEP'.padEnd(width)}  ${'STATE'.padEnd(15)}  ${'JOB'.padEnd(8)}  RUNS  AFTER`,
  ];
  for (const s of steps) {
    const after = s.dependsOn.map((p) => (p.onFailure === 'cancel' ? p.step : `${p.step} (${p.onFailure})`)).join(', ');
    lines.push(`${label(s).padEnd(width)}  ${`${MARK[s.job.state] ?? ' '} ${s.job.state}`.padEnd(15)}  ${s.job.id.padEnd(8)}  ${String(s.runs).padEnd(4)}  ${after}`);
  }
  return lines.join('\n') + '\n';
}

/** One workflow: JSON as the API returns it, or its graph drawn. */
function printWorkflow(output: OutputFormat, w: WorkflowDetail): void {
  if (output === 'json') print(output, w, [], []);
  else process.stdout.write(drawWorkflow(w));
}

/** `orch workflows submit|list|show|cancel|retry`: DAGs of jobs. */
export function registerWorkflowCommands(program: Command): void {
  const workflows = program.command('workflows').description('DAGs of jobs: steps that wait for other steps');

  workflows.command('submit').description('submit a workflow from a JSON file: {"name": ..., "steps": [{"name", "jobType", "payload", "dependsOn": [...]}]}')
    .requiredOption('--file <path>', 'the workflow as JSON ("-": standard input)')
    .action(async (o: { file: string }, cmd: Command) => {
      const spec = await jsonArgument(o.file === '-' ? '-' : `@${o.file}`, '--file') as WorkflowSpec;
      const { client, output } = clientFor(cmd);
      printWorkflow(output, await client.submitWorkflow(spec));
    });

  workflows.command('list').description('workflows, newest first')
    .addOption(new Option('--state <state>', 'only those in this state').choices(STATES))
    .option('--limit <n>', 'at most this many (default 50)')
    .action(async (o: { state?: WorkflowState; limit?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const page = await client.listWorkflows({ state: o.state, limit: o.limit === undefined ? undefined : Number(o.limit) });
      print(output, page, page.workflows, COLUMNS);
    });

  workflows.command('show').description('a workflow as a graph: each step with its state, job and the steps it waits for')
    .argument('<id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      printWorkflow(output, await client.getWorkflow(id));
    });

  for (const [action, description] of [
    ['cancel', 'cancel the steps not started (running ones finish unless --include-running)'],
    ['retry', 'replay every failed or canceled step; succeeded steps are left alone'],
  ] as const) {
    const command = workflows.command(action).description(description).argument('<id>')
      .requiredOption('--reason <text>', 'why (recorded in the audit log and each step\'s history)')
      .option('--ticket <ref>', 'ticket reference (recorded in the audit log)');
    if (action === 'cancel') command.option('--include-running', 'cancel running steps too (their workers learn at the next heartbeat)');
    command.action(async (id: string, o: { reason: string; ticket?: string; includeRunning?: boolean }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const why = { reason: o.reason, ticket: o.ticket };
      printWorkflow(output, action === 'cancel' ? await client.cancelWorkflow(id, why, o.includeRunning ?? false) : await client.retryWorkflow(id, why));
    });
  }
}
