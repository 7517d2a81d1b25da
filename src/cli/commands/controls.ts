import type { Command } from 'commander';
import { print } from '../output.ts';
import { clientFor } from './jobs.ts';

const PAUSE_COLUMNS = ['tenantId', 'jobType', 'reason', 'ticket', 'actor', 'pausedAt'];

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
        print(output, p, [p], PAUSE_COLUMNS);
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
