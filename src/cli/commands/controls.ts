import type { Command } from 'commander';
import type { Pause } from '../../flow/pauses.ts';
import { print } from '../output.ts';
import { clientFor } from './jobs.ts';

const PAUSE_COLUMNS = ['tenantId', 'jobType', 'reason', 'ticket', 'actor', 'pausedAt'];

/** What a pause covers, in words ("*" is every tenant, or every job type of one). */
const scopeOf = (p: Pause) => (p.jobType === '*' ? `every job type of tenant ${p.tenantId}` : `${p.jobType} for ${p.tenantId === '*' ? 'every tenant' : `tenant ${p.tenantId}`}`);

/** `orch pause|resume TYPE` and `orch pauses`: the runbook's "pause new dispatch for the job type". */
export function registerControlCommands(program: Command): void {
  for (const action of ['pause', 'resume'] as const) {
    program
      .command(action)
      .description(action === 'pause'
        ? 'stop dispatch of a job type (running jobs finish; queued work waits); TYPE "*" with --for-tenant pauses a whole tenant'
        : 'restart dispatch of a job type (or, with TYPE "*" and --for-tenant, of a tenant)')
      .argument('<type>', 'job type, or "*" for every type of --for-tenant')
      .option('--for-tenant <tenant>', 'only this tenant (default: every tenant)')
      .requiredOption('--reason <text>', 'why (recorded; at most 256 characters)')
      .option('--ticket <ref>', 'ticket reference (at most 128 characters)')
      .action(async (type: string, o: { forTenant?: string; reason: string; ticket?: string }, cmd: Command) => {
        const { client, output } = clientFor(cmd);
        const p = await client.setDispatch(action, { jobType: type, tenantId: o.forTenant }, o.reason, o.ticket);
        if (output === 'json') return print(output, p, [], []);
        if (action === 'pause') {
          process.stdout.write(`paused dispatch of ${scopeOf(p)}: running jobs finish, queued jobs wait until "orch resume"\n`);
          return print(output, p, [p], PAUSE_COLUMNS);
        }
        // the pause just lifted: what had held the work back, and since when
        const ticket = p.ticket ? `, ticket ${p.ticket}` : '';
        process.stdout.write(`resumed dispatch of ${scopeOf(p)} (paused since ${p.pausedAt} by ${p.actor}: ${p.reason}${ticket})\n`);
      });
  }

  program
    .command('pauses')
    .description('dispatch pauses in force')
    .action(async (_o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const list = await client.listPauses();
      print(output, list, list, PAUSE_COLUMNS);
    });
}
