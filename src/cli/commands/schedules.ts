import { Option, type Command } from 'commander';
import type { CatchUp, Schedule, ScheduleSpec } from '../../schedules/schedules.ts';
import { CliError, print } from '../output.ts';
import { clientFor, duration, integer, jsonArgument } from './jobs.ts';

const COLUMNS = ['name', 'jobType', 'when', 'timeZone', 'enabled', 'catchUp', 'nextTickAt', 'lastTickAt', 'ticks', 'missedTicks', 'watermark'];
/** An interval as people write it: 15m, 1h, 90s. */
const every = (ms: number) => (ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`);
const row = (s: Schedule) => ({ ...s, when: s.cron ?? `every ${every(s.everyMs!)}` });
const CATCH_UP = ['skip', 'latest', 'all'] as const;

interface SpecOptions {
  cron?: string; every?: string; tz?: string; catchUp?: CatchUp; catchUpMax?: string; payload?: string; priority?: string; maxAttempts?: string;
  startsAt?: string; endsAt?: string; paused?: boolean; reason: string;
}

/** The spec fields the options give (update leaves the others as they are). */
async function specOf(o: SpecOptions): Promise<Partial<ScheduleSpec>> {
  if (o.cron !== undefined && o.every !== undefined) throw new CliError('give one of --cron and --every');
  const s: Partial<ScheduleSpec> = {};
  if (o.cron !== undefined) s.cron = o.cron;
  if (o.every !== undefined) s.everyMs = duration(o.every, '--every');
  if (o.tz !== undefined) s.timeZone = o.tz;
  if (o.catchUp !== undefined) s.catchUp = o.catchUp;
  if (o.catchUpMax !== undefined) s.catchUpMax = integer(o.catchUpMax, '--catch-up-max');
  if (o.payload !== undefined) s.payload = await jsonArgument(o.payload, '--payload');
  if (o.priority !== undefined) s.priority = integer(o.priority, '--priority');
  if (o.maxAttempts !== undefined) s.maxAttempts = integer(o.maxAttempts, '--max-attempts');
  if (o.startsAt !== undefined) s.startsAt = o.startsAt;
  if (o.endsAt !== undefined) s.endsAt = o.endsAt;
  if (o.paused) s.enabled = false;
  return s;
}

function specOptions(cmd: Command): Command {
  return cmd
    .option('--cron <expr>', 'cron expression: five fields (minute hour day month weekday), or six with seconds first')
    .option('--every <duration>', 'a fixed interval instead (e.g. 30s, 15m, 1h)')
    .option('--tz <zone>', 'IANA time zone the cron expression is read in (default UTC)')
    .addOption(new Option('--catch-up <policy>', 'ticks missed while no server ran: skip, latest (run the latest once; default), all').choices(CATCH_UP))
    .option('--catch-up-max <n>', 'with --catch-up all: at most this many missed ticks run (default 100)')
    .option('--payload <json>', 'payload template (JSON, @FILE, or - for standard input); strings may use {{windowStart}} {{windowEnd}} {{windowIndex}} {{tick}} {{watermark}} {{now}} {{scheduleName}}')
    .option('--priority <n>', 'priority of each job (0..1000)')
    .option('--max-attempts <n>', 'attempts of each job before dead-lettering')
    .option('--starts-at <time>', 'no tick before this (ISO time); interval ticks count from it')
    .option('--ends-at <time>', 'no tick at or after this (ISO time)')
    .option('--paused', 'create it paused (no ticks until resumed)')
    .requiredOption('--reason <text>', 'why (recorded in the audit log)');
}

/** `orch schedules list|show|create|update|pause|resume|delete|trigger`: recurring jobs. */
export function registerScheduleCommands(program: Command): void {
  const schedules = program.command('schedules').description('recurring jobs: cron or fixed interval, in a time zone, exactly one job per tick');

  schedules.command('list').description('the tenant\'s schedules with their next tick, ticks fired and missed')
    .action(async (_o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const list = await client.listSchedules();
      print(output, list, list.map(row), COLUMNS);
    });

  schedules.command('show').description('one schedule').argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const s = await client.getSchedule(name);
      print(output, s, [row(s)], [...COLUMNS, 'payload', 'lastJobId', 'startsAt', 'endsAt']);
    });

  specOptions(schedules.command('create').description('create a schedule: NAME TYPE (--cron EXPR | --every DUR)').argument('<name>').argument('<type>', 'job type'))
    .action(async (name: string, type: string, o: SpecOptions, cmd: Command) => {
      const spec = await specOf(o);
      if (spec.cron === undefined && spec.everyMs === undefined) throw new CliError('give --cron EXPR or --every DURATION');
      const { client, output } = clientFor(cmd);
      const s = await client.createSchedule(name, { ...spec, jobType: type }, { reason: o.reason });
      print(output, s, [row(s)], COLUMNS);
    });

  specOptions(schedules.command('update').description('change a schedule (options not given keep their values)').argument('<name>'))
    .option('--type <type>', 'job type')
    .option('--enabled', 'enable it (same as resume)')
    .action(async (name: string, o: SpecOptions & { type?: string; enabled?: boolean }, cmd: Command) => {
      const patch = await specOf(o);
      if (o.type !== undefined) patch.jobType = o.type;
      if (o.enabled) patch.enabled = true;
      if (Object.keys(patch).length === 0) throw new CliError('nothing to change: give at least one option');
      const { client, output } = clientFor(cmd);
      const s = await client.updateSchedule(name, patch, { reason: o.reason });
      print(output, s, [row(s)], COLUMNS);
    });

  for (const [action, description] of [
    ['pause', 'stop ticking (ticks meanwhile are not counted missed)'],
    ['resume', 'tick again, from the next tick after now'],
    ['delete', 'delete the schedule (the jobs it made stay)'],
    ['trigger', 'run the job once now (the ticks are unchanged)'],
  ] as const) {
    schedules.command(action).description(description).argument('<name>')
      .requiredOption('--reason <text>', 'why (recorded in the audit log)')
      .action(async (name: string, o: { reason: string }, cmd: Command) => {
        const { client, output } = clientFor(cmd);
        const why = { reason: o.reason };
        if (action === 'trigger') {
          const t = await client.triggerSchedule(name, why);
          if (output === 'json') return print(output, t, [], []);
          process.stdout.write(`schedule ${name}: job ${t.jobId} enqueued\n`);
          return;
        }
        const s = action === 'delete' ? await client.deleteSchedule(name, why) : await client.scheduleAction(name, action, why);
        print(output, s, [row(s)], COLUMNS);
      });
  }

  program.command('watermarks').description('per job type: the end of the contiguous completed windows of its backfills and schedules')
    .option('--type <type>', 'only this job type')
    .action(async (o: { type?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const list = await client.listWatermarks(o.type);
      print(output, list, list, ['tenantId', 'jobType', 'watermark', 'updatedAt']);
    });
}
