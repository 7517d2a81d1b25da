import type { Command } from 'commander';
import type { Quota, QuotaChange } from '../../flow/quotas.ts';
import type { OperatorWhy, QuotaScope } from '../../sdk/client.ts';
import { CliError, print } from '../output.ts';
import { clientFor, duration } from './jobs.ts';

const QUOTA_COLUMNS = ['tenantId', 'jobType', 'maxActive', 'ratePerSecond', 'burst', 'maxPerHour', 'weight', 'paused', 'boostedUntil'];
const USE_COLUMNS = ['tenantId', 'jobType', 'active', 'maxActive', 'tokensLeft', 'usedThisHour', 'throttledCount', 'throttledBy', 'nextEligibleAt', 'boostedUntil'];

const row = (q: Quota) => ({ ...q, boostedUntil: q.boost?.until ?? null });

/** A number flag, or "none" to remove that limit. */
function limit(value: string, flag: string, integer: boolean): number | null {
  if (value === 'none') return null;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new CliError(`${flag}: "${value}" is not ${integer ? 'an integer' : 'a number'} (or "none")`);
  }
  return n;
}

interface WhyOptions { reason: string; ticket: string }
const why = (o: WhyOptions): OperatorWhy => ({ reason: o.reason, ticket: o.ticket });

/** Adds the scope arguments and the reason/ticket every quota change needs. */
function change(cmd: Command): Command {
  return cmd
    .argument('<tenant>', 'tenant, or "*" for all tenants together')
    .argument('<type>', 'job type, or "*" for all job types together')
    .requiredOption('--reason <text>', 'why (recorded in the audit log; at most 256 characters)')
    .requiredOption('--ticket <ref>', 'ticket reference (recorded; at most 128 characters)');
}

/** `orch quota list|summary|set|delete|pause|resume|boost|restore`: the runbook's "increase rate-limit budgets temporarily; restore defaults". */
export function registerQuotaCommands(program: Command): void {
  const quota = program.command('quota').description('quotas per tenant and job type: concurrency caps, token buckets, hourly counts, boosts');

  quota.command('list').description('quotas and their limits').action(async (_o: unknown, cmd: Command) => {
    const { client, output } = clientFor(cmd);
    const list = await client.listQuotas();
    print(output, list, list.map(row), QUOTA_COLUMNS);
  });

  quota.command('summary').description('what each quota uses now: active, tokens left, throttled, next eligible time')
    .action(async (_o: unknown, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const list = await client.quotaSummary();
      print(output, list, list.map((u) => ({ ...u, ...u.limits })), USE_COLUMNS);
    });

  change(quota.command('set').description('create a quota or change its limits (limits not given keep their values; "none" removes one)'))
    .option('--max-active <n>', 'concurrency cap (leased jobs at once)')
    .option('--rate <perSecond>', 'token bucket refill per second')
    .option('--burst <tokens>', 'token bucket capacity (default: one second of rate, at least 1)')
    .option('--max-per-hour <n>', 'claims per hourly window')
    .option('--weight <n>', 'share when tenants compete for a job type (1 to 1000)')
    .action(async (tenant: string, type: string, o: WhyOptions & { maxActive?: string; rate?: string; burst?: string; maxPerHour?: string; weight?: string }, cmd: Command) => {
      const c: QuotaChange = {};
      if (o.maxActive !== undefined) c.maxActive = limit(o.maxActive, '--max-active', true);
      if (o.rate !== undefined) c.ratePerSecond = limit(o.rate, '--rate', false);
      if (o.burst !== undefined) c.burst = limit(o.burst, '--burst', false);
      if (o.maxPerHour !== undefined) c.maxPerHour = limit(o.maxPerHour, '--max-per-hour', true);
      if (o.weight !== undefined) {
        const w = limit(o.weight, '--weight', true);
        if (w === null) throw new CliError('--weight: give a number from 1 to 1000');
        c.weight = w;
      }
      if (Object.keys(c).length === 0) throw new CliError('give at least one of --max-active, --rate, --burst, --max-per-hour, --weight');
      const { client, output } = clientFor(cmd);
      const q = await client.setQuota({ tenantId: tenant, jobType: type }, c, why(o));
      print(output, q, [row(q)], QUOTA_COLUMNS);
    });

  change(quota.command('boost').description('raise rate and/or concurrency for a bounded time; the previous limits return by themselves'))
    .requiredOption('--for <duration>', 'how long, e.g. 30m (at most 7d)')
    .option('--factor <x>', 'multiply rate, burst and concurrency cap')
    .option('--max-active <n>', 'concurrency cap during the boost')
    .option('--rate <perSecond>', 'rate during the boost')
    .option('--burst <tokens>', 'burst during the boost')
    .action(async (tenant: string, type: string, o: WhyOptions & { for: string; factor?: string; maxActive?: string; rate?: string; burst?: string }, cmd: Command) => {
      const ms = duration(o.for, '--for');
      if (ms < 1000) throw new CliError('--for: a boost lasts at least 1s');
      const number = (v: string | undefined, flag: string, integer = false) => {
        if (v === undefined) return undefined;
        const n = limit(v, flag, integer);
        if (n === null) throw new CliError(`${flag}: give a number`);
        return n;
      };
      const { client, output } = clientFor(cmd);
      const q = await client.boostQuota({ tenantId: tenant, jobType: type }, {
        durationSeconds: Math.round(ms / 1000), factor: number(o.factor, '--factor'), maxActive: number(o.maxActive, '--max-active', true),
        ratePerSecond: number(o.rate, '--rate'), burst: number(o.burst, '--burst'),
      }, why(o));
      print(output, q, [row(q)], QUOTA_COLUMNS);
    });

  for (const [action, description] of [
    ['restore', 'end a boost early: the limits set before it are in force again'],
    ['pause', 'pause dispatch of all the work the quota covers (a dispatch pause with its scope; the work stays queued)'],
    ['resume', 'remove the dispatch pause with the quota\'s scope'],
    ['delete', 'remove a quota'],
  ] as const) {
    change(quota.command(action).description(description))
      .action(async (tenant: string, type: string, o: WhyOptions, cmd: Command) => {
        const { client, output } = clientFor(cmd);
        const scope: QuotaScope = { tenantId: tenant, jobType: type };
        const q = action === 'delete' ? await client.deleteQuota(scope, why(o)) : await client.quotaAction(action, scope, why(o));
        print(output, q, [row(q)], QUOTA_COLUMNS);
      });
  }
}
