import { Option, type Command } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import type { Backfill, BackfillSpec, Reprocess } from '../../backfills/backfills.ts';
import type { OrchClient } from '../../sdk/client.ts';
import { CliError, print, type OutputFormat } from '../output.ts';
import { clientFor, duration, integer, jsonArgument } from './jobs.ts';

const COLUMNS = ['id', 'jobType', 'state', 'from', 'to', 'windows', 'done', 'running', 'failed', 'left', 'watermark', 'estimatedEndAt'];
const row = (b: Backfill) => ({
  ...b, done: b.progress.succeeded + b.progress.skipped, running: b.progress.running, failed: b.progress.failed + b.progress.canceled,
  left: b.progress.pending, estimatedEndAt: b.progress.estimatedEndAt,
});
const REPROCESS = ['none', 'failed', 'all'] as const;

/** Polls a backfill until it stops running, drawing its progress on stderr (a bar on a terminal, a line a second otherwise). */
async function follow(client: OrchClient, start: Backfill, output: OutputFormat): Promise<Backfill> {
  let b = start;
  const done = (x: Backfill) => x.progress.succeeded + x.progress.skipped + x.progress.failed + x.progress.canceled;
  const bar = output === 'table' && process.stderr.isTTY
    ? new SingleBar({ format: 'backfill [{bar}] {value}/{total} windows | running {running} | failed {failed} | {rate}/min | eta {eta_at}', stream: process.stderr }, Presets.shades_classic)
    : null;
  const fields = (x: Backfill) => ({ running: x.progress.running, failed: x.progress.failed, rate: x.progress.perMinute, eta_at: x.progress.estimatedEndAt ?? '-' });
  bar?.start(b.windows, done(b), fields(b));
  while (b.state === 'running') {
    await new Promise((res) => setTimeout(res, 1000));
    b = await client.getBackfill(b.id);
    bar?.update(done(b), fields(b));
    if (!bar && output === 'table') {
      process.stderr.write(`backfill ${b.id}: ${done(b)}/${b.windows} windows, running ${b.progress.running}, failed ${b.progress.failed}, watermark ${b.watermark ?? '-'}\n`);
    }
  }
  bar?.stop();
  return b;
}

interface CreateOptions {
  from: string; to: string; window: string; concurrency?: string; reprocess?: Reprocess; payload?: string; priority?: string;
  dryRun?: boolean; follow?: boolean; reason?: string; ticket?: string;
}

/** `orch backfill create|list|show|pause|resume|cancel|retry`: windows of the past, one job each, with a watermark. */
export function registerBackfillCommands(program: Command): void {
  const backfill = program.command('backfill').description('re-run a range of the past, cut into windows (one job each), with a watermark');

  backfill.command('create').description('start a backfill (scope orch:backfill: --reason and --ticket), or --dry-run to see its plan')
    .argument('<type>', 'job type')
    .requiredOption('--from <time>', 'start of the range (ISO time)')
    .requiredOption('--to <time>', 'end of the range (ISO time, exclusive)')
    .requiredOption('--window <duration>', 'window length (e.g. 1h, 1d)')
    .option('--concurrency <n>', 'windows in flight at once (default 1)')
    .addOption(new Option('--reprocess <policy>', 'windows of the same bounds that ran before: none (default), failed, all').choices(REPROCESS))
    .option('--payload <json>', 'payload template (JSON, @FILE, or - for standard input); strings may use {{windowStart}} {{windowEnd}} {{windowIndex}} {{watermark}} {{now}} {{backfillId}}')
    .option('--priority <n>', 'priority of each window\'s job (0..1000)')
    .option('--dry-run', 'show the windows, which would run and which would be skipped and why; enqueue nothing')
    .option('--follow', 'stay and show progress until it ends')
    .option('--reason <text>', 'why (recorded in the audit log)')
    .option('--ticket <ref>', 'ticket reference (recorded in the audit log)')
    .action(async (type: string, o: CreateOptions, cmd: Command) => {
      const spec: BackfillSpec = { jobType: type, from: o.from, to: o.to, windowMs: duration(o.window, '--window') };
      if (o.concurrency !== undefined) spec.concurrency = integer(o.concurrency, '--concurrency');
      if (o.reprocess !== undefined) spec.reprocess = o.reprocess;
      if (o.payload !== undefined) spec.payload = await jsonArgument(o.payload, '--payload');
      if (o.priority !== undefined) spec.priority = integer(o.priority, '--priority');
      const { client, output } = clientFor(cmd);
      if (o.dryRun) {
        const plan = await client.planBackfill(spec);
        if (output === 'json') return print(output, plan, [], []);
        process.stdout.write(`${plan.windows} windows: ${plan.run} would run, ${plan.skip} would be skipped\n`);
        print('table', null, plan.items, ['index', 'start', 'end', 'action', 'state', 'reason']);
        return;
      }
      if (!o.reason || !o.ticket) throw new CliError('a backfill needs --reason and --ticket (or --dry-run to see its plan)');
      let b = await client.createBackfill(spec, { reason: o.reason, ticket: o.ticket });
      if (o.follow) b = await follow(client, b, output);
      print(output, b, [row(b)], COLUMNS);
    });

  backfill.command('list').description('backfills, newest first')
    .addOption(new Option('--state <state>', 'only those in this state').choices(['running', 'paused', 'canceled', 'done']))
    .action(async (o: { state?: Backfill['state'] }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const list = await client.listBackfills(o.state);
      print(output, list, list.map(row), COLUMNS);
    });

  backfill.command('show').description('one backfill and its progress: windows done, running, failed, left; rate; estimated end; watermark')
    .argument('<id>')
    .option('--follow', 'stay and show progress until it stops running')
    .action(async (id: string, o: { follow?: boolean }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      let b = await client.getBackfill(id);
      if (o.follow) b = await follow(client, b, output);
      print(output, b, [row(b)], [...COLUMNS, 'concurrency', 'reprocess', 'reason', 'ticket', 'actor']);
    });

  for (const [action, description] of [
    ['pause', 'start no new window (running ones finish)'],
    ['resume', 'start windows again'],
    ['cancel', 'cancel the windows not started and the waiting jobs of started ones (running jobs finish)'],
    ['retry', 'run the failed and canceled windows again'],
  ] as const) {
    backfill.command(action).description(description).argument('<id>')
      .requiredOption('--reason <text>', 'why (recorded in the audit log)')
      .requiredOption('--ticket <ref>', 'ticket reference (recorded in the audit log)')
      .action(async (id: string, o: { reason: string; ticket: string }, cmd: Command) => {
        const { client, output } = clientFor(cmd);
        const b = await client.backfillAction(id, action, { reason: o.reason, ticket: o.ticket });
        print(output, b, [row(b)], COLUMNS);
      });
  }
}
