import { Option, type Command } from 'commander';
import type { ApiTokenInfo, ApiTokens, NewToken } from '../../auth/tokens.ts';
import { CliError, commaList, print } from '../output.ts';
import { clientFor, duration } from './jobs.ts';

const COLUMNS = ['id', 'subject', 'tenants', 'scopes', 'jobTypes', 'expiresAt', 'revokedAt', 'createdBy'];

/**
 * `orch tokens create|list|revoke`: through the API (scope orch:admin), or
 * straight in the database with --database-url, which is how the first admin
 * token is made before the server requires tokens.
 */
export function registerTokenCommands(program: Command): void {
  const tokens = program.command('tokens').description('API tokens for workers, scripts and operators (the secret is shown once)');
  const databaseUrl = () => new Option('--database-url <url>', 'work on this database directly instead of the API (bootstrap)');

  tokens.command('create')
    .description('create a token and print it once')
    .requiredOption('--subject <name>', 'who or what uses it (recorded as the actor)')
    .requiredOption('--tenants <list>', 'comma-separated tenants, or "*" for every tenant')
    .requiredOption('--scopes <list>', 'comma-separated: orch:read, orch:write, orch:operate, orch:quota, orch:backfill, orch:worker, orch:admin')
    .option('--job-types <list>', 'orch:worker: the job types it may claim (default: any)')
    .option('--ttl <duration>', 'expire after this long (e.g. 90d); default never')
    .addOption(databaseUrl())
    .action(async (o: { subject: string; tenants: string; scopes: string; jobTypes?: string; ttl?: string; databaseUrl?: string }, cmd: Command) => {
      const t: NewToken = {
        subject: o.subject, tenants: commaList(o.tenants), scopes: commaList(o.scopes),
        jobTypes: o.jobTypes ? commaList(o.jobTypes) : undefined,
        ttlSeconds: o.ttl === undefined ? undefined : Math.ceil(duration(o.ttl, '--ttl') / 1000),
      };
      const { client, output } = clientFor(cmd);
      const created = o.databaseUrl ? await direct(o.databaseUrl, (store) => store.create(t, 'cli:tokens')) : await client.createToken(t);
      if (output === 'json') return print(output, created, [], []);
      process.stdout.write(`${created.token}\n`);
      process.stderr.write(`token ${created.info.id} for ${created.info.subject}: store it now, it is not shown again\n`);
    });

  tokens.command('list')
    .description('tokens (never their secrets)')
    .option('--revoked', 'include revoked tokens')
    .addOption(databaseUrl())
    .action(async (o: { revoked?: boolean; databaseUrl?: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const list: ApiTokenInfo[] = o.databaseUrl ? await direct(o.databaseUrl, (store) => store.list(o.revoked)) : await client.listTokens(o.revoked);
      print(output, { tokens: list }, list, COLUMNS);
    });

  tokens.command('revoke')
    .description('revoke a token (every server refuses it within 5 s)')
    .argument('<id>', 'token id (orch tokens list)')
    .addOption(databaseUrl())
    .action(async (id: string, o: { databaseUrl?: string }, cmd: Command) => {
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) throw new CliError(`tokens revoke: "${id}" is not a token id`);
      const { client, output } = clientFor(cmd);
      const info = o.databaseUrl ? await direct(o.databaseUrl, (store) => store.revoke(id, 'cli:tokens')) : await client.revokeToken(id);
      print(output, info, [info], COLUMNS);
    });
}

/** --database-url: straight to the token table (the first admin token); pg and the ledger load only here. */
async function direct<T>(url: string, fn: (store: ApiTokens) => Promise<T>): Promise<T> {
  const [{ createPool }, { migrate }, { ApiTokens }] = await Promise.all([
    import('../../ledger/db.ts'), import('../../ledger/migrate.ts'), import('../../auth/tokens.ts'),
  ]);
  const pool = createPool(url, 2);
  try {
    await migrate(pool);
    return await fn(new ApiTokens(pool));
  } finally {
    await pool.end();
  }
}
