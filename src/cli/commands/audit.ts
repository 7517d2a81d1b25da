import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Command } from 'commander';
import { CliError, print } from '../output.ts';
import { clientFor, type GlobalOptions } from './jobs.ts';

const AUDIT_COLUMNS = ['id', 'at', 'actor', 'action', 'target', 'reason', 'ticket', 'result'];

interface FilterOptions { action?: string; actor?: string; forTenant?: string; since?: string }

const withFilter = (c: Command) => c
  .option('--action <action>', 'only this action, e.g. quota.boost, dispatch.pause')
  .option('--actor <actor>', 'only this actor')
  .option('--for-tenant <tenant>', 'only actions on this tenant')
  .option('--since <time>', 'only actions at or after this ISO 8601 time');

function filterOf(o: FilterOptions) {
  if (o.since !== undefined && Number.isNaN(Date.parse(o.since))) throw new CliError(`--since: "${o.since}" is not a time (e.g. 2026-11-28T10:00:00Z)`);
  return { action: o.action, actor: o.actor, tenantId: o.forTenant, since: o.since === undefined ? undefined : new Date(o.since).toISOString() };
}

/** `orch audit list|export`: who changed which control, when and why. */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('the audit log of operator actions (append-only)');
  withFilter(audit.command('list'))
    .description('operator actions, newest first')
    .option('--limit <n>', 'at most this many (1 to 1000)', '100')
    .action(async (o: FilterOptions & { limit: string }, cmd: Command) => {
      if (!/^\d+$/.test(o.limit)) throw new CliError(`--limit: "${o.limit}" is not a number`);
      const { client, output } = clientFor(cmd);
      const page = await client.listAudit({ ...filterOf(o), limit: Number(o.limit) });
      print(output, page, page.entries, AUDIT_COLUMNS);
    });

  withFilter(audit.command('export'))
    .description('every matching entry as NDJSON (newest first) with a manifest holding its sha256, for offline review')
    .option('--out <dir>', 'directory for audit-<time>.ndjson and its .manifest.json', 'out/audit')
    .action(async (o: FilterOptions & { out: string }, cmd: Command) => {
      const { client, output } = clientFor(cmd);
      const filter = filterOf(o);
      const exportedAt = new Date().toISOString();
      const base = `audit-${exportedAt.replace(/[:.]/g, '-')}`;
      await mkdir(o.out, { recursive: true });
      const file = join(o.out, `${base}.ndjson`);
      const out = createWriteStream(file);
      const hash = createHash('sha256');
      let entries = 0;
      let bytes = 0;
      let cursor: string | undefined;
      let first: string | null = null;
      let last: string | null = null;
      do {
        const page = await client.listAudit({ ...filter, cursor, limit: 1000 });
        for (const e of page.entries) {
          const line = `${JSON.stringify(e)}\n`;
          hash.update(line);
          bytes += Buffer.byteLength(line);
          if (!out.write(line)) await once(out, 'drain');
          entries++;
          first ??= e.id;
          last = e.id;
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      out.end();
      await once(out, 'finish');
      const manifest = { file: `${base}.ndjson`, entries, bytes, sha256: hash.digest('hex'), newestId: first, oldestId: last, filter, exportedAt, apiUrl: cmd.optsWithGlobals<GlobalOptions>().apiUrl };
      await writeFile(join(o.out, `${base}.manifest.json`), `${JSON.stringify(manifest, null, 2)}\n`);
      if (output === 'json') print(output, manifest, [], []);
      else process.stdout.write(`${entries} entries to ${file} (sha256 ${manifest.sha256})\n`);
    });
}
