import { Command, InvalidArgumentError, Option } from 'commander';
import { isTenantId, TENANT_PATTERN } from '../wire.ts';
import { DEFAULT_API_URL, resolveApiUrl } from './api-address.ts';
import { setWideTables } from './output.ts';
import { registerAuditCommands } from './commands/audit.ts';
import { registerBackfillCommands } from './commands/backfill.ts';
import { registerWorkflowCommands } from './commands/workflows.ts';
import { registerClusterCommands } from './commands/cluster.ts';
import { registerControlCommands } from './commands/controls.ts';
import { registerDlqCommands } from './commands/dlq.ts';
import { registerLeaseCommands } from './commands/leases.ts';
import { registerJobCommands } from './commands/jobs.ts';
import { registerQuotaCommands } from './commands/quotas.ts';
import { registerScheduleCommands } from './commands/schedules.ts';
import { registerServerCommands } from './commands/server.ts';
import { registerSyntheticCommands } from './commands/synthetic.ts';
import { registerTokenCommands } from './commands/tokens.ts';

/** --tenant: a tenant id, or empty for none (the server then asks for one). */
function tenantId(value: string): string {
  if (value !== '' && !isTenantId(value)) throw new InvalidArgumentError(`not a tenant id (${TENANT_PATTERN})`);
  return value;
}

/** `orch`: the control plane and its operator CLI (verbs fixed by surface.md). */
export function buildProgram(): Command {
  const program = new Command('orch')
    .description('Job orchestrator: control plane and operator CLI')
    .addOption(new Option('--api-url <url>', `orchestrator API URL (default: the address "orch serve" left in $ORCH_DATA_DIR/local.json, else ${DEFAULT_API_URL})`)
      .env('ORCH_API_URL'))
    .addOption(new Option('--token <token>', 'bearer token').env('ORCH_TOKEN'))
    .addOption(new Option('--tenant <tenant>', 'tenant id').env('ORCH_TENANT').default('default').argParser(tenantId))
    .addOption(new Option('--output <format>', 'output format').choices(['table', 'json']).default('table'))
    .option('--wide', 'table cells whole (by default a cell is cut at 60 characters, ending in …)')
    .configureOutput({ outputError: (str, write) => write(`orch: ${str.replace(/^error: /, '').trim()}\n`) })
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 1))
    // Resolved once, before any command runs, so every verb (and its error messages) uses the same address.
    .hook('preAction', () => {
      const g = program.opts<{ apiUrl?: string; wide?: boolean }>();
      program.setOptionValue('apiUrl', resolveApiUrl(g.apiUrl));
      setWideTables(g.wide === true);
    });

  registerServerCommands(program);
  registerJobCommands(program);
  registerControlCommands(program);
  registerQuotaCommands(program);
  registerAuditCommands(program);
  registerDlqCommands(program);
  registerLeaseCommands(program);
  registerSyntheticCommands(program);
  registerTokenCommands(program);
  registerClusterCommands(program);
  registerScheduleCommands(program);
  registerBackfillCommands(program);
  registerWorkflowCommands(program);

  return program;
}
