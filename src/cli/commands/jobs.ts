import { readFile } from 'node:fs/promises';
import { Argument, Option, type Command } from 'commander';
import ms from 'ms';
import { BULK_ACTIONS, EDGE_POLICIES, JOB_SORTS, type BulkAction, type EdgePolicy, type JobSort, type JobState } from '../../ledger/types.ts';
import { OrchClient, type JobSelection, type SubmitJob } from '../../sdk/client.ts';
import { CliError, print, type OutputFormat } from '../output.ts';
import { enqueueFile } from './enqueue-file.ts';

/** The options every command takes (src/cli/program.ts). */
export interface GlobalOptions { apiUrl: string; token?: string; tenant: string; output: OutputFormat }

export function clientFor(cmd: Command): { client: OrchClient; output: OutputFormat } {
  const g = cmd.optsWithGlobals<GlobalOptions>();
  return { client: new OrchClient({ apiUrl: g.apiUrl, token: g.token, tenant: g.tenant }), output: g.output };
}

export function duration(value: string, flag: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : ms(value as ms.StringValue);
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw new CliError(`${flag}: "${value}" is not a duration (e.g. 500ms, 30s, 5m, 1h)`);
  return n;
}

export function integer(value: string, flag: string): number {
  if (!/^-?\d+$/.test(value)) throw new CliError(`${flag}: "${value}" is not an integer`);
  return Number(value);
}

export function json(value: string, flag: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new CliError(`${flag}: not valid JSON (${(err as Error).message})`);
  }
}

