import type { Command } from 'commander';
import { CliError, commaList, print } from '../output.ts';
import { clientFor, duration, integer } from './jobs.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `orch leases list|release` and `orch workers list`. */
export function registerLeaseCommands(program: Command): void {
  const leases = program.command('leases').description('active leases (stuck first) and the PostgreSQL locks blocking the ledger; force release');

  leases.command('list')
    .description('active leases, stuck ones first, then lock waits on the ledger tables')
    .option('--type <jobType>', 'only this job type')
    .option('--worker <workerId>', 'only this worker\'s leases')
    .option('--stuck-after <duration>', 'heartbeat age that counts as stuck (default: the server\'s ORCH_LEASE_STUCK_AFTER_MS)')
    .option('--limit <n>', 'at most this many leases', '100')
    .action(async (o: { type?: string; worker?: string; stuckAfter?: string; limit: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const r = await client.listLeases({
        jobType: o.type, workerId: o.worker, limit: integer(o.limit, '--limit'),
        stuckAfterMs: o.stuckAfter === undefined ? undefined : duration(o.stuckAfter, '--stuck-after'),
      });
      if (output === 'json') return print(output, r, [], []);
      process.stdout.write(`${r.leases.length} leases, ${r.stuck} stuck (heartbeat older than ${r.stuckAfterMs / 1000}s)\n`);
      print('table', null, r.leases, ['jobId', 'jobType', 'workerId', 'attempt', 'ageSeconds', 'heartbeatAgeSeconds', 'progress', 'stuck', 'leaseId']);
      process.stdout.write(`\npostgres lock waits on the ledger: ${r.locks.length === 0 ? 'none' : ''}\n`);
      if (r.locks.length > 0) {
        print('table', null, r.locks, ['pid', 'role', 'blockedBy', 'state', 'waitEvent', 'transactionSeconds', 'relations', 'query']);
        process.stdout.write('end a blocking session with: SELECT pg_terminate_backend(<pid>);\n');
      }
    });

  leases.command('release')
    .description('force release: the job returns to the queue (or dead-letters when attempts are spent); the old holder\'s ack is refused')
    .argument('[ids]', 'lease ids or job ids (comma-separated)')
    .option('--worker <workerId>', 'every lease this worker holds')
    .option('--stuck', 'every stuck lease (heartbeat older than --stuck-after or the server default)')
    .option('--stuck-after <duration>', 'with --stuck: heartbeat age that counts as stuck')
    .requiredOption('--reason <text>', 'why (recorded in each job\'s history and the audit log)')
    .option('--ticket <ticket>', 'ticket reference')
    .action(async (arg: string | undefined, o: { worker?: string; stuck?: boolean; stuckAfter?: string; reason: string; ticket?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const given = arg === undefined ? [] : commaList(arg);
      if (given.length === 0 && !o.worker && !o.stuck) throw new CliError('leases release: give lease or job ids, --worker W, or --stuck');
      if (o.stuckAfter !== undefined && !o.stuck) throw new CliError('leases release: --stuck-after needs --stuck');
      const leaseIds = given.filter((v) => UUID.test(v));
      const jobIds = given.filter((v) => !UUID.test(v));
      const bad = jobIds.find((v) => !/^[1-9][0-9]{0,17}$/.test(v));
      if (bad !== undefined) throw new CliError(`leases release: "${bad}" is neither a lease id nor a job id`);
      const r = await client.releaseLeases({
        leaseIds: leaseIds.length ? leaseIds : undefined, jobIds: jobIds.length ? jobIds : undefined,
        workerIds: o.worker ? [o.worker] : undefined, stuck: o.stuck || undefined,
        stuckAfterMs: o.stuckAfter === undefined ? undefined : duration(o.stuckAfter, '--stuck-after'),
      }, { reason: o.reason, ticket: o.ticket });
      print(output, r, r.jobs, ['jobId', 'jobType', 'state']);
      if (output === 'table') process.stdout.write(`${r.released} released\n`);
    });

  program.command('workers').description('the worker registry')
    .command('list')
    .description('workers seen: job types, host, version, last heartbeat, leases held; lost ones marked')
    .action(async (_o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const r = await client.listWorkers();
      print(output, r, r.workers, ['workerId', 'tenantId', 'status', 'jobTypes', 'host', 'version', 'inFlight', 'silentSeconds', 'lastSeen']);
    });
}
