import type { Command } from 'commander';
import { CliError, print } from '../output.ts';
import { clientFor } from './jobs.ts';

const AUDIT_COLUMNS = ['id', 'at', 'actor', 'action', 'target', 'reason', 'ticket', 'result'];

/** `orch audit list`: who changed which control, when and why. */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('the audit log of operator actions (append-only)');
  audit.command('list')
    .description('operator actions, newest first')
    .option('--action <action>', 'only this action, e.g. quota.boost, dispatch.pause')
    .option('--actor <actor>', 'only this actor')
    .option('--for-tenant <tenant>', 'only actions on this tenant')
    .option('--since <time>', 'only actions at or after this ISO 8601 time')
    .option('--limit <n>', 'at most this many (1 to 1000)', '100')
    .action(async (o: { action?: string; actor?: string; forTenant?: string; since?: string; limit: string }, cmd: Command) => {
      if (!/^\d+$/.test(o.limit)) throw new CliError(`--limit: "${o.limit}" is not a number`);
      if (o.since !== undefined && Number.isNaN(Date.parse(o.since))) throw new CliError(`--since: "${o.since}" is not a time (e.g. 2026-11-28T10:00:00Z)`);
      const { client, output } = clientFor(cmd);
      const page = await client.listAudit({
        action: o.action, actor: o.actor, tenantId: o.forTenant,
        since: o.since === undefined ? undefined : new Date(o.since).toISOString(), limit: Number(o.limit),
      });
      print(output, page, page.entries, AUDIT_COLUMNS);
    });
}