/** A JSON option (--payload): the JSON itself, @FILE for a file's content, or - for standard input. */
export async function jsonArgument(value: string, flag: string): Promise<unknown> {
  if (value === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return json(Buffer.concat(chunks).toString('utf8'), `${flag} - (standard input)`);
  }
  if (!value.startsWith('@')) return json(value, flag);
  const file = value.slice(1);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`${flag}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return json(text, `${flag} ${value}`);
}

const JOB_COLUMNS = ['id', 'jobType', 'state', 'priority', 'attempt', 'maxAttempts', 'runAfter', 'updatedAt'];

export function registerJobCommands(program: Command): void {
  program
    .command('enqueue')
    .description('submit a job (or many with --file F.ndjson, one JSON job per line)')
    .argument('[type]', 'job type')
    .option('--payload <json>', 'job payload: JSON, @FILE for a file\'s content, or - for standard input', '{}')
    .option('--idempotency-key <key>', 'a second submit with this key returns the first job')
    .option('--priority <n>', 'higher runs first (0..1000)')
    .option('--delay <duration>', 'run no earlier than this from now (e.g. 30s, 5m)')
    .option('--max-attempts <n>', 'attempts before dead-lettering')
    .option('--correlation-id <id>', 'carried on the job and its events')
    .option('--file <path>', 'NDJSON file of jobs ("-": standard input), {"jobType": ..., "payload": ..., "idempotencyKey": ...} a line, any number of lines; prints a summary')
    .option('--depends-on <ids...>', 'wait for these jobs first; ID:POLICY with a policy (cancel, the default; ignore; wait) says what a failed parent does to this job')
    .action(async (type: string | undefined, o: Record<string, string | undefined> & { dependsOn?: string[] }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      if (o.file) return enqueueFile(client, output, o.file, type);
      if (!type) throw new CliError('enqueue: give a job type (or --file)');
      const job: SubmitJob = {
        jobType: type,
        payload: await jsonArgument(o.payload ?? '{}', '--payload'),
        idempotencyKey: o.idempotencyKey,
        correlationId: o.correlationId,
        priority: o.priority === undefined ? undefined : integer(o.priority, '--priority'),
        maxAttempts: o.maxAttempts === undefined ? undefined : integer(o.maxAttempts, '--max-attempts'),
        delayMs: o.delay === undefined ? undefined : duration(o.delay, '--delay'),
        ...(o.dependsOn ? { dependsOn: o.dependsOn.map(dependency) } : {}),
      };
      const r = await client.enqueue(job);
      print(output, r, [r], ['id', 'jobType', 'state', 'created']);
    });

  const jobs = program.command('jobs').description('inspect and act on jobs');
  selectionOptions(jobs
    .command('list')
    .description('jobs of the tenant, newest first unless --sort says otherwise')
    .option('--state <state>', 'queued|leased|succeeded|failed|dead_lettered|canceled|timed_out|cleared|waiting')
    .addOption(new Option('--sort <order>', 'newest|oldest (by creation), priority (waiting jobs in claim order; with --state queued or failed)')
      .choices(JOB_SORTS).default('newest'))
    .option('--limit <n>', 'page size', '50')
    .option('--cursor <id>', 'continue after this id (printed as nextCursor)'))
    .action(async (o: Record<string, string | undefined>, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const page = await client.listJobs({
        ...await selection(o), state: o.state as JobState | undefined, sort: o.sort as JobSort, cursor: o.cursor, limit: integer(o.limit ?? '50', '--limit'),
      });
      print(output, page, page.jobs, JOB_COLUMNS);
      if (output === 'table' && page.nextCursor) process.stdout.write(`next page: --cursor ${page.nextCursor}\n`);
    });

  selectionOptions(jobs
    .command('counts')
    .description('jobs per state matching the filter (a count marked ≥ is a lower bound: see the README)'))
    .action(async (o: Record<string, string | undefined>, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const r = await client.jobCounts(await selection(o));
      print(output, r, r.counts.map((c) => ({ ...c, count: `${c.capped ? '≥ ' : ''}${c.count}` })), ['state', 'count']);
    });

  selectionOptions(jobs
    .command('bulk')
    .description('cancel, replay or retry now every job matching the filter (at most --limit, oldest first; one audit entry); --dry-run only counts')
    .addArgument(new Argument('<action>', 'cancel | replay | retry (a failed job waiting for its backoff runs now)').choices(BULK_ACTIONS))
    .option('--state <state>', 'only jobs in this state (one the action acts on)')
    .option('--limit <n>', 'at most this many jobs (default and most 10000); run again for the rest')
    .option('--dry-run', 'say how many jobs it would act on and change nothing')
    .option('--reason <text>', 'why (recorded in the audit log; required unless --dry-run)')
    .option('--ticket <ticket>', 'ticket reference'))
    .action(async (action: BulkAction, o: Record<string, string | boolean | undefined>, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const text = (k: string) => optionText(o, k);
      const request = {
        action, filter: { ...await selection(o), state: text('state') as JobState | undefined },
        limit: text('limit') === undefined ? undefined : integer(text('limit')!, '--limit'),
      };
      if (!o.dryRun && !text('reason')) throw new CliError('jobs bulk: --reason is required (or --dry-run to count)');
      const r = o.dryRun ? await client.previewBulkJobs(request) : await client.bulkJobs(request, { reason: text('reason')!, ticket: text('ticket') });
      if (output === 'json') return print(output, r, [], []);
      const verb = { cancel: 'cancel', replay: 'replay', retry: 'retry now' }[action];
      process.stdout.write(r.dryRun
        ? `would ${verb} ${r.matched} job(s)${r.more ? ` (the oldest ${r.matched}; more match)` : ''}\n`
        : `${verb}: ${r.applied} of ${r.matched} job(s) changed${r.more ? '; more match: run it again for the rest' : ''}\n`);
    });

  jobs
    .command('show')
    .description('a job with its history')
    .argument('<id>', 'job id')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const r = await client.getJob(id);
      if (output === 'json') return print(output, r, [], []);
      const j = r.job;
      print('table', null, [j], JOB_COLUMNS);
      process.stdout.write(`payload: ${JSON.stringify(j.payload)}\n`);
      if (j.lastError) process.stdout.write(`last error: ${j.lastError.class}: ${j.lastError.message}\n`);
      if (j.result !== null) process.stdout.write(`result: ${JSON.stringify(j.result)}\n`);
      process.stdout.write('\nhistory:\n');
      print('table', null, r.history, ['at', 'from', 'to', 'attempt', 'actor', 'reason']);
    });

  jobs
    .command('cancel')
    .description('cancel a queued or running job')
    .argument('<id>', 'job id')
    .requiredOption('--reason <text>', 'why (recorded in the job history)')
    .action(async (id: string, o: { reason: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const job = await client.cancel(id, o.reason);
      print(output, job, [job], ['id', 'jobType', 'state', 'attempt']);
    });

  jobs
    .command('replay')
    .description('replay an ended job (dead-lettered, cleared, canceled, timed out) as a new job; once per job')
    .argument('<id>', 'job id')
    .requiredOption('--reason <text>', 'why (recorded in the audit log)')
    .option('--ticket <ticket>', 'ticket reference')
    .option('--priority <n>', 'priority of the new job (default: the original\'s plus one)')
    .action(async (id: string, o: { reason: string; ticket?: string; priority?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const r = await client.replayJob(id, { reason: o.reason, ticket: o.ticket }, o.priority === undefined ? undefined : integer(o.priority, '--priority'));
      print(output, r, [{ ...r.job, status: r.status }], ['id', 'jobType', 'state', 'priority', 'replayOf', 'status']);
    });

  const types = program.command('jobtypes').description('job types and their defaults');
  types
    .command('list')
    .action(async (_o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const list = await client.listJobTypes();
      print(output, list, list, ['name', 'maxAttempts', 'backoffBaseMs', 'backoffMaxMs', 'leaseMs', 'timeoutMs', 'implicit']);
    });
  types
    .command('set')
    .description('define a job type or change its defaults')
    .argument('<name>', 'job type')
    .option('--max-attempts <n>')
    .option('--backoff-base <duration>')
    .option('--backoff-max <duration>')
    .option('--jitter <fraction>', '0..1')
    .option('--lease <duration>', 'lease length a heartbeat renews')
    .option('--timeout <duration>', 'run-time limit ("none" to clear)')
    .requiredOption('--reason <text>', 'why (the defaults apply to every tenant; recorded in the audit log)')
    .option('--ticket <id>', 'change ticket (recorded in the audit log)')
    .action(async (name: string, o: Record<string, string | undefined>, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const why = { reason: o.reason!, ...(o.ticket ? { ticket: o.ticket } : {}) };
      const t = await client.defineJobType(name, {
        maxAttempts: o.maxAttempts === undefined ? undefined : integer(o.maxAttempts, '--max-attempts'),
        backoffBaseMs: o.backoffBase === undefined ? undefined : duration(o.backoffBase, '--backoff-base'),
        backoffMaxMs: o.backoffMax === undefined ? undefined : duration(o.backoffMax, '--backoff-max'),
        backoffJitter: o.jitter === undefined ? undefined : Number(o.jitter),
        leaseMs: o.lease === undefined ? undefined : duration(o.lease, '--lease'),
        timeoutMs: o.timeout === undefined ? undefined : o.timeout === 'none' ? null : duration(o.timeout, '--timeout'),
      }, why);
      print(output, t, [t], ['name', 'maxAttempts', 'backoffBaseMs', 'backoffMaxMs', 'leaseMs', 'timeoutMs']);
    });
}

/** The filter options a job list, the counts and a bulk action share (JobSelection). */
function selectionOptions(cmd: Command): Command {
  return cmd
    .option('--type <jobType>', 'only this job type')
    .option('--error-class <class>', 'only jobs whose last error has this class')
    .option('--created-after <time>', 'created at or after this ISO 8601 time')
    .option('--created-before <time>', 'created before this ISO 8601 time')
    .option('--payload <json>', 'only jobs whose payload contains this JSON object (JSON, @FILE or -)')
    .option('--correlation-id <id>', 'only jobs with this correlation id');
}

/** A text option of a command that also has flags (commander gives those as booleans). */
const optionText = (o: Record<string, string | boolean | undefined>, key: string): string | undefined => (typeof o[key] === 'string' ? o[key] : undefined);

async function selection(o: Record<string, string | boolean | undefined>): Promise<JobSelection> {
  const text = (k: string) => optionText(o, k);
  const payload = text('payload') === undefined ? undefined : await jsonArgument(text('payload')!, '--payload');
  if (payload !== undefined && (payload === null || typeof payload !== 'object' || Array.isArray(payload))) throw new CliError('--payload: give a JSON object, e.g. {"customer":"c-42"}');
  return {
    jobType: text('type'), errorClass: text('errorClass'), createdAfter: text('createdAfter'), createdBefore: text('createdBefore'),
    payload: payload as JobSelection['payload'], correlationId: text('correlationId'),
  };
}

/** `--depends-on 42` or `42:ignore`: a parent job and what its failure does to the dependent. */
function dependency(arg: string): { jobId: string; onFailure?: EdgePolicy } {
  const [jobId, policy] = arg.split(':') as [string, string | undefined];
  if (!/^[1-9][0-9]{0,17}$/.test(jobId)) throw new CliError(`--depends-on: ${JSON.stringify(arg)} is not a job id`);
  if (policy === undefined) return { jobId };
  if (!(EDGE_POLICIES as readonly string[]).includes(policy)) throw new CliError(`--depends-on: policy ${JSON.stringify(policy)} is not one of ${EDGE_POLICIES.join(', ')}`);
  return { jobId, onFailure: policy as EdgePolicy };
}
